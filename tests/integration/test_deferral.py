"""Deferral end to end on a real Airflow 3.3: grid-window tasks wait in the triggerer and run in the dip.

A dedicated simulator serves zone ``DIP``: a flat 300 gCO2/kWh trace with one 5-minute dip to 40 a few
minutes ahead, with a perfect forecast. The test DAGs (``tests/integration/dags/gridaware_deferral.py``)
plan a 5-minute job with a 40-minute deadline on it, so the best window is the dip.

Everything waits for the same dip, concurrently, because the wait is real time:

1. the *restart* runs (``@task.gridaware``, ``GridWindowSensor(deferrable=True)`` and the same sensor with
   ``end_from_trigger=True``) are triggered and reach ``deferred`` in the first triggerer;
2. that triggerer is stopped and a new one started (:meth:`AirflowStack.restart_component`); while it is
   down the *steady* runs of the same DAGs and the no-signal fallback are triggered, so their triggers
   only ever run in the new triggerer, without a restart mid-wait;
3. a watcher thread polls every task instance (REST API) and the process table once a second, so each
   test can show from the record that its task stayed ``deferred`` until the dip with no worker process
   holding it, and ran in the dip.

The dip is placed on the first 5-minute boundary at least ``LEAD`` after the simulator starts (the
WattTime API serves 5-minute points on the clock's boundaries, and the planner's slots are 5 minutes). The
shared stack's clock is shifted so that boundary comes about when the set-up ends (``shared_clock`` in
``conftest.py``); every time here is on that clock, Airflow's records mapped onto it (``stack.from_wall``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_gridaware.ledger.records import TryKey
from tests.integration.airflow_stack import (
    TERMINAL_TASK_STATES,
    AirflowStack,
    Restart,
    StackError,
    free_port,
    marked_pids,
    poll,
    start_simulator,
    stop_processes,
    tail,
)
from tests.integration.conftest import FAST_HTTP, SIM_LOGIN, SIM_PASSWORD
from tests.integration.ledger_checks import run_records
from tests.support.http import LOOPBACK

# The dip is minutes away in real time; the first test to wait also pays for the stack and the scenario.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTC = timezone.utc
STEP = timedelta(minutes=5)
#: From starting the DIP simulator to the earliest dip start: time to defer the restart runs, restart
#: the triggerer, defer the steady runs, and still watch them wait for a while.
LEAD = timedelta(seconds=75)
#: The steady runs must have been waiting in the new triggerer at least this long before the dip.
MIN_WAIT_SEEN = timedelta(seconds=10)
FLAT, DIP_VALUE = 300.0, 40.0
JOB_MINUTES = 5  # the DAGs' duration
REFRESH = timedelta(seconds=60)  # the DAGs' refresh_interval
FETCH_ALLOWANCE = timedelta(seconds=10)

# Kept in step with tests/integration/dags/gridaware_deferral.py (which the test process does not import).
DIP_CONN, DEAD_CONN, ZONE = "gridaware_watttime_dip", "gridaware_watttime_dead", "DIP"
JOB_DURATION = timedelta(minutes=5)  # the DAGs' duration (dags/gridaware_deferral.py)
TASK_DAG = "gridaware_deferral_task"
SENSOR_DAG = "gridaware_deferral_sensor"
FROM_TRIGGER_DAG = "gridaware_deferral_sensor_from_trigger"
FALLBACK_DAG = "gridaware_deferral_fallback"
WAITING_TASK = {TASK_DAG: "work", SENSOR_DAG: "wait_for_window", FROM_TRIGGER_DAG: "wait_for_window"}
KINDS = {"task": TASK_DAG, "sensor": SENSOR_DAG, "sensor_from_trigger": FROM_TRIGGER_DAG}
TEST_DAGS = (TASK_DAG, SENSOR_DAG, FROM_TRIGGER_DAG, FALLBACK_DAG)
TRIGGER_CLASS = "airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger"
#: After deferring, the task's process may take a moment to exit; a worker seen later is a failure.
WORKER_GRACE = timedelta(seconds=15)
#: How long before its last deferred sighting the API may show a task without its (fired) trigger.
EDGE = timedelta(seconds=5)
#: Scheduling latency allowed between the window opening and the work running on a worker.
RUN_SLACK = timedelta(seconds=90)


def _utc(text: str | None) -> datetime:
    if not text:
        raise AssertionError("expected a timestamp, got nothing")
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ceil(value: datetime, step: timedelta) -> datetime:
    width = step.total_seconds()
    return datetime.fromtimestamp(math.ceil(value.timestamp() / width) * width, UTC)


# -- the DIP simulator -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dip:
    """The one clean window of zone DIP, and the simulator serving it."""

    start: datetime
    end: datetime
    url: str
    trace: Path
    log: Path


def write_dip_trace(path: Path, *, around: datetime, dip_start: datetime) -> None:
    """A ``time,zone,value`` trace: 5-minute steps from a day before ``around`` to two days after, flat but for one dip."""
    first = _ceil(around - timedelta(days=1), STEP)
    lines = ["time,zone,value"]
    for i in range(int(timedelta(days=3) / STEP)):
        start = first + i * STEP
        lines.append(f"{_iso(start)},{ZONE},{DIP_VALUE if start == dip_start else FLAT:g}")
    path.write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def dip_started(airflow_stack: AirflowStack, integration_workdir: Path) -> Iterator[Dip]:
    """A simulator serving the DIP trace (fixed anchor, clock on wall time, perfect forecast) and its connections.

    Started after the stack is up, so the dip is a fixed distance from the moment the runs are triggered.
    """
    workdir = integration_workdir / "dip_simulator"
    workdir.mkdir(parents=True, exist_ok=True)
    now = airflow_stack.now()
    dip_start = _ceil(now + LEAD, STEP)
    trace = workdir / "dip_trace.csv"
    write_dip_trace(trace, around=now, dip_start=dip_start)
    marker = uuid.uuid4().hex
    proc, url = start_simulator(
        workdir,
        *("--trace", f"{trace}:{ZONE}", "--anchor", "fixed", "--now", _iso(now), "--forecast-error", "0"),
        *("--watttime-username", SIM_LOGIN, "--watttime-password", SIM_PASSWORD),
        marker=marker,
        clock=airflow_stack.clock,
    )
    try:
        watttime = {"login": SIM_LOGIN, "password": SIM_PASSWORD, "extra": dict(FAST_HTTP)}
        airflow_stack.add_connection(DIP_CONN, "gridaware_watttime", host=f"{url}/watttime", **watttime)
        dead = f"http://127.0.0.1:{free_port()}/watttime"  # nobody listens there
        airflow_stack.add_connection(DEAD_CONN, "gridaware_watttime", host=dead, **watttime)
        yield Dip(dip_start, dip_start + STEP, url, trace, proc.log_path)
    finally:
        stop_processes([proc], marker=marker)
        if marked_pids(marker):
            raise StackError(f"DIP simulator processes survived teardown: {marked_pids(marker)}")


# -- watching task instances -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Seen:
    """One observation of a task instance."""

    at: datetime
    state: str | None
    trigger_class: str | None
    triggerer_id: int | None
    workers: tuple[int, ...]  # pids of processes whose command line names this task instance


class Watcher(threading.Thread):
    """Polls the task instances of the test DAGs and the process table about once a second.

    A worker process is recognised by its title: the LocalExecutor worker and the task runner both put
    the task instance's id in theirs (``airflow worker -- ... <ti id>``).
    """

    def __init__(self, stack: AirflowStack, dag_ids: tuple[str, ...], interval: float = 1.0) -> None:
        super().__init__(name="ti-watcher", daemon=True)
        self.stack = stack
        self.dag_ids = list(dag_ids)
        self.interval = interval
        self.history: dict[tuple[str, str, str], list[Seen]] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=stack.api_url, headers=dict(stack.client.headers), timeout=20)

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._tick()
            except Exception as exc:  # keep watching: a restart or a slow answer must not end the record
                self.errors.append(f"{self.stack.now().isoformat()} {type(exc).__name__}: {exc}")
            self._halt.wait(self.interval)

    def _tick(self) -> None:
        titles = _process_titles(self.stack.marker)
        response = self._client.post(
            "/api/v2/dags/~/dagRuns/~/taskInstances/list", json={"dag_ids": self.dag_ids, "page_limit": 100}
        )
        response.raise_for_status()
        at = self.stack.now()
        with self._lock:
            for ti in response.json()["task_instances"]:
                trigger = ti.get("trigger") or {}
                workers = tuple(pid for pid, title in titles.items() if ti["id"] in title)
                seen = Seen(at, ti["state"], trigger.get("classpath"), trigger.get("triggerer_id"), workers)
                self.history.setdefault((ti["dag_id"], ti["dag_run_id"], ti["task_id"]), []).append(seen)

    def seen(self, dag_id: str, run_id: str, task_id: str) -> list[Seen]:
        with self._lock:
            return list(self.history.get((dag_id, run_id, task_id), []))

    def last_states(self) -> dict[tuple[str, str, str], str | None]:
        """The state each task instance had at its latest observation."""
        with self._lock:
            return {key: seen[-1].state for key, seen in self.history.items()}

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self._client.close()


def _process_titles(marker: str) -> dict[int, str]:
    """Command lines of our own processes (the Airflow stack's), by pid."""
    titles = {}
    for pid in marked_pids(marker):
        with contextlib.suppress(OSError):
            titles[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    return titles


def describe_states(seen: list[Seen]) -> str:
    """``state[triggerer] xN`` runs, e.g. ``queued x2 -> running x3 -> deferred[7] x40 -> success``."""
    runs: list[list[Any]] = []
    for s in seen:
        label = f"{s.state}[{s.triggerer_id}]" if s.triggerer_id is not None else str(s.state)
        label += f" workers={list(s.workers)}" if s.workers and s.state == "deferred" else ""
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
            runs[-1][3] = s.at
        else:
            runs.append([label, 1, s.at, s.at])
    return " -> ".join(f"{label} x{n} ({a:%H:%M:%S}-{b:%H:%M:%S})" for label, n, a, b in runs)


# -- the scenario ----------------------------------------------------------------------------------------
@dataclass
class Scenario:
    """Everything triggered for the dip, and what happened before the wait."""

    stack: AirflowStack
    dip: Dip
    watcher: Watcher
    restart: Restart | None = None
    old_triggerer: int | None = None
    new_triggerer: int | None = None
    runs: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, phase) -> run id
    fallback_run: str = ""
    setup_seconds: float = 0.0
    #: (dag_id, run_id) -> {task_id: state} as the UI's Grid view got it while everything was waiting.
    ui_states: dict[tuple[str, str], dict[str, str | None]] = field(default_factory=dict)

    def settled(self) -> bool:
        """Collecting the scenario now would not wait: the watcher last saw every run's tasks finished."""
        expected = {run_id for run_id in (*self.runs.values(), self.fallback_run) if run_id}
        last = self.watcher.last_states()
        return expected <= {run_id for _, run_id, _ in last} and all(
            state in TERMINAL_TASK_STATES for state in last.values()
        )

    def explain(self, dag_id: str, run_id: str, *, logs: bool = True) -> str:
        """Evidence for a failure message: states seen, task logs, triggerer and simulator log tails."""
        parts = [f"dip {_iso(self.dip.start)} - {_iso(self.dip.end)}; now {_iso(self.stack.now())}"]
        if self.restart is not None:
            parts.append(
                f"triggerer restart: job {self.old_triggerer} -> {self.new_triggerer}, "
                f"new process at {_iso(self.restart.started_at)}, notes {self.restart.notes}"
            )
        try:
            tis = self.stack.task_instances(dag_id, run_id)
        except StackError as exc:
            tis, parts = [], [*parts, f"(task instances unavailable: {exc})"]
        for ti in tis:
            history = describe_states(self.watcher.seen(dag_id, run_id, ti["task_id"]))
            parts.append(f"--- {ti['task_id']}: {ti['state']}, start {ti['start_date']}, end {ti['end_date']}")
            parts.append(f"    seen: {history or '(never)'}")
            if logs:
                with contextlib.suppress(StackError):
                    parts.append(self.stack.task_log(dag_id, run_id, ti["task_id"])[-4000:])
        if self.watcher.errors:
            parts.append("watcher errors: " + "; ".join(self.watcher.errors[-5:]))
        triggerer = self.stack.processes.get("triggerer")
        if triggerer is not None:
            parts.append(triggerer.describe(60))
        parts.append(f"----- DIP simulator {self.dip.log} -----\n{tail(self.dip.log, 20)}")
        return "\n".join(parts)


def _grid_ti(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, Any]:
    task_id = WAITING_TASK.get(dag_id, "wait_for_window")
    return next(ti for ti in stack.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def wait_deferred(
    stack: AirflowStack, runs: dict[str, str], *, triggerer_id: int | None = None, timeout: float = 120.0
) -> dict[str, int]:
    """Wait until each ``{dag_id: run_id}``'s waiting task is deferred on a GridWindowTrigger held by a triggerer.

    With ``triggerer_id``, held by that triggerer. Returns the triggerer id per DAG.
    """
    held: dict[str, int] = {}

    def check() -> dict[str, int] | None:
        for dag_id, run_id in runs.items():
            ti = _grid_ti(stack, dag_id, run_id)
            if ti["state"] in TERMINAL_TASK_STATES:
                raise StackError(f"{dag_id}/{run_id}: the waiting task ended {ti['state']} before the test saw it wait")
            trigger = ti.get("trigger") or {}
            owner = trigger.get("triggerer_id")
            if ti["state"] != "deferred" or owner is None or (triggerer_id is not None and owner != triggerer_id):
                return None
            assert trigger["classpath"] == TRIGGER_CLASS, trigger
            held[dag_id] = int(owner)
        return held

    def explain() -> str:
        lines = []
        for dag_id, run_id in runs.items():
            ti = _grid_ti(stack, dag_id, run_id)
            lines.append(f"{dag_id}/{run_id}: {ti['state']} trigger={ti.get('trigger')}")
            with contextlib.suppress(StackError):
                lines.append(stack.task_log(dag_id, run_id, ti["task_id"])[-2000:])
        return "\n".join(lines) + "\n" + stack.diagnostics(30)

    what = f"{', '.join(runs)} to be deferred" + (f" in triggerer {triggerer_id}" if triggerer_id else "")
    return poll(check, timeout=timeout, interval=0.5, what=what, on_timeout=explain)


@contextlib.contextmanager
def scenario_started(airflow_stack: AirflowStack, integration_workdir: Path) -> Iterator[Scenario]:
    """Start the DIP simulator, trigger every run for the dip (restarting the triggerer in between), then
    hand over to the tests.

    Used by the ``deferral_scenario`` fixture (``tests/integration/conftest.py``) as the session starts, so
    this wait overlaps the other waiting scenarios'.
    """
    with dip_started(airflow_stack, integration_workdir) as dip:
        yield from _scenario(airflow_stack, dip)


def _scenario(airflow_stack: AirflowStack, dip: Dip) -> Iterator[Scenario]:
    stack = airflow_stack
    began = time.monotonic()
    for dag_id in TEST_DAGS:
        stack.wait_for_dag(dag_id, timeout=90)
    watcher = Watcher(stack, TEST_DAGS)
    watcher.start()
    found = Scenario(stack, dip, watcher)
    try:
        # 1. The restart runs defer in the first triggerer.
        for kind, dag_id in KINDS.items():
            found.runs[kind, "restart"] = stack.trigger_dag(dag_id)
        restart_runs = {KINDS[kind]: run for (kind, phase), run in found.runs.items() if phase == "restart"}
        owners = set(wait_deferred(stack, restart_runs).values())
        assert len(owners) == 1, f"the restart runs are held by several triggerers: {owners}"
        found.old_triggerer = owners.pop()
        _wait_for_first_plan(stack, dip)

        # 2. Restart the triggerer; trigger the steady runs while it is down, so only the new one runs them.
        old_process = stack.processes["triggerer"]
        steady = _TriggerWhenStopped(stack, old_process.popen)
        steady.start()
        found.restart = stack.restart_component("triggerer")
        steady.join(timeout=60)
        if steady.error is not None:
            raise steady.error
        found.runs.update({(kind, "steady"): run for kind, run in steady.runs.items()})
        found.fallback_run = steady.fallback_run

        # 3. Everything deferred in the new triggerer (the restart runs moved over), with time to spare.
        found.new_triggerer = _triggerer_job_since(stack, found.restart.started_at)
        assert found.new_triggerer != found.old_triggerer
        steady_runs = {KINDS[kind]: run for (kind, phase), run in found.runs.items() if phase == "steady"}
        everything = {**steady_runs, FALLBACK_DAG: found.fallback_run}
        wait_deferred(stack, restart_runs, triggerer_id=found.new_triggerer)
        wait_deferred(stack, everything, triggerer_id=found.new_triggerer)
        for (kind, _), run_id in found.runs.items():
            found.ui_states[KINDS[kind], run_id] = ui_grid_states(stack, KINDS[kind], run_id)
        found.ui_states[FALLBACK_DAG, found.fallback_run] = ui_grid_states(stack, FALLBACK_DAG, found.fallback_run)
        spare = dip.start - stack.now()
        assert spare >= MIN_WAIT_SEEN, (
            f"setup took too long: only {spare.total_seconds():.0f}s left before the dip at {_iso(dip.start)}; "
            f"raise LEAD ({LEAD.total_seconds():.0f}s). Restart took {found.restart.seconds:.1f}s"
        )
        found.setup_seconds = time.monotonic() - began
        print(
            f"\ndeferral scenario ready in {found.setup_seconds:.1f}s; triggerer restart "
            f"{found.restart.stop_seconds:.1f}s stop + {found.restart.start_seconds:.1f}s start; "
            f"dip at {_iso(dip.start)}, {spare.total_seconds():.0f}s from now"
        )
        yield found
    finally:
        watcher.close()


class _TriggerWhenStopped(threading.Thread):
    """Triggers the steady runs and the fallback as soon as the old triggerer process has exited.

    A thread, because the restart itself must run in the main thread (a child started from another
    thread would get its parent-death signal when that thread ends).
    """

    def __init__(self, stack: AirflowStack, old_triggerer: Any) -> None:
        super().__init__(name="trigger-steady-runs", daemon=True)
        self.stack = stack
        self.old = old_triggerer
        self.runs: dict[str, str] = {}
        self.fallback_run = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 60
            while self.old.poll() is None:
                if time.monotonic() > deadline:
                    raise StackError("the old triggerer did not stop within 60 s")
                time.sleep(0.1)
            for kind, dag_id in KINDS.items():
                self.runs[kind] = self.stack.trigger_dag(dag_id)
            self.fallback_run = self.stack.trigger_dag(FALLBACK_DAG)
        except BaseException as exc:
            self.error = exc


def ui_grid_states(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, str | None]:
    """Task states as the UI's Grid view gets them (``/ui/grid/ti_summaries``, one NDJSON line per run)."""
    response = stack.client.get(f"/ui/grid/ti_summaries/{dag_id}", params={"run_ids": run_id})
    if response.status_code != 200:
        raise StackError(f"GET /ui/grid/ti_summaries/{dag_id} answered {response.status_code}: {response.text[:500]}")
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return {ti["task_id"]: ti["state"] for line in lines for ti in line["task_instances"]}


def _triggerer_job_since(stack: AirflowStack, since: datetime) -> int:
    """The id of the triggerer job that started after ``since`` (the restarted triggerer)."""
    jobs = stack.api("GET", "/api/v2/jobs", params={"job_type": "TriggererJob", "order_by": "-start_date", "limit": 5})[
        "jobs"
    ]
    new = [job for job in jobs if job["start_date"] and _utc(job["start_date"]) >= since - timedelta(seconds=1)]
    assert new, f"no triggerer job started after {_iso(since)}: {jobs}"
    return int(new[0]["id"])


def _wait_for_first_plan(stack: AirflowStack, dip: Dip) -> None:
    """Wait until the simulator has served WattTime requests (login and forecast): the triggers are planning."""

    def served() -> int | None:
        count = int(LOOPBACK.get(f"{dip.url}/_sim/state", timeout=10).json()["requests"].get("watttime", 0))
        return count if count >= 2 else None

    poll(served, timeout=60, interval=0.5, what="the triggers to fetch the DIP forecast", on_timeout=stack.diagnostics)


# -- checks ----------------------------------------------------------------------------------------------
def _wait_for_success(sc: Scenario, dag_id: str, run_id: str) -> None:
    timeout = max(60.0, (sc.dip.end - sc.stack.now()).total_seconds() + RUN_SLACK.total_seconds())
    state = sc.stack.wait_for_run(dag_id, run_id, timeout=timeout)
    tis = {ti["task_id"]: ti["state"] for ti in sc.stack.task_instances(dag_id, run_id)}
    assert state == "success" and set(tis.values()) == {"success"}, (
        f"{dag_id}/{run_id} ended {state}: {tis}\n{sc.explain(dag_id, run_id)}"
    )


def _check_waited_in_triggerer(
    sc: Scenario, dag_id: str, run_id: str, task_id: str, released: datetime, *, opens: datetime | None = None
) -> list[Seen]:
    """Deferred on a GridWindowTrigger from the first deferral to the release, and no worker held it meanwhile.

    ``opens``: when the wait should end (default: the dip's start); the task must be seen deferred until then.
    """
    opens = sc.dip.start if opens is None else opens
    seen = sc.watcher.seen(dag_id, run_id, task_id)
    deferred = [s for s in seen if s.state == "deferred"]
    why = f"\nstates seen: {describe_states(seen)}\n{sc.explain(dag_id, run_id, logs=False)}"
    assert deferred, f"{task_id} was never seen deferred{why}"
    assert {s.trigger_class for s in deferred} - {None} == {TRIGGER_CLASS}, why
    first = deferred[0].at
    # At the release only, the API can show a deferred task without its trigger: its task-instance list loads
    # each trigger in a query of its own, and the trigger can fire and be deleted between the two.
    bare = [s.at for s in deferred if s.trigger_class is None]
    assert all(at >= deferred[-1].at - EDGE for at in bare), f"{task_id} lost its trigger while waiting{why}"
    # Stayed deferred the whole wait: every observation from the first deferral until shortly before the
    # release (the watcher polls once a second) says deferred.
    waiting = [s for s in seen if first <= s.at <= released - timedelta(seconds=2)]
    assert all(s.state == "deferred" for s in waiting), f"{task_id} left deferred before its release{why}"
    assert deferred[-1].at >= opens - timedelta(seconds=15), (
        f"{task_id} stopped being deferred before {_iso(opens)}{why}"
    )
    held = [s for s in deferred if s.at > first + WORKER_GRACE and s.workers]
    assert not held, f"a worker process held {task_id} while it was deferred: {held[:3]}{why}"
    ui = sc.ui_states.get((dag_id, run_id), {})
    assert ui.get(task_id) == "deferred", f"the UI's grid showed {task_id} as {ui.get(task_id)!r} while waiting{why}"
    owners = sorted({s.triggerer_id for s in deferred if s.triggerer_id is not None})
    print(  # the evidence, for -s runs and reports
        f"\n{dag_id}/{run_id} {task_id}: deferred {first:%H:%M:%S}-{deferred[-1].at:%H:%M:%S} "
        f"({len(deferred)} polls, triggerer jobs {owners}, no worker process), released {_iso(released)}"
    )
    return deferred


def _check_decision(sc: Scenario, decision: dict[str, Any], dag_id: str, run_id: str) -> datetime:
    """The plan chose the dip in zone DIP, and the trigger released in it; returns the release time."""
    why = f"\ndecision: {decision}\n{sc.explain(dag_id, run_id)}"
    assert decision.get("status") == "released", why
    plan = decision["plan"]
    assert plan["zone"] == ZONE, why
    start = _utc(plan["chunks"][0]["start"])
    # Released by the re-plan made as the window opened: it starts "now", i.e. at the dip's start (to the second).
    assert sc.dip.start <= start < sc.dip.start + timedelta(seconds=10), f"planned start {start} is not the dip{why}"
    released = _utc(decision["released_at"])
    latest = _utc(plan["latest_start"])
    assert sc.dip.start <= released < sc.dip.end, f"released at {released}, outside the dip{why}"
    assert released < latest, why
    assert decision["replans"] >= 1 and decision["problems"] == [], why
    # The saving is against starting when the wait began, not against the release (which would be 0):
    # checked against the trace itself, the mean over the 5 minutes from when the wait began.
    began = _utc(decision["counterfactual"]["planned_at"])
    assert began <= _utc(decision["waiting_since"]) + timedelta(seconds=1) and began < sc.dip.start, why
    at_once = _trace_mean(sc, began, JOB_MINUTES * 60)
    counterfactual = decision["counterfactual"]["signals"]["gCO2eq/kWh"]
    expected = plan["expected_signals"]["gCO2eq/kWh"]
    assert counterfactual == pytest.approx(at_once, rel=0.03) and expected == pytest.approx(DIP_VALUE, rel=0.05), why
    saving = decision["expected_saving"]["gCO2eq/kWh"]
    assert saving == pytest.approx((at_once - DIP_VALUE) / at_once, rel=0.05) and saving > 0.1, why
    assert "runs at once" not in decision["reason"] and "released after waiting" in decision["reason"], why
    return released


def _trace_mean(sc: Scenario, start: datetime, seconds: float) -> float:
    """The DIP trace's mean over ``[start, start + seconds)``: flat, with the dip."""
    end = start + timedelta(seconds=seconds)
    overlap = max(0.0, (min(end, sc.dip.end) - max(start, sc.dip.start)).total_seconds())
    return (DIP_VALUE * overlap + FLAT * (seconds - overlap)) / seconds


def _check_fresh_decisions(log: str, why: str) -> None:
    """Every decision the trigger logged names its forecast's issue time and age, and the age is within one
    refresh period (plus the fetch): no re-plan ran on data from an earlier period."""
    decisions = [line for line in log.splitlines() if re.search(r"decision \d+ \(", line)]
    assert decisions, f"the trigger logged no decision{why}"
    for line in decisions:
        found = re.search(r"issued (\S+), fetched (\d+) (s|min) ago", line)
        assert found, f"a decision line without its forecast's issue time and age: {line}{why}"
        age_s = int(found.group(2)) * (60 if found.group(3) == "min" else 1)
        assert age_s <= REFRESH.total_seconds() + FETCH_ALLOWANCE.total_seconds(), f"stale data: {line}{why}"


def _check_planned_the_dip(sc: Scenario, dag_id: str, run_id: str, task_id: str) -> None:
    """The trigger's first plan, made minutes before the dip, already chose it (the trigger logs each plan)."""
    log = sc.stack.task_log(dag_id, run_id, task_id)
    # The worker decides first (a window that opens now would not defer at all), then defers saying why.
    deferring = [line for line in log.splitlines() if "deferring until the job's grid window" in line]
    first = f"starts {_iso(sc.dip.start)}"
    assert deferring and first in deferring[0], f"no {first!r} in the deferral line\n{sc.explain(dag_id, run_id)}"
    _check_fresh_decisions(log, f"\n{sc.explain(dag_id, run_id)}")
    _check_no_foreign_errors(log, f"\n{sc.explain(dag_id, run_id)}")


def _check_no_foreign_errors(log: str, why: str) -> None:
    """Another task's failure (the mistyped connection of ``gridaware_deferral_bad_conn``) never shows here."""
    for foreign in ("never retrieved", "gridaware_watttime_dipp", "AirflowNotFoundException"):
        assert foreign not in log, f"{foreign!r} in a healthy task's log{why}"


def _check_ran_in_window(sc: Scenario, ran_at: datetime, latest_start: datetime, what: str, why: str) -> None:
    assert sc.dip.start <= ran_at < sc.dip.end, f"{what} ran at {_iso(ran_at)}, outside the dip{why}"
    assert ran_at < latest_start, f"{what} ran at {_iso(ran_at)}, after the latest start {_iso(latest_start)}{why}"
    print(
        f"  {what} ran at {_iso(ran_at)} (dip {_iso(sc.dip.start)} - {_iso(sc.dip.end)}, latest start {_iso(latest_start)})"
    )


# -- the tests -------------------------------------------------------------------------------------------
def test_a_mistyped_connection_fails_at_once_naming_it(
    airflow_stack: AirflowStack, deferral_scenario: Scenario
) -> None:
    """Triggered while the scenario's tasks wait (their logs are checked for its traces when they end)."""
    run_id = airflow_stack.trigger_dag("gridaware_deferral_bad_conn")
    assert airflow_stack.wait_for_run("gridaware_deferral_bad_conn", run_id, timeout=120) == "failed"
    log = airflow_stack.task_log("gridaware_deferral_bad_conn", run_id, "work")
    assert "SourceConfigError" in log and "connection 'gridaware_watttime_dipp' does not exist" in log, log[-2000:]
    assert "Pausing task as DEFERRED" not in log  # failed on the worker's first decision, never waited


def test_example_dags_parse_and_defer(airflow_stack: AirflowStack, deferral_scenario: Scenario) -> None:
    """The two examples parse cleanly and, triggered, wait in the triggerer (realistic hours: not run to the end)."""
    stack = airflow_stack
    waiting = {"example_gridaware_task": "retrain_model", "example_grid_window_sensor": "wait_for_green_window"}
    runs = {dag_id: stack.trigger_dag(dag_id) for dag_id in waiting}
    try:

        def check() -> dict[str, str] | None:
            states = {}
            for dag_id, run_id in runs.items():
                ti = next(t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == waiting[dag_id])
                if ti["state"] == "deferred":
                    assert (ti.get("trigger") or {}).get("classpath") == TRIGGER_CLASS, ti
                elif ti["state"] == "success":
                    # The planner chose "now" (the session simulator replays real days: it depends on the hour).
                    # Then it decided on the worker and did not defer, or went through the trigger.
                    value = stack.xcom(dag_id, run_id, waiting[dag_id])
                    log = stack.task_log(dag_id, run_id, waiting[dag_id])
                    decided = "released at once (not deferring)" in log or value.get("replans", 0) >= 1
                    assert decided, f"{dag_id} ran without a decision: {value}\n{log[-2000:]}"
                else:
                    return None
                states[dag_id] = ti["state"]
            return states

        states = poll(check, timeout=120, interval=1, what="the example DAGs to defer", on_timeout=stack.diagnostics)
        errors = [e for e in stack.import_errors() if "example_grid" in str(e.get("filename"))]
        assert not errors, errors
        assert set(states) == set(runs)
    finally:
        for dag_id, run_id in runs.items():  # hours of waiting: end them so they do not linger in the triggerer
            with contextlib.suppress(StackError):
                stack.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})


