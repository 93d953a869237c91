"""The grid-event story end to end, on a real Airflow 3.3 of its own running on accelerated time.

Every component of this module's stack (and so every task and trigger) reads the provider clock
``GRIDAWARE_CLOCK=scaled:...x60``: simulated time runs 60 times faster than the wall clock, as in ``make
demo``. Events' intervals, earliest starts, the planner's 5-minute slots and the response's end trigger are
all read against that clock, so a 40-minute event takes 40 s and the planner's next slot comes at most 5 s later.

In flight when an event arrives: six Kubernetes Jobs (critical, flexible and batch, in a DE and a FR
emulated cluster: local processes the emulator starts, SIGTERMs on suspend = checkpoint, restarts on
resume), a running ``gridaware:batch`` DAG, a ``@task.gridaware`` task waiting for its earliest start and an
interruptible one running. The event (zones DE, FR and SCN, the tasks' zone) is stored as the relay stores
one; the grid-event watcher responds in the triggerer (``respond=``) and the asset-scheduled DAG's
``GridEventResponseOperator`` passes too. Checked:

* the flexible and batch Jobs suspended (their workloads checkpointed), the batch DAG paused (its next task
  does not start), the interruptible task checkpointed and deferred, the waiting task still waiting;
  critical Jobs untouched;
* at the event's end everything resumes and finishes: the waiting task at the planner's first slot after
  the end, the interruptible one from its checkpoint (every step once); every task instance succeeds in its
  first try; the response records say each piece paused once and resumed once, with how long it waited;
  the ledger holds both tries (reconciled with the REST API's), the paused one's energy over its pieces.

Then the same again with the grid misbehaving: an event announced (NEAR) then ACTIVE, a duplicate, a second
overlapping event, the first modified to have ended, its old modification arriving late, an event cancelled
before it starts, and the triggerer restarted while the second event's completion is stored: the same end
state, nothing paused twice, nothing left paused.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook
from airflow_provider_gridaware.ledger.reconcile import reconcile
from airflow_provider_gridaware.planning.planner import PlannerSettings
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from airflow_provider_gridaware.store.ledger import LedgerStore
from airflow_provider_gridaware.store.responses import ResponseRecord, ResponseStore
from airflow_provider_gridaware.times import CLOCK_ENV, ScaledClock, parse_time
from tests.integration.airflow_stack import TEST_DAGS, AirflowStack, StackError, marked_pids, poll
from tests.integration.grid_response_support import (
    clusters,
    dag_paused,
    job_states,
    start_jobs,
    task_state,
    wait_logs,
    wait_paused,
    wait_states,
)
from tests.support.grid_events import make_event, simple_signal
from tests.support.postgres import throwaway_database, unreachable_reason
from tests.support.session_report import teardown_notes, timings

pytestmark = [pytest.mark.integration, pytest.mark.own_stack, pytest.mark.timeout(1200)]

UTC = timezone.utc
SCENARIO_DAGS = Path(__file__).resolve().parent / "scenario_dags"
# Kept in step with scenario_dags/gridaware_event_scenario.py (not imported: a DAG file).
RESPONSE_DAG, BATCH_DAG, TASKS_DAG = (
    "gridaware_scenario_response",
    "gridaware_scenario_batch",
    "gridaware_scenario_tasks",
)
SOURCE = "webhook:scenario"
CLUSTERS = {"DE": "k8s_scenario_de", "FR": "k8s_scenario_fr"}
API_CONN = "gridaware_airflow_api_scenario"
REPLAY_CONN, TASK_ZONE = "gridaware_replay_scn", "SCN"
STEPS = 40
ZONES = tuple(EventTarget(kind="zone", value=z) for z in ("DE", "FR", TASK_ZONE))
#: simulated seconds per wall second. The checks inside the first event (a gate, a task finishing) take
#: 5-30 s of wall time here; the event lasts at least EVENT_MIN (40 s of wall time at this speed), longer
#: than the interruptible task's resume guard (30 s of wall time: it could not resume sooner anyway).
SPEED = 60.0
EARLIEST_START = timedelta(minutes=40)  # the waiting task's, in the DAG file
EVENT_MIN = timedelta(minutes=40)
AFTER_EARLIEST = timedelta(minutes=10)


@dataclass(frozen=True)
class Scenario:
    """The module's stack, the clock all of it runs on, and the store its tasks and triggers share."""

    stack: AirflowStack
    clock: ScaledClock
    store_url: str
    workdir: Path

    def wall_timeout(self, until: datetime, slack: float = 180.0) -> float:
        """Wall seconds until the clock reaches ``until``, plus ``slack`` for Airflow to act on it."""
        return self.clock.wall_seconds((until - self.clock.now()).total_seconds()) + slack


