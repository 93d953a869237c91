"""Grid-event response latency: from an event reaching the store to the last of 100 running Jobs suspended.

Two measurements, each printed with its median, p90, p99 and max over ``--events`` events (after one warm-up):

* ``airflow``: through a real Airflow 3.3 (api-server, scheduler, dag-processor, triggerer; the integration
  harness): the event is recorded in the provider's store; ``GridEventTrigger`` (an AssetWatcher in the
  triggerer) fires the asset, the scheduler starts a run of the grid-event DAG, ``GridEventResponseOperator``
  suspends the Jobs at an emulated Kubernetes API server (in this process, so the moment the last Job is
  suspended is seen without polling over HTTP). Then the event's completion resumes them (also measured).
* ``apply``: the operator's pass alone (``responder.respond`` with the Kubernetes actuator and the store),
  in this process: read the events, list the 100 Jobs, plan, claim 100 holds, 100 merge patches, record.

Each pass is split into the emulated API server's share and the rest. The emulator times itself
(``GET /_emulator/timing``: the wall time it had a request in hand, per request kind, and its process CPU);
"the rest" is the product (plan, store, the Kubernetes client), the client's HTTP and the loopback. Through
Airflow each event is also split into stages, from the store write to the last PATCH, from the REST API's
asset event, DAG run and task instance times and the emulator's first and last PATCH.

Goal (issue 10): p99 under 2 s through Airflow; over 5 s is a failure to explain.

Run: .venv/bin/python benchmarks/bench_grid_event_response.py [--mode apply|airflow|both] [--events 20] [--jobs 100]
[--stack-defaults] (through Airflow, the recommended fast-response settings are used unless this is given)
[--respond-in triggerer|task] (through Airflow: the watcher responds in the triggerer, the default, or only the task)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the emulator and the Airflow harness live with the tests

UTC = timezone.utc
SOURCE = "webhook:bench"
CONN_ID = "bench_k8s"
DAG_ID = "bench_grid_event_response"

DAG_FILE = """
from datetime import datetime, timedelta
from airflow.sdk import Asset, AssetWatcher, dag
from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger

RESPOND = {respond}  # the watcher's own response (in the triggerer), or None: the task's pass only
EVENTS = Asset("gridaware://grid-events/bench", watchers=[AssetWatcher(
    name="bench", trigger=GridEventTrigger(cursor_name="bench", from_seq=0, sources=["webhook:bench"],
    tail_interval=0.1, respond=RESPOND))])

@dag(dag_id="bench_grid_event_response", schedule=[EVENTS], start_date=datetime(2026, 1, 1), catchup=False,
     is_paused_upon_creation=False, max_active_runs=64)
def bench_grid_event_response():
    # A retry (a pass again; nothing is applied twice) rides out an overloaded api-server's timeout on a busy
    # machine; its time counts in the figure.
    GridEventResponseOperator(task_id="respond", kubernetes_conn_ids=["bench_k8s"], retries=2,
                              retry_delay=timedelta(seconds=1))

bench_grid_event_response()
"""


def job(i: int) -> dict[str, Any]:
    from airflow_provider_gridaware.dispatch import job_labels

    labels = job_labels(
        priority_class=("batch", "flexible")[i % 2], zone="GB", dag_id="bench", task_id=f"t{i}", run_id="bench"
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"job-{i:03d}", "namespace": "ml", "labels": labels},
        "spec": {
            "suspend": False,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "train:1"}]},
            },
        },
    }


def make_event(n: int, status: str, start: datetime) -> Any:
    from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget
    from tests.support.grid_events import make_event as build
    from tests.support.grid_events import simple_signal

    return build(
        source=SOURCE,
        protocol="webhook",
        event_id=f"bench-{n}",
        status=EventStatus(status),
        targets=(EventTarget(kind="zone", value="GB"),),
        signals=(simple_signal(start=start, levels=(2,), step=timedelta(minutes=30)),),
        received_at=datetime.now(UTC),
    )


def emulator_timing(url: str, *, reset: bool = False) -> dict[str, Any]:
    """The emulator's own account of its time since the last reset (``reset``: start a new one)."""
    import httpx

    response = httpx.request("DELETE" if reset else "GET", f"{url}/_emulator/timing", timeout=30)
    response.raise_for_status()
    return dict(response.json())