@pytest.mark.awaits_window
@pytest.mark.parametrize("phase", ["steady", "restart"])
def test_gridaware_task_waits_in_the_triggerer_and_runs_in_the_dip(deferral_scenario: Scenario, phase: str) -> None:
    sc, dag_id = deferral_scenario, TASK_DAG
    run_id = sc.runs["task", phase]
    _wait_for_success(sc, dag_id, run_id)
    result = sc.stack.xcom(dag_id, run_id, "work")
    why = f"\nreturned: {result}\n{sc.explain(dag_id, run_id)}"
    # The callable got the decision as grid_decision, and it is the trigger's decision for the dip.
    decision = result["decision"]
    assert result["zone"] == ZONE and result["start"] == decision["plan"]["chunks"][0]["start"], why
    released = _check_decision(sc, decision, dag_id, run_id)
    _check_waited_in_triggerer(sc, dag_id, run_id, "work", released)
    _check_planned_the_dip(sc, dag_id, run_id, "work")
    _check_ran_in_window(sc, _utc(result["ran_at"]), _utc(decision["plan"]["latest_start"]), "the callable", why)
    ti = _grid_ti(sc.stack, dag_id, run_id)
    assert "grid window open" in sc.stack.task_log(dag_id, run_id, "work"), why
    assert ti["try_number"] == 1, why
    # Its one try is in the carbon ledger, written by the decorator around the callable.
    (record,) = run_records(dag_id, run_id)
    why += f"\nledger: {record}"
    assert record.key == TryKey(dag_id, run_id, "work", -1, 1), why
    assert (record.operator, record.state, record.actual.zone) == ("decorator", "success", ZONE), why
    assert record.planned_start == _utc(decision["plan"]["chunks"][0]["start"]), why
    assert record.actual.start <= _utc(result["ran_at"]) <= record.actual.end, why
    assert record.waited_s == decision["waited_seconds"] and record.reason == decision["reason"], why
    if phase == "restart":
        _check_moved_triggerer(sc, dag_id, run_id, "work")