def _flat_trace(path: Path) -> Path:
    """Two days of 1-minute points at 200 g/kWh for zone SCN: the replay connection loops it onto now, and
    a flat signal leaves the event as the only thing that moves work."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = ["time,zone,value"] + [
        f"{(start + timedelta(minutes=i)).isoformat().replace('+00:00', 'Z')},{TASK_ZONE},200"
        for i in range(2 * 24 * 60)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def scenario(integration_workdir: Path, pytestconfig: pytest.Config) -> Iterator[Scenario]:
    """A real Airflow 3.3 of this module's own, every component on one accelerated clock (as ``make demo``
    starts its Airflow), with only this scenario's DAGs and a store of its own."""
    workdir = integration_workdir / "scenario"
    workdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    clock = ScaledClock(now, now, SPEED)
    store_url = f"sqlite:///{workdir / 'gridaware.db'}"
    with contextlib.ExitStack() as resources:
        # The store is this stack's alone: a responder answers every current event of its store, and the
        # session's shared stack must not act on these events (nor this one on its).
        extra_env = {CLOCK_ENV: clock.spec(), "GRIDAWARE_STORE_URL": store_url}
        if unreachable_reason() is None:  # PostgreSQL metadata like the shared stack: concurrent writers
            extra_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = resources.enter_context(
                throwaway_database("gridaware_scenario")
            )
        replay = {"conn_type": "gridaware_replay", "host": str(_flat_trace(workdir / "scn_flat.csv"))}
        stack = AirflowStack(
            workdir / "airflow_home",
            connections={REPLAY_CONN: {**replay, "extra": {"forecast_error": 0}}},
            extra_env=extra_env,
            dag_sources=(SCENARIO_DAGS,),
        )
        stack.dags_folder.mkdir(parents=True)
        stack.link_dag(TEST_DAGS / "_grid_event_dags.py")  # what the DAG file imports
        stack.start(timeout=180)
        timings(pytestconfig)["scenario stack start (accelerated clock)"] = stack.timings.total
        try:
            for dag_id in (RESPONSE_DAG, BATCH_DAG, TASKS_DAG):
                stack.wait_for_dag(dag_id, timeout=120)
            yield Scenario(stack, clock, store_url, workdir)
        finally:
            teardown_notes(pytestconfig).extend(f"scenario stack: {note}" for note in stack.stop())
            if marked_pids(stack.marker):
                raise StackError(f"Airflow processes survived teardown: {marked_pids(stack.marker)}")


# -- the story's pieces ----------------------------------------------------------------------------------
def event(
    event_id: str, *, mod: int = 0, status: EventStatus, start: datetime, end: datetime, level: int = 2
) -> GridEvent:
    """A SIMPLE event over ``[start, end)`` (the provider clock's time) for DE, FR and SCN; received now,
    on the wall clock, as the relay stamps it."""
    return make_event(
        source=SOURCE,
        protocol="webhook",
        event_id=event_id,
        modification_number=mod,
        status=status,
        targets=ZONES,
        signals=(simple_signal(start=start, levels=(level,), step=end - start),),
        received_at=datetime.now(UTC),
    )


@dataclass
class InFlight:
    """What runs when the event arrives: the Jobs (``{name: class}``), the batch DAG's run and its gate
    and marker files, and the grid-aware tasks' run with its progress file and start (provider clock)."""

    names: dict[str, str]
    batch_run: str
    gate: Path
    marker: Path
    tasks_run: str
    progress: Path
    tasks_started: datetime

    @property
    def paused_jobs(self) -> dict[str, str]:
        return {n: ("running" if c == "critical" else "suspended") for n, c in self.names.items()}

    @property
    def held_targets(self) -> list[str]:
        return sorted([BATCH_DAG, *(n for n, c in self.names.items() if c != "critical")])