def split(total: float, timing: dict[str, Any]) -> dict[str, float]:
    """A pass's ``total`` seconds as the emulator's busy time and the rest (product + client + loopback)."""
    kinds = timing["kinds"]
    return {
        "total": total,
        "emulator": timing["busy_seconds"],
        "emulator_cpu": timing["cpu_seconds"],
        "rest": total - timing["busy_seconds"],
        "list": kinds.get("list", {}).get("seconds", 0.0),
        "patches": kinds.get("patch", {}).get("count", 0),
        "patch": kinds.get("patch", {}).get("seconds", 0.0),
    }


def describe_split(parts: dict[str, float]) -> str:
    return (
        f"{parts['total']:.2f} s = emulator {parts['emulator']:.2f} s (list {parts['list']:.3f} s, "
        f"{parts['patches']:.0f} patches {parts['patch']:.2f} s summed; its CPU {parts['emulator_cpu']:.2f} s) "
        f"+ rest {parts['rest']:.2f} s (product, client, loopback)"
    )


def suspended_count(url: str) -> int:
    """Suspended Jobs, as the emulated API server has them (one list call)."""
    import httpx

    items = httpx.get(f"{url}/apis/batch/v1/jobs", timeout=30).json()["items"]
    return sum(bool(j["spec"].get("suspend")) for j in items)


def explain(cluster: str, responses: Any) -> str:
    """What the record says of the Jobs the API server does not have suspended (a failed run's evidence)."""
    import httpx

    items = httpx.get(f"{cluster}/apis/batch/v1/jobs", timeout=30).json()["items"]
    running = {j["metadata"]["name"] for j in items if not j["spec"].get("suspend")}
    lines = [f"{len(running)} Jobs not suspended: {sorted(running)[:5]}..."]
    for r in responses.records():
        if r.target.rsplit("/", 1)[-1] in sorted(running)[:2]:
            lines.append(
                f"  {r.target} {r.event_id} mod {r.modification_number} {r.result} at {r.applied_at} "
                f"by {r.detail.get('paused_by')}; released {r.resume_requested_at} {r.resume_result} "
                f"by {r.detail.get('resumed_by')} ({r.resume_reason}) detail {r.detail}"
            )
    return "\n".join(lines)


def wait_for_holds(responses: Any, event_id: str, jobs: int, *, resumed: bool, timeout: float = 300) -> datetime:
    """When the last of ``jobs`` holds of ``event_id`` was applied (or resumed), from the response record.

    The responder records a pause once the API server has answered the patch, so this is the moment the last
    Job was suspended there; reading the store (not listing 100 Jobs every few ms) keeps the bench from
    competing with the API server it measures.
    """
    began = time.monotonic()
    while True:
        records = [r for r in responses.records(event=(SOURCE, event_id)) if r.result == "paused"]
        times = [r.resumed_at if resumed else r.applied_at for r in records]
        if len(records) == jobs and all(times):
            return max(t for t in times if t is not None)
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {event_id}: {len(records)} holds")
        time.sleep(0.1)


@contextlib.contextmanager
def emulated_cluster(workdir: Path, jobs: int, port: int = 0) -> Iterator[str]:
    """An emulated Kubernetes API server in its own process (as a cluster is), with ``jobs`` running Jobs.

    Each event gets a fresh one on ``port``, so no event's figures depend on those before it (kmock keeps
    every version of every object and every request; until the emulator stopped walking that history for
    each request, a long-lived one slowed down with every event).
    """
    import httpx

    from tests.integration.airflow_stack import VENV_BIN, ManagedProcess, poll, stop_processes

    marker = uuid.uuid4().hex
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "url"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    env.update({"PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "GRIDAWARE_TEST_STACK": marker})
    argv = [sys.executable, "-m", "tests.support.kube_emulator", "--port", str(port), "--ready-file", str(ready)]
    proc = ManagedProcess.start("bench-cluster", argv, env=env, cwd=REPO, log_path=workdir / "emulator.log")
    try:
        url = poll(lambda: ready.read_text().strip() if ready.exists() else None, timeout=60, what="the emulator")
        for i in range(jobs):
            httpx.post(f"{url}/apis/batch/v1/namespaces/ml/jobs", json=job(i), timeout=30).raise_for_status()
        yield url
    finally:
        stop_processes([proc], marker=marker)


def figures(name: str, seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * (len(ordered) - 1))))]

    return {
        "measure": name,
        "n": len(ordered),
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(pct(0.90), 3),
        "p99_s": round(pct(0.99), 3),
        "max_s": round(ordered[-1], 3),
    }