@pytest.mark.awaits_window
@pytest.mark.parametrize("phase", ["steady", "restart"])
def test_deferrable_sensor_waits_in_the_triggerer_and_releases_in_the_dip(
    deferral_scenario: Scenario, phase: str
) -> None:
    sc, dag_id = deferral_scenario, SENSOR_DAG
    run_id = sc.runs["sensor", phase]
    _wait_for_success(sc, dag_id, run_id)
    decision = sc.stack.xcom(dag_id, run_id, "wait_for_window")
    released = _check_decision(sc, decision, dag_id, run_id)
    _check_waited_in_triggerer(sc, dag_id, run_id, "wait_for_window", released)
    _check_planned_the_dip(sc, dag_id, run_id, "wait_for_window")
    work = sc.stack.xcom(dag_id, run_id, "work")
    why = f"\nwork returned {work}\n{sc.explain(dag_id, run_id)}"
    assert work["zone"] == ZONE, why
    _check_ran_in_window(sc, _utc(work["ran_at"]), _utc(decision["plan"]["latest_start"]), "the next task", why)
    # The sensor resumed on a worker (execute_complete) after the release.
    sensor = _grid_ti(sc.stack, dag_id, run_id)
    assert released <= sc.stack.from_wall(_utc(sensor["end_date"])), why
    assert "grid window open" in sc.stack.task_log(dag_id, run_id, "wait_for_window"), why
    _check_sensor_record(dag_id, run_id, decision, why)
    if phase == "restart":
        _check_moved_triggerer(sc, dag_id, run_id, "wait_for_window")