def set_in_flight(sc: Scenario, urls: dict[str, str], workdir: Path, prefix: str) -> InFlight:
    stack = sc.stack
    names = start_jobs(urls, workdir, prefix=prefix)
    gate, marker, progress = workdir / "gate", workdir / "after-gate", workdir / "progress.json"
    batch_run = stack.trigger_dag(BATCH_DAG, conf={"gate": str(gate), "marker": str(marker)})
    poll(
        lambda: True if task_state(stack, BATCH_DAG, batch_run, "gated") == "running" else None,
        timeout=120,
        what="the batch DAG's first task running",
    )
    tasks_run = stack.trigger_dag(TASKS_DAG, conf={"progress": str(progress)})

    def both_in_flight() -> bool | None:
        states = tis(stack, TASKS_DAG, tasks_run)
        for ti in states.values():
            assert ti["state"] not in ("failed", "upstream_failed", "success"), ti
        waiting, working = states["wait_for_window"]["state"], states["interruptible_work"]["state"]
        started = progress.exists() and json.loads(progress.read_text())["done"] >= 3
        return True if waiting == "deferred" and working == "running" and started else None

    poll(both_in_flight, timeout=150, interval=0.3, what="the waiting task deferred and the interruptible one running")
    run = stack.dag_run(TASKS_DAG, tasks_run)
    started = sc.clock.from_wall(when(run.get("start_date") or run["run_after"]))
    return InFlight(names, batch_run, gate, marker, tasks_run, progress, started)


@dataclass
class Story:
    """One story's world: the emulators' URLs (``{zone: url}``), the shared store's events and response
    records, what is in flight, and the story's own folder (Job logs, gate, marker, progress)."""

    urls: dict[str, str]
    events: EventStore
    responses: ResponseStore
    work: InFlight
    workdir: Path


@contextlib.contextmanager
def story(sc: Scenario, name: str) -> Iterator[Story]:
    """Two emulated clusters with their six Jobs running, the batch DAG's run and the grid-aware tasks' run
    in flight; the emulators are stopped after (Jobs named ``<name>-<class>-<zone>``)."""
    workdir = sc.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        clusters(sc.stack, workdir, CLUSTERS, API_CONN) as urls,
        EventStore(sc.store_url) as events,
        ResponseStore(sc.store_url) as responses,
    ):
        yield Story(urls, events, responses, set_in_flight(sc, urls, workdir, prefix=f"{name}-"), workdir)


def tis(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in stack.task_instances(dag_id, run_id)}


def when(value: str) -> datetime:
    return parse_time(value, what="time")


def done_steps(work: InFlight) -> int:
    return int(json.loads(work.progress.read_text())["done"])


def wait_interruptible_paused(stack: AirflowStack, work: InFlight) -> None:
    def paused() -> bool | None:
        ti = tis(stack, TASKS_DAG, work.tasks_run)["interruptible_work"]
        assert ti["state"] != "success", "the interruptible task finished inside the event"
        return True if ti["state"] == "deferred" else None

    poll(paused, timeout=60, interval=0.25, what="the interruptible task to pause (deferred)")


def assert_held(stack: AirflowStack, urls: dict[str, str], work: InFlight) -> None:
    """Inside the event: Jobs and DAG paused, both grid-aware tasks deferred, no step run since the pause."""
    assert job_states(urls) == work.paused_jobs
    assert dag_paused(stack, BATCH_DAG)
    states = tis(stack, TASKS_DAG, work.tasks_run)
    assert {t: states[t]["state"] for t in ("wait_for_window", "interruptible_work")} == dict.fromkeys(
        ("wait_for_window", "interruptible_work"), "deferred"
    )


def open_the_gate(stack: AirflowStack, work: InFlight) -> None:
    """The batch DAG's running task finishes inside the event; its next task must not start (DAG paused)."""
    work.gate.touch()
    poll(
        lambda: True if task_state(stack, BATCH_DAG, work.batch_run, "gated") == "success" else None,
        timeout=120,
        what="the gated task done",
    )
    assert not work.marker.exists(), "the paused batch DAG started its next task"
    assert dag_paused(stack, BATCH_DAG)