def bench_apply(events: int, jobs: int, workdir: Path) -> list[dict[str, Any]]:
    from tests.support.kube_emulator import kube_config

    with emulated_cluster(workdir / "cluster", jobs) as cluster:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(cluster, namespace="ml")}}
        )
        from airflow_provider_gridaware.operators.grid_event_response import KubernetesJobsActuator
        from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY
        from airflow_provider_gridaware.responder import respond
        from airflow_provider_gridaware.store.events import EventStore
        from airflow_provider_gridaware.store.responses import ResponseStore

        url = f"sqlite:///{workdir / 'apply.db'}"
        pauses: list[dict[str, float]] = []
        resumes: list[dict[str, float]] = []
        with EventStore(url) as store, ResponseStore(url) as responses:
            actuator = KubernetesJobsActuator(CONN_ID, DEFAULT_POLICY)
            for n in range(events + 1):
                start = datetime.now(UTC)
                store.record(make_event(n, "active", start))
                emulator_timing(cluster, reset=True)
                began = time.monotonic()
                # As the operator and the triggerer call it: the events read from the store, after the holds.
                outcome = respond(event_store=store, actuators=[actuator], store=responses, now=datetime.now(UTC))
                paused = split(time.monotonic() - began, emulator_timing(cluster))
                assert len(outcome.paused) == jobs and suspended_count(cluster) == jobs, outcome.summary()
                store.record(make_event(n, "completed", start))
                emulator_timing(cluster, reset=True)
                began = time.monotonic()
                outcome = respond(event_store=store, actuators=[actuator], store=responses, now=datetime.now(UTC))
                resumed = split(time.monotonic() - began, emulator_timing(cluster))
                assert len(outcome.resumed) == jobs and suspended_count(cluster) == 0, outcome.summary()
                print(
                    f"pass {n}{' (warm-up)' if not n else ''}: suspend {describe_split(paused)}; "
                    f"resume {describe_split(resumed)}",
                    flush=True,
                )
                if n:  # the first is the warm-up (imports, connections, the first client)
                    pauses.append(paused)
                    resumes.append(resumed)
    return [
        figures(f"apply: pass suspending {jobs} Jobs", [p["total"] for p in pauses]),
        figures("apply: of which the emulator (busy with the list and the patches)", [p["emulator"] for p in pauses]),
        figures("apply: of which the rest (product, client, loopback)", [p["rest"] for p in pauses]),
        figures(f"apply: pass resuming {jobs} Jobs", [p["total"] for p in resumes]),
        figures("apply: of which the emulator", [p["emulator"] for p in resumes]),
        figures("apply: of which the rest", [p["rest"] for p in resumes]),
    ]


#: The stages of one event when the watcher responds in the triggerer: the DAG run comes after the Jobs are
#: suspended, so only the watcher's read and pass count.
TRIGGERER_STAGES = (
    ("stored -> Jobs listed (triggerer: tail read, store, connections, client)", "stored", "listed"),
    ("Jobs listed -> first PATCH (plan, claims)", "listed", "first_patch"),
    ("first PATCH -> last PATCH answered", "first_patch", "last_patch"),
    ("last PATCH -> pauses recorded", "last_patch", "applied"),
    ("pauses recorded -> asset event (the triggerer's hand-off; the DAG run follows)", "applied", "asset_event"),
)
#: The stages of one event through Airflow: (name, from moment, to moment).
STAGES = (
    ("stored -> asset event (GridEventTrigger, triggerer)", "stored", "asset_event"),
    ("asset event -> DAG run queued (scheduler)", "asset_event", "run_queued"),
    ("DAG run queued -> running (scheduler)", "run_queued", "run_started"),
    ("DAG run running -> task scheduled (scheduler)", "run_started", "task_scheduled"),
    ("task scheduled -> queued (scheduler)", "task_scheduled", "task_queued"),
    ("task queued -> task started (executor, task process)", "task_queued", "task_started"),
    ("task started -> Jobs listed (parse, imports, store, client)", "task_started", "listed"),
    ("Jobs listed -> first PATCH (plan, claims)", "listed", "first_patch"),
    ("first PATCH -> last PATCH answered", "first_patch", "last_patch"),
    ("last PATCH -> pauses recorded", "last_patch", "applied"),
)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