@pytest.mark.awaits_window
@pytest.mark.parametrize("phase", ["steady", "restart"])
def test_sensor_ended_from_the_triggerer_holds_the_decision(deferral_scenario: Scenario, phase: str) -> None:
    sc, dag_id = deferral_scenario, FROM_TRIGGER_DAG
    run_id = sc.runs["sensor_from_trigger", phase]
    _wait_for_success(sc, dag_id, run_id)
    decision = sc.stack.xcom(dag_id, run_id, "wait_for_window")
    released = _check_decision(sc, decision, dag_id, run_id)
    seen = sc.watcher.seen(dag_id, run_id, "wait_for_window")
    _check_waited_in_triggerer(sc, dag_id, run_id, "wait_for_window", released)
    _check_planned_the_dip(sc, dag_id, run_id, "wait_for_window")
    why = f"\nstates seen: {describe_states(seen)}\n{sc.explain(dag_id, run_id)}"
    # Ended by the triggerer: after the deferral it went straight to success, never back to a worker.
    first = next(i for i, s in enumerate(seen) if s.state == "deferred")
    after = {s.state for s in seen[first:]}
    assert after <= {"deferred", "success"}, why
    assert "grid window open" not in sc.stack.task_log(dag_id, run_id, "wait_for_window"), why
    sensor = _grid_ti(sc.stack, dag_id, run_id)
    assert sc.dip.start <= sc.stack.from_wall(_utc(sensor["end_date"])) < sc.dip.end, why
    # The next task pulled the decision (as JSON text on Airflow 3.3: see the DAG) and ran in the window.
    work = sc.stack.xcom(dag_id, run_id, "work")
    why += f"\nwork returned {work}"
    assert work["zone"] == ZONE and work["decision_arrived_as"] in ("dict", "str"), why
    print(f"  the next task pulled the decision as {work['decision_arrived_as']}")
    _check_ran_in_window(sc, _utc(work["ran_at"]), _utc(decision["plan"]["latest_start"]), "the next task", why)
    # No worker ran after the release: the triggerer wrote the ledger record (TaskSuccessEvent path).
    _check_sensor_record(dag_id, run_id, decision, why)
    if phase == "restart":
        _check_moved_triggerer(sc, dag_id, run_id, "wait_for_window")