def finish_everything(sc: Scenario, urls: dict[str, str], workdir: Path, work: InFlight, timeout: float) -> None:
    """After the end: every Job running again, the DAG unpaused and its run done, the tasks' run done with
    every task instance in its first try; then the Jobs finish."""
    stack = sc.stack
    wait_states(urls, dict.fromkeys(work.names, "running"), "every Job resumed", timeout=timeout)
    wait_paused(stack, BATCH_DAG, False)
    assert stack.wait_for_run(BATCH_DAG, work.batch_run, timeout=180) == "success"
    assert work.marker.exists()
    assert stack.wait_for_run(TASKS_DAG, work.tasks_run, timeout=timeout) == "success"
    for dag_id, run_id in ((BATCH_DAG, work.batch_run), (TASKS_DAG, work.tasks_run)):
        for task_id, ti in tis(stack, dag_id, run_id).items():
            assert ti["state"] == "success", ti
            assert ti["try_number"] == 1, f"{dag_id}.{task_id} used a retry: {ti}"
    # Each flexible and batch Job checkpointed once and started again; critical ones ran on.
    wait_logs(
        workdir,
        {n: ["start"] if c == "critical" else ["start", "checkpoint", "start"] for n, c in work.names.items()},
    )
    (workdir / "finish").touch()
    wait_states(urls, dict.fromkeys(work.names, "complete"), "every Job finished")


def response_runs(stack: AirflowStack) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/api/v2/dags/{RESPONSE_DAG}/dagRuns", params={"limit": 100})["dag_runs"])


def response_runs_done(stack: AirflowStack) -> None:
    """Every grid-event DAG run (the operator's passes) ended, none failed: each waited for the events'
    end, or ended once nothing was held."""

    def ended() -> bool | None:
        runs = response_runs(stack)
        return True if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    poll(
        ended,
        timeout=180,
        interval=0.5,
        what="every grid-event DAG run ended",
        on_timeout=lambda: str([(r["dag_run_id"], r["state"]) for r in response_runs(stack)]),
    )
    assert [r["dag_run_id"] for r in response_runs(stack) if r["state"] == "failed"] == []


def settled_records(
    responses: ResponseStore, keep: Callable[[ResponseRecord], bool], *, released: bool
) -> list[ResponseRecord]:
    """The records ``keep`` selects, once each says how its pause (or its release) went: a pass records its
    steps after its PATCHes, so the work can be suspended or running again a moment before its record says so."""

    def settled() -> list[ResponseRecord] | None:
        mine = [r for r in responses.records() if keep(r)]
        done = all(r.resume_result if released else r.result != "claimed" for r in mine)
        return mine if mine and done else None

    return poll(settled, timeout=60, interval=0.2, what=f"every {'release' if released else 'pause'} recorded")


def short_target(record: ResponseRecord) -> str:
    return record.target.rsplit("/", 1)[-1]