def airflow_moments(stack: Any, event_id: str) -> dict[str, datetime | None]:
    """When Airflow did each step for ``event_id``'s active state: the asset event (REST API asset events), its
    DAG run (queued_at, start_date) and the response task instance (scheduled_when, queued_when, start_date)."""
    from urllib.parse import quote

    from airflow_provider_gridaware.demo.processes import poll

    def fired_event() -> dict[str, Any] | None:
        listed = stack.api("GET", "/api/v2/assets/events", params={"order_by": "-timestamp", "limit": 20})
        return next(
            (
                e
                for e in listed["asset_events"]
                if ((e.get("extra") or {}).get("payload") or {}).get("event_id") == event_id
                and e["extra"]["payload"].get("status") == "active"
            ),
            None,
        )

    # Responding in the triggerer, the Jobs are suspended before the asset event fires: give it a moment.
    fired = poll(fired_event, timeout=10, interval=0.05, what=f"the asset event of {event_id}")
    moments = {"asset_event": _when(fired["timestamp"])}
    if not fired.get("created_dagruns"):  # responding in the triggerer, the run may not exist yet: not needed
        return moments
    run_id = fired["created_dagruns"][0]["run_id"]
    base = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"
    run = stack.api("GET", base)
    task = stack.api("GET", f"{base}/taskInstances/respond")
    return {
        **moments,
        "run_queued": _when(run.get("queued_at")),
        "run_started": _when(run.get("start_date")),
        "task_scheduled": _when(task.get("scheduled_when")),
        "task_queued": _when(task.get("queued_when")),
        "task_started": _when(task.get("start_date")),
    }


def one_event(
    n: int, store: Any, responses: Any, cluster: str, jobs: int, stack: Any, stage_names: Any = STAGES
) -> dict[str, Any]:
    """One event through Airflow: its moments, the emulator's share and the resume."""
    start = datetime.now(UTC)
    emulator_timing(cluster, reset=True)
    store.record(make_event(n, "active", start))
    stored = datetime.now(UTC)
    applied = wait_for_holds(responses, f"bench-{n}", jobs, resumed=False)
    timing = emulator_timing(cluster)
    if suspended_count(cluster) != jobs:
        raise AssertionError(f"event {n}: not every Job is suspended at the API server\n" + explain(cluster, responses))
    moments: dict[str, datetime | None] = {"stored": stored, "applied": applied}
    moments["listed"] = _when(timing["first_at"].get("list"))
    moments["first_patch"] = _when(timing["first_at"].get("patch"))
    moments["last_patch"] = _when(timing["last_at"].get("patch"))
    try:
        moments.update(airflow_moments(stack, f"bench-{n}"))
    except Exception as exc:  # a stage the REST API cannot place is left out, the event still counts
        print(f"event {n}: Airflow's times not found ({type(exc).__name__}: {exc})", flush=True)
    store.record(make_event(n, "completed", start))
    completed = datetime.now(UTC)
    resumed = wait_for_holds(responses, f"bench-{n}", jobs, resumed=True)
    assert suspended_count(cluster) == 0, f"event {n}: a Job is still suspended at the API server"
    stages: dict[str, float] = {}
    for name, begin, end in stage_names:
        a, b = moments.get(begin), moments.get(end)
        if a is not None and b is not None:
            stages[name] = (b - a).total_seconds()
    return {
        "suspended": (applied - stored).total_seconds(),
        "resumed": (resumed - completed).total_seconds(),
        "emulator": timing["busy_seconds"],
        "emulator_cpu": timing["cpu_seconds"],
        "stages": stages,
    }


#: Imported once by the LocalExecutor's fork server, so each task process is forked with the response path,
#: the Kubernetes clients and Airflow's asset URI handlers loaded (see airflow_provider_gridaware/preload.py).
FAST_RESPONSE_PRELOAD = ("airflow", "airflow_provider_gridaware.preload")
#: What docs/grid_event_response.md recommends for a fast response, on top of the shared test stack's settings.
FAST_RESPONSE_ENV: dict[str, str] = {
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(FAST_RESPONSE_PRELOAD),
}


def bench_airflow(
    events: int, jobs: int, workdir: Path, *, fast: bool = True, respond_in: str = "triggerer"
) -> list[dict[str, Any]]:
    """Through a real Airflow: with the recommended fast-response settings (``fast``), else the stack's own;
    the response applied by the watcher in the triggerer (``respond_in="triggerer"``) or by the DAG's task only."""
    settings = dict(FAST_RESPONSE_ENV) if fast else {}
    with contextlib.ExitStack() as cleanup:
        if fast:
            settings.update(cleanup.enter_context(metadata_database()))
        return _bench_airflow(events, jobs, workdir, settings, respond_in)