def _check_sensor_record(dag_id: str, run_id: str, decision: dict[str, Any], why: str) -> None:
    """The sensor's one try is in the ledger: the guarded work's planned run from the release."""
    (record,) = run_records(dag_id, run_id)  # the next task is a plain task: no record of its own
    why += f"\nledger: {record}"
    assert record.key == TryKey(dag_id, run_id, "wait_for_window", -1, 1), why
    assert (record.operator, record.state, record.actual.zone) == ("sensor", "success", ZONE), why
    assert record.actual.start == _utc(decision["released_at"]), why
    assert record.actual.end - record.actual.start == JOB_DURATION and record.basis.value in ("forecast", "none"), why


def _check_moved_triggerer(sc: Scenario, dag_id: str, run_id: str, task_id: str) -> None:
    """Held by the old triggerer, then by the new one, deferred all along (checked by the caller)."""
    seen = sc.watcher.seen(dag_id, run_id, task_id)
    owners = [s.triggerer_id for s in seen if s.state == "deferred" and s.triggerer_id is not None]
    why = f"\nstates seen: {describe_states(seen)}"
    assert sc.old_triggerer in owners and sc.new_triggerer in owners, why
    assert owners.index(sc.new_triggerer) > owners.index(sc.old_triggerer), why
    assert sc.restart is not None
    restarted = sc.stack.from_wall(sc.restart.started_at)  # the watcher's times are on the stack's clock
    during = [s for s in seen if restarted - timedelta(seconds=sc.restart.stop_seconds) <= s.at]
    during = [s for s in during if s.at <= restarted + timedelta(seconds=sc.restart.start_seconds)]
    assert during and all(s.state == "deferred" for s in during), f"not deferred during the restart{why}"