def first_slot_from(moment: datetime) -> datetime:
    """The planner's first candidate start at or after ``moment`` (starts lie on its step)."""
    step = PlannerSettings().step.total_seconds()
    return datetime.fromtimestamp(-(-moment.timestamp() // step) * step, tz=UTC)


# -- the story -------------------------------------------------------------------------------------------
def test_an_event_holds_jobs_dags_and_grid_aware_tasks_and_its_end_brings_all_of_it_back(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc, stack, clock = scenario, scenario.stack, scenario.clock
    with story(sc, "event") as st:
        urls, events, responses, work, workdir = st.urls, st.events, st.responses, st.work, st.workdir
        earliest = work.tasks_started + EARLIEST_START
        stored_at = clock.now()
        assert stored_at < earliest - timedelta(minutes=5), "the stack was too slow to store the event before it"
        end = max(stored_at + EVENT_MIN, earliest + AFTER_EARLIEST)
        began = time.monotonic()
        peak = event("peak-1", status=EventStatus.ACTIVE, start=stored_at - timedelta(seconds=1), end=end)
        assert events.record(peak).outcome.stored

        # -- inside the event
        wait_states(urls, work.paused_jobs, "flexible and batch Jobs suspended")
        wait_paused(stack, BATCH_DAG, True)
        wait_interruptible_paused(stack, work)
        print(f"\nevent stored -> Jobs suspended, DAG paused, task deferred in {time.monotonic() - began:.1f} s")
        done_at_pause = done_steps(work)
        wait_logs(
            workdir, {n: ["start"] if c == "critical" else ["start", "checkpoint"] for n, c in work.names.items()}
        )
        open_the_gate(stack, work)
        assert_held(stack, urls, work)
        assert done_steps(work) == done_at_pause  # nothing ran while paused
        # Both runners passed: the triggerer's watcher (before its asset event) and the DAG run it started,
        # which found every hold applied and waits for the end.
        records = settled_records(responses, lambda r: r.event_id == "peak-1", released=False)
        assert sorted(short_target(r) for r in records) == work.held_targets
        assert {r.result for r in records} == {"paused"}
        assert {r.detail.get("paused_by") for r in records} <= {"triggerer", "task"}
        poll(
            lambda: True if any(r["state"] == "running" for r in response_runs(stack)) else None,
            timeout=120,
            what="the grid-event DAG's run, waiting for the event's end",
        )
        left = (end - clock.now()).total_seconds()
        assert left > 0, "the checks inside the event outlasted it: give the event more simulated time"
        print(f"in-event checks done {clock.wall_seconds(left):.0f} s of wall time before the end")

        # -- the end (no message: its time comes on the provider clock) brings everything back
        finish_everything(sc, urls, workdir, work, timeout=sc.wall_timeout(first_slot_from(end)))
        response_runs_done(stack)
        records = settled_records(responses, lambda r: r.event_id == "peak-1", released=True)
        assert not responses.open_holds()
    assert sorted(short_target(r) for r in records) == work.held_targets
    for record in records:
        assert record.result == "paused" and record.resume_result == "resumed", record
        assert record.waited_seconds is not None and record.waited_seconds > 0, record
        assert record.resume_reason and "event ended" in record.resume_reason, record
        # Both runners are alive throughout: neither may take over the other's claim as a stopped runner's.
        assert "runner that stopped" not in str(record.detail.get("note", "")), record
    # No state marked the end: only the operator's run, deferred until the end on the provider clock, saw it.
    assert {r.detail.get("resumed_by") for r in records} == {"task"}, records
    print(f"paused by: {sorted(str(r.detail.get('paused_by')) for r in records)}")

    interruptible = stack.xcom(TASKS_DAG, work.tasks_run, "interruptible_work")
    assert interruptible["done"] == list(range(STEPS)), "a step ran twice or not at all"
    assert interruptible["pauses_seen"] == 1 and len(interruptible["pauses"]) == 1
    pause = interruptible["pauses"][0]
    assert stored_at - timedelta(seconds=1) <= when(pause["at"]) < end
    assert pause["after_step"] == done_at_pause
    assert [when(t) >= end for t in interruptible["resumed_at"]] == [True]
    waited = stack.xcom(TASKS_DAG, work.tasks_run, "wait_for_window")
    assert when(waited["ran_at"]) >= end, f"the waiting task started inside the event: {waited}"
    assert when(waited["ran_at"]) >= first_slot_from(end), f"the waiting task started before its slot: {waited}"
    log = stack.task_log(TASKS_DAG, work.tasks_run, "interruptible_work")
    assert "pausing for a grid event" in log and "resuming from the checkpoint" in log

    # The ledger: both tries recorded (reconciled against the REST API's tries), the paused one's estimated
    # energy (1 kW) over the pieces it ran in, not over the pause as well.
    monkeypatch.setenv("AIRFLOW_CONN_GRIDAWARE_AIRFLOW_API", f"http://admin:{stack.password}@127.0.0.1:{stack.port}")
    run = stack.dag_run(TASKS_DAG, work.tasks_run)
    api = AirflowApiHook()
    try:
        tries = api.ended_tries(
            when(run["start_date"]) - timedelta(minutes=1),
            datetime.now(UTC) + timedelta(minutes=1),
            dag_ids=[TASKS_DAG],
        )
    finally:
        api.close()
    assert sorted(t.key.task_id for t in tries) == ["interruptible_work", "wait_for_window"], tries
    with LedgerStore(sc.store_url) as ledger:
        assert reconcile(tries, ledger.keys(t.key for t in tries)).complete
        paused = ledger.get(next(t.key for t in tries if t.key.task_id == "interruptible_work"))
    assert paused is not None and any("ran in 2 pieces" in note for note in paused.notes), paused
    paused_for = (when(interruptible["resumed_at"][0]) - when(pause["at"])).total_seconds()
    assert paused.actual.energy_kwh is not None and paused.actual.energy_kwh < 1.0 * paused_for / 3600, paused.actual


def test_duplicated_modified_cancelled_late_events_and_a_triggerer_restart_end_the_same_way(
    scenario: Scenario,
) -> None:
    sc, stack, clock = scenario, scenario.stack, scenario.clock
    with story(sc, "variants") as st:
        urls, events, responses, work, workdir = st.urls, st.events, st.responses, st.work, st.workdir
        now = clock.now()
        storm_1_end, storm_2_end = now + timedelta(hours=2), now + timedelta(hours=12)

        # Announced, then active (two asset events, the runs may overlap), re-sent (a duplicate: stored once).
        events.record(event("storm-1", status=EventStatus.NEAR, start=now, end=storm_1_end))
        events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, end=storm_1_end))
        duplicate = events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, end=storm_1_end))
        assert duplicate.outcome is RecordOutcome.DUPLICATE
        # A second event overlapping the first (it outlasts the test: completed below), and one cancelled
        # before it starts.
        events.record(event("storm-2", status=EventStatus.ACTIVE, start=now, end=storm_2_end, level=1))
        later = now + timedelta(hours=1)
        events.record(event("later-3", status=EventStatus.FAR, start=later, end=later + timedelta(minutes=10)))
        events.record(
            event("later-3", mod=1, status=EventStatus.CANCELLED, start=later, end=later + timedelta(minutes=10))
        )
        wait_states(urls, work.paused_jobs, "flexible and batch Jobs suspended")
        wait_paused(stack, BATCH_DAG, True)
        wait_interruptible_paused(stack, work)
        done_at_pause = done_steps(work)

        # storm-1 modified to have ended a moment ago; then its old modification arrives late (stale).
        ended_at = clock.now()
        events.record(
            event("storm-1", mod=1, status=EventStatus.ACTIVE, start=ended_at - timedelta(minutes=1), end=ended_at)
        )
        stale = events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, end=storm_1_end, level=3))
        assert stale.outcome in (RecordOutcome.STALE, RecordOutcome.DUPLICATE)

        def storm_1_released() -> bool | None:
            held = responses.records(event=(SOURCE, "storm-1"))
            done = sorted(short_target(r) for r in held if r.resume_requested_at)
            return True if done == work.held_targets else None

        poll(storm_1_released, timeout=120, interval=0.3, what="storm-1's holds released")
        # storm-2 still holds everything: nothing resumed, nothing started.
        open_the_gate(stack, work)
        assert_held(stack, urls, work)
        assert done_steps(work) == done_at_pause

        completed_at: list[datetime] = []

        def complete_storm_2() -> None:
            completed_at.append(clock.now())
            completed = event("storm-2", mod=0, status=EventStatus.COMPLETED, start=now, end=storm_2_end, level=1)
            assert events.record(completed).outcome.stored

        restart = stack.restart_component("triggerer", while_down=complete_storm_2)
        print(f"\ntriggerer restart: {restart}")
        finish_everything(sc, urls, workdir, work, timeout=300)
        response_runs_done(stack)
        records = settled_records(responses, lambda r: r.event_id != "peak-1", released=True)
        assert not responses.open_holds()

    physical = [r for r in records if r.result == "paused"]
    # Each flexible and batch Job and the batch DAG paused exactly once (by storm-1 or storm-2, whichever
    # claimed first) ...
    assert sorted(short_target(r) for r in physical) == work.held_targets
    # ... held by both storms, never by the cancelled event, and resumed exactly once.
    assert {r.event_id for r in records} == {"storm-1", "storm-2"}
    assert sum(r.resume_result == "resumed" for r in records) == len(physical)
    for record in physical:
        assert record.waited_seconds is not None and record.waited_seconds > 0, record

    interruptible = stack.xcom(TASKS_DAG, work.tasks_run, "interruptible_work")
    assert interruptible["done"] == list(range(STEPS)), "a step ran twice or not at all"
    assert interruptible["pauses_seen"] == 1 and len(interruptible["pauses"]) == 1
    assert interruptible["pauses"][0]["after_step"] == done_at_pause
    assert [when(t) >= completed_at[0] for t in interruptible["resumed_at"]] == [True]
    waited = stack.xcom(TASKS_DAG, work.tasks_run, "wait_for_window")
    assert when(waited["ran_at"]) >= completed_at[0], f"the waiting task started inside the event: {waited}"
    assert not dag_paused(stack, BATCH_DAG)