@contextlib.contextmanager
def metadata_database() -> Iterator[dict[str, str]]:
    """Airflow's metadata on a throwaway PostgreSQL database (as the docs recommend), if the loopback server
    is there; otherwise nothing (the stack's SQLite), said in the output."""
    from tests.support.postgres import throwaway_database, unreachable_reason

    why = unreachable_reason()
    if why is not None:
        print(f"Airflow's metadata stays on SQLite: {why}", flush=True)
        yield {}
        return
    with throwaway_database("gridaware_bench_response") as url:
        yield {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{url.split('://', 1)[1]}"}


def _bench_airflow(
    events: int, jobs: int, workdir: Path, settings: dict[str, str], respond_in: str
) -> list[dict[str, Any]]:
    from tests.integration.airflow_stack import AirflowStack, free_port
    from tests.support.kube_emulator import kube_config

    dags = workdir / "dags-src"
    dags.mkdir()
    respond = {"kubernetes_conn_ids": [CONN_ID]} if respond_in == "triggerer" else None
    (dags / "bench_grid_event_response.py").write_text(DAG_FILE.replace("{respond}", repr(respond)))
    stage_names = TRIGGERER_STAGES if respond_in == "triggerer" else STAGES
    store_url = f"sqlite:///{workdir / 'store.db'}"
    os.environ["GRIDAWARE_STORE_URL"] = store_url  # every Airflow component inherits it
    from airflow_provider_gridaware.store.events import EventStore
    from airflow_provider_gridaware.store.responses import ResponseStore

    port = free_port()
    cluster = f"http://127.0.0.1:{port}"
    connections = {CONN_ID: {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(cluster, namespace="ml")}}}
    results: list[dict[str, Any]] = []
    print(
        "Airflow: the shared test stack's settings"
        + (
            " plus the fast-response settings docs/grid_event_response.md recommends: "
            + ", ".join(f"{k}={v}" for k, v in settings.items())
            if settings
            else " only (--stack-defaults)"
        )
        + f"; the response applied {'by the watcher in the triggerer' if respond else 'by the DAG task only'}",
        flush=True,
    )
    with EventStore(store_url) as store, ResponseStore(store_url) as responses:
        stack = AirflowStack(workdir / "airflow_home", connections=connections, dag_sources=[dags], extra_env=settings)
        stack.start(timeout=240)
        try:
            stack.wait_for_dag(DAG_ID, timeout=120)
            for n in range(events + 1):
                with emulated_cluster(workdir / f"cluster-{n}", jobs, port):
                    result = one_event(n, store, responses, cluster, jobs, stack, stage_names)
                stages = ", ".join(f"{name.split(' (')[0]} {sec:.2f}" for name, sec in result["stages"].items())
                print(
                    f"event {n}{' (warm-up)' if not n else ''}: suspended in {result['suspended']:.2f} s "
                    f"(emulator busy {result['emulator']:.2f} s, rest {result['suspended'] - result['emulator']:.2f} s; "
                    f"{stages}), resumed in {result['resumed']:.2f} s",
                    flush=True,
                )
                if n:  # the first is the warm-up (first parse, imports, connections)
                    results.append(result)
        finally:
            for note in stack.stop():
                print(f"stack stop: {note}")
    rows = [
        figures(f"airflow: event stored -> last of {jobs} Jobs suspended", [r["suspended"] for r in results]),
        figures(
            "airflow: of which the emulator (busy with the list and the patches)", [r["emulator"] for r in results]
        ),
        figures("airflow: of which the rest", [r["suspended"] - r["emulator"] for r in results]),
    ]
    for name, _, _ in stage_names:
        seconds = [r["stages"][name] for r in results if name in r["stages"]]
        if seconds:
            rows.append(figures(f"airflow stage: {name}", seconds))
    rows.append(figures(f"airflow: completion stored -> last of {jobs} Jobs resumed", [r["resumed"] for r in results]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("apply", "airflow", "both"), default="both")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument(
        "--stack-defaults",
        action="store_true",
        help="run Airflow with the shared test stack's settings only, without the recommended fast-response ones",
    )
    parser.add_argument(
        "--respond-in",
        choices=("triggerer", "task"),
        default="triggerer",
        help="through Airflow: the watcher applies the response in the triggerer (recommended), or only the DAG's task",
    )
    args = parser.parse_args()
    # One access-log line per API call would measure the logging, not the response.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (other work on this machine shows here)")
    with tempfile.TemporaryDirectory(prefix="bench-grid-response-") as tmp:
        results = []
        if args.mode in ("apply", "both"):
            (Path(tmp) / "apply").mkdir()
            results += bench_apply(args.events, args.jobs, Path(tmp) / "apply")
        if args.mode in ("airflow", "both"):
            (Path(tmp) / "airflow").mkdir()
            results += bench_airflow(
                args.events, args.jobs, Path(tmp) / "airflow", fast=not args.stack_defaults, respond_in=args.respond_in
            )
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
