"""The Kubernetes training example end to end on a real Airflow 3.3, against two emulated clusters.

Two Kubernetes API emulators run as processes (``python -m tests.support.kube_emulator --run-jobs``): each
plays API server, Job controller and kubelet, running an unsuspended Job's command as a local process.
The example DAG's connections ``kubernetes_frankfurt`` (zone DE) and ``kubernetes_paris`` (zone FR) point
at them; its carbon signal is a replay connection with a perfect forecast: DE at 420 gCO2/kWh throughout,
FR at 400 except one clean hour (40) that starts a minute or a few ahead. So the best plan both waits
(time shifting) and moves to FR (region shifting); starting at once at home (DE) is the counterfactual.

The test checks that the Job was created suspended in the Paris cluster at once, that the task waited in
the triggerer until the window, that the plan chose the clean hour, that the training ran there after it (its model and metrics exist), and
that the task's XCom is the ledger record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.ledger.records import TryKey
from tests.integration.airflow_stack import (
    REPO,
    VENV_BIN,
    AirflowStack,
    BackgroundPoll,
    ManagedProcess,
    StackError,
    WatchedRun,
    marked_pids,
    poll,
    stop_processes,
)
from tests.integration.ledger_checks import check_figures, run_records
from tests.support.http import LOOPBACK
from tests.support.kube_emulator import kube_config
from tests.support.traces import write_flat_trace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTC = timezone.utc
DAG_ID, TASK_ID = "example_kubernetes_training", "train_model"
CLUSTERS = {"DE": "kubernetes_frankfurt", "FR": "kubernetes_paris"}
CARBON_CONN = "gridaware_replay_k8s_example"
WINDOW_TRIGGER = "airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger"
#: From writing the trace to the earliest window: time to trigger, schedule, plan, create the Job and defer.
LEAD = timedelta(seconds=75)
STEP = timedelta(minutes=5)
#: The clean hour in FR: long enough for the example's 30-minute job with its runtime margin.
DIP = timedelta(hours=1)
WORKLOAD = REPO / "example_dags" / "workloads" / "train_logreg.py"


def start_emulator(workdir: Path, name: str, marker: str) -> tuple[ManagedProcess, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "url"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "GRIDAWARE_TEST_STACK": marker,
        }
    )
    argv = [sys.executable, "-m", "tests.support.kube_emulator", "--port", "0", "--ready-file", str(ready)]
    argv += ["--run-jobs", "--workdir", str(workdir / "jobs")]
    proc = ManagedProcess.start(name, argv, env=env, cwd=REPO, log_path=workdir / "emulator.log")

    def url() -> str | None:
        if not proc.running:
            raise StackError(f"the Kubernetes emulator exited\n{proc.describe()}")
        return ready.read_text().strip() if ready.exists() else None

    return proc, poll(url, timeout=30, interval=0.1, what=f"Kubernetes emulator {name}", on_timeout=proc.describe)


def window_start(now: datetime) -> datetime:
    """The first 5-minute boundary at least ``LEAD`` after ``now`` (the planner works on 5-minute slots)."""
    earliest = now + LEAD
    step = STEP.total_seconds()
    return datetime.fromtimestamp(-(-earliest.timestamp() // step) * step, UTC)


@contextlib.contextmanager
def kube_clusters(airflow_stack: AirflowStack, integration_workdir: Path) -> Iterator[tuple[dict[str, str], datetime]]:
    """(zone -> emulator URL, the window's start); the example's cluster connections and a replay carbon
    connection are added. The carbon trace: DE 420 gCO2/kWh throughout; FR 400, except one clean hour
    (40) starting at the window, so the best plan waits for it and moves to FR."""
    marker = uuid.uuid4().hex
    workdir = integration_workdir / "kubernetes"
    procs: list[ManagedProcess] = []
    try:
        urls = {}
        for zone in CLUSTERS:
            proc, urls[zone] = start_emulator(workdir / zone, f"kube-{zone}", marker)
            procs.append(proc)
        for zone, conn_id in CLUSTERS.items():
            airflow_stack.add_connection(
                conn_id, "kubernetes", extra={"kube_config": kube_config(urls[zone], namespace="ml")}
            )
        window = window_start(airflow_stack.now())
        trace = write_flat_trace(workdir / "carbon.csv", {"FR": 400, "DE": 420}, dip=("FR", window, window + DIP, 40))
        extra = {"anchor": "fixed", "forecast_error": 0}
        airflow_stack.add_connection(CARBON_CONN, "gridaware_replay", host=str(trace), extra=extra)
        yield urls, window
    finally:
        stop_processes(procs, marker=marker)
        if marked_pids(marker):
            raise StackError(f"Kubernetes emulator processes survived teardown: {marked_pids(marker)}")


def jobs(url: str) -> list[dict[str, Any]]:
    response = LOOPBACK.get(f"{url}/apis/batch/v1/jobs", timeout=10)
    response.raise_for_status()
    return list(response.json()["items"])


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class KubeTraining(WatchedRun):
    """The training run and its wait under way (``waiting_jobs``: the Jobs per zone's cluster)."""

    urls: dict[str, str]
    window: datetime
    out: Path


@contextlib.contextmanager
def kube_training_started(stack: AirflowStack, integration_workdir: Path) -> Iterator[KubeTraining]:
    """Start the two clusters, trigger the training with its clean hour ``LEAD`` (or a little more) ahead, start watching.

    Used by the ``kube_training`` fixture (``tests/integration/conftest.py``) as the session starts, so this
    wait overlaps the others'; the test collects it.
    """
    with kube_clusters(stack, integration_workdir) as (urls, window):
        out = integration_workdir / "kubernetes" / f"model-{uuid.uuid4().hex[:8]}"
        conf = {
            "carbon_conn_id": CARBON_CONN,
            "script": str(WORKLOAD),
            "output_dir": str(out / "model"),
            "checkpoint_dir": str(out / "checkpoints"),
        }
        run_id = stack.trigger_dag(DAG_ID, conf=conf, timeout=90)
        seen: list[tuple[datetime, str, str | None]] = []
        waiting_jobs: dict[str, list[dict[str, Any]]] = {}

        def explain() -> str:
            states = " -> ".join(f"{at:%H:%M:%S} {state} {trigger or ''}" for at, state, trigger in seen[-20:])
            logs = ""
            with contextlib.suppress(StackError):
                logs = stack.task_log(DAG_ID, run_id, TASK_ID)[-5000:]
            emulators = "\n".join(
                f"----- emulator {zone} -----\n"
                f"{(integration_workdir / 'kubernetes' / zone / 'emulator.log').read_text()[-2000:]}"
                for zone in CLUSTERS
            )
            return f"window {window}\nstates: {states}\n{logs}\n{emulators}\n{stack.diagnostics(20)}"

        def check() -> str | None:
            ti = next(t for t in stack.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
            trigger = (ti.get("trigger") or {}).get("classpath")
            seen.append((stack.now(), ti["state"], trigger))
            if ti["state"] == "deferred" and trigger == WINDOW_TRIGGER and not waiting_jobs:
                waiting_jobs.update({zone: jobs(url) for zone, url in urls.items()})
            state = stack.dag_run(DAG_ID, run_id)["state"]
            return state if state in ("success", "failed") else None

        # Every 2 s: each check costs the api-server ~25 ms of CPU, the deferral is seen long before the window.
        finished = BackgroundPoll(check, timeout=720, interval=2.0, what="the training run", on_timeout=explain)
        try:
            yield KubeTraining(stack, run_id, seen, waiting_jobs, finished, explain, urls=urls, window=window, out=out)
        finally:
            finished.stop()


@pytest.mark.awaits_window
def test_example_trains_on_kubernetes_in_the_cleanest_window(kube_training: KubeTraining) -> None:
    kt = kube_training
    stack, urls, window, run_id, out = kt.stack, kt.urls, kt.window, kt.run_id, kt.out
    seen, waiting_jobs, explain = kt.seen, kt.waiting_jobs, kt.explain
    state = kt.finished.result()
    why = f"\n{explain()}"
    assert state == "success", why

    # It waited for the window in the triggerer, and the Job sat suspended in the Paris cluster meanwhile.
    waited = [at for at, s, trigger in seen if s == "deferred" and trigger == WINDOW_TRIGGER]
    assert waited and waited[0] < window, f"never seen waiting for the window before it opened{why}"
    assert waiting_jobs["DE"] == [], why
    (waiting,) = waiting_jobs["FR"]
    assert waiting["spec"]["suspend"] is True and "startTime" not in (waiting.get("status") or {}), why

    # Then it ran there, after the window opened, and trained the model.
    result = stack.xcom(DAG_ID, run_id, TASK_ID)
    why = f"\nresult: {json.dumps(result, indent=1)}{why}"
    assert result["zone"] == "FR" and result["cluster"] == CLUSTERS["FR"] and result["namespace"] == "ml", why
    assert result["job_name"] == waiting["metadata"]["name"], why
    assert result["decision"]["plan"]["zone"] == "FR" and result["decision"]["status"] == "released", why
    assert result["counterfactual"]["zone"] == "DE", why
    # Planned at the window's start, or at the trigger's wake-up if it woke late (a loaded machine): in the hour.
    planned = _utc(result["decision"]["plan"]["chunks"][0]["start"])
    assert window <= planned < window + DIP, f"not the clean hour's plan{why}"
    # The Job's times are the cluster's (the wall clock); the ledger maps them onto the stack's clock.
    job_start, job_end = stack.from_wall(_utc(result["start_time"])), stack.from_wall(_utc(result["end_time"]))
    assert job_start >= window, f"the Job started before its window{why}"
    assert job_end >= job_start, why
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.8 and metrics["zone"] == "FR", metrics
    assert metrics["job_id"] == f"{DAG_ID}/{run_id}/{TASK_ID}", metrics
    assert (out / "model" / "model.json").exists() and (out / "checkpoints").is_dir()
    (final,) = jobs(urls["FR"])
    conditions = {c["type"]: c["status"] for c in final["status"]["conditions"]}
    assert conditions.get("Complete") == "True" and final["status"]["succeeded"] == 1, why
    assert jobs(urls["DE"]) == [], why
    log = stack.task_log(DAG_ID, run_id, TASK_ID)
    for line in ("suspended, waiting for its grid window", "grid window open", "unsuspended Job", "completed"):
        assert line in log, f"{line!r} not in the task log{why}"
    # The wait as released, on the worker: the completion watch's trigger log replaces the window trigger's.
    assert re.search(r"grid window open in zone FR \(\d+ decisions? in the triggerer\): released after", log), why
    # The report task read the ledger record.
    assert "trained in FR" in str(stack.xcom(DAG_ID, run_id, "report")), why
    # The carbon ledger holds exactly this run's try, written by the operator's end path, over the Job's own times.
    ti = next(t for t in stack.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
    (record,) = run_records(DAG_ID, run_id)  # the report task is not grid-aware: no record of its own
    why = f"\nledger: {record}{why}"
    assert record.key == TryKey(DAG_ID, run_id, TASK_ID, -1, ti["try_number"]), why
    assert (record.operator, record.state, record.priority_class) == ("kubernetes", "success", "flexible"), why
    assert (record.actual.zone, record.placement) == ("FR", f"{CLUSTERS['FR']}/ml"), why
    assert (record.actual.start, record.actual.end) == (job_start, job_end), why
    assert record.planned_start == planned and record.reason == result["decision"]["reason"], why
    assert record.counterfactual is not None and record.counterfactual.zone == "DE", why
    assert record.counterfactual.start == _utc(result["decision"]["waiting_since"]), why
    hours = (record.actual.end - record.actual.start).total_seconds() / 3600
    check_figures(record, energy_kwh=0.4 * 1.2 * hours)  # 1 x A100 at 400 W, default PUE 1.2
    print(
        f"\n{DAG_ID}/{run_id}: waited {waited[0]:%H:%M:%S}-{window:%H:%M:%S}, ran {result['start_time']} in FR; {metrics}"
    )