@pytest.mark.awaits_window
def test_no_signal_still_releases_by_the_latest_start(deferral_scenario: Scenario) -> None:
    """A flexible wait whose source is down is released at its latest start, saying why."""
    sc, dag_id, run_id = deferral_scenario, FALLBACK_DAG, deferral_scenario.fallback_run
    state = sc.stack.wait_for_run(dag_id, run_id, timeout=240)
    assert state == "success", sc.explain(dag_id, run_id)
    decision = sc.stack.xcom(dag_id, run_id, "wait_for_window")
    why = f"\ndecision: {decision}\n{sc.explain(dag_id, run_id)}"
    plan = decision["plan"]
    assert plan["status"] == "no_signal", why
    assert decision["problems"] and all(DEAD_CONN in p for p in decision["problems"]), why
    run_start = sc.stack.from_wall(_utc(sc.stack.dag_run(dag_id, run_id)["start_date"]))
    latest = run_start + timedelta(minutes=3) - timedelta(minutes=1) * 1.25  # deadline - duration * (1 + margin)
    released = _utc(decision["released_at"])
    assert latest <= released < latest + timedelta(seconds=30), f"released {released}, latest start {latest}{why}"
    # The reason names the job's latest start; the plan's is the later of it and the release (a plan never starts
    # after its own latest start), so a release a few seconds late (a busy triggerer loop) moves only the plan's.
    named = re.search(r"released at the latest start (\S+Z)", decision["reason"])
    assert named and abs(_utc(named.group(1)) - latest) <= timedelta(seconds=1), why
    assert abs(_utc(plan["latest_start"]) - max(latest, released)) <= timedelta(seconds=1), why
    _check_waited_in_triggerer(sc, dag_id, run_id, "wait_for_window", released, opens=latest)
