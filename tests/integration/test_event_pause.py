"""A called grid event on a real Airflow 3.3: a waiting task does not start inside it, a running one pauses.

``tests/integration/dags/gridaware_event_pause.py`` runs two grid-aware tasks on zone ``EVT`` (a flat replay
trace, so only the event moves anything): ``wait_for_window`` waits in the triggerer for its earliest start
(3 minutes after the run's start), ``interruptible_work`` runs at once, stepping and asking its checkpoint.
While both are in flight the test stores a SIMPLE level-2 event for ``EVT`` in the provider's store (as the
relay or a VEN would), covering the waiting task's earliest start, then restarts the triggerer in the middle
of the event. The record must show:

* the running task paused within seconds of the event (its state saved, the task instance ``deferred``, no
  worker process), and resumed from its checkpoint after the event: every step ran exactly once;
* the waiting task did not start inside the event: it ran at the first planning slot after its end (candidate
  starts lie on the planner's step, so an event ending mid-slot holds the work to the next boundary);
* both task instances succeeded in their first try (no retry used), the triggerer restart notwithstanding;
* the ledger holds both tries (reconciled with the REST API's), the paused one's energy over its running pieces.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook
from airflow_provider_gridaware.ledger.reconcile import reconcile
from airflow_provider_gridaware.planning.planner import PlannerSettings
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.store.events import EventStore
from airflow_provider_gridaware.store.ledger import LedgerStore
from tests.integration.airflow_stack import AirflowStack, poll
from tests.support.grid_events import make_event, simple_signal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

UTC = timezone.utc
DAG_ID = "gridaware_event_pause"
CONN_ID, ZONE = "gridaware_replay_evt", "EVT"  # kept in step with the DAG file
STEPS = 30
EARLIEST_START = timedelta(minutes=3)
#: the event lasts at least this long from when it is stored, and ends at least this long after the
#: waiting task's earliest start (so the planner must move it past the end).
EVENT_MIN = timedelta(seconds=120)
AFTER_EARLIEST = timedelta(seconds=45)


def _flat_trace(path: Path) -> Path:
    """Two days of 1-minute points at 200 g/kWh for zone EVT (the replay connection loops it onto now)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = ["time,zone,value"] + [
        f"{(start + timedelta(minutes=i)).isoformat().replace('+00:00', 'Z')},{ZONE},200" for i in range(2 * 24 * 60)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def _called_event(start: datetime, end: datetime) -> GridEvent:
    """A SIMPLE level-2 event for zone EVT over ``[start, end)``, as the relay would store it."""
    return make_event(
        source="webhook:event-pause-it",
        protocol="webhook",
        event_id="evt-peak-1",
        status=EventStatus.ACTIVE,
        signals=(simple_signal(start=start, levels=(2,), step=end - start),),
        targets=(EventTarget(kind="zone", value=ZONE),),
        received_at=start,
    )


def _first_slot_from(moment: datetime) -> datetime:
    """The first candidate start of the planner at or after ``moment`` (starts lie on its step)."""
    step = PlannerSettings().step.total_seconds()
    return datetime.fromtimestamp(-(-moment.timestamp() // step) * step, tz=UTC)


def _states(stack: AirflowStack, run_id: str) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in stack.task_instances(DAG_ID, run_id)}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_called_event_pauses_running_work_and_holds_waiting_work_across_a_triggerer_restart(
    airflow_stack: AirflowStack, integration_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = integration_workdir / "event_pause"
    workdir.mkdir(exist_ok=True)
    airflow_stack.add_connection(
        CONN_ID,
        "gridaware_replay",
        host=str(_flat_trace(workdir / "evt_flat.csv")),
        extra={"forecast_error": 0},
    )
    progress = workdir / "progress.json"
    run_id = airflow_stack.trigger_dag(DAG_ID, conf={"progress": str(progress)})
    run = airflow_stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
    run_start = _when(run.get("start_date") or run["run_after"])

    def both_in_flight() -> bool | None:
        states = _states(airflow_stack, run_id)
        for ti in states.values():
            assert ti["state"] not in ("failed", "upstream_failed"), ti
        waiting, working = states["wait_for_window"]["state"], states["interruptible_work"]["state"]
        started = progress.exists() and json.loads(progress.read_text())["done"] >= 3
        return True if waiting == "deferred" and working == "running" and started else None

    poll(both_in_flight, timeout=150, interval=0.5, what="the waiting task deferred and the interruptible one running")
    stored_at = datetime.now(UTC)
    earliest = run_start + EARLIEST_START
    assert stored_at < earliest - timedelta(seconds=15), "the stack was too slow to store the event before the window"
    event_end = max(stored_at + EVENT_MIN, earliest + AFTER_EARLIEST)
    with EventStore(airflow_stack.env["GRIDAWARE_STORE_URL"]) as store:
        store.record(_called_event(stored_at - timedelta(seconds=1), event_end))

    def paused() -> float | None:
        ti = _states(airflow_stack, run_id)["interruptible_work"]
        assert ti["state"] != "success", "the interruptible task finished inside the event"
        return time.monotonic() if ti["state"] == "deferred" else None

    began = time.monotonic()
    poll(paused, timeout=60, interval=0.25, what="the interruptible task to pause (deferred)")
    print(f"\nevent stored -> interruptible task deferred in {time.monotonic() - began:.1f} s")
    done_at_pause = json.loads(progress.read_text())["done"]

    restart = airflow_stack.restart_component("triggerer")
    print(f"triggerer restart: {restart}")
    assert datetime.now(UTC) < event_end, "the triggerer restart outlasted the event: not a restart in the middle"
    states = _states(airflow_stack, run_id)
    assert states["wait_for_window"]["state"] == "deferred"
    assert states["interruptible_work"]["state"] == "deferred"
    assert json.loads(progress.read_text())["done"] == done_at_pause  # nothing ran while paused

    released_at = _first_slot_from(event_end)
    wait = max(60.0, (released_at - datetime.now(UTC)).total_seconds() + 240)
    assert airflow_stack.wait_for_run(DAG_ID, run_id, timeout=wait) == "success"
    states = _states(airflow_stack, run_id)
    for task_id, ti in states.items():
        assert ti["state"] == "success", ti
        assert ti["try_number"] == 1, f"{task_id} used a retry: {ti}"

    work = airflow_stack.xcom(DAG_ID, run_id, "interruptible_work")
    assert work["done"] == list(range(STEPS)), "a step ran twice or not at all"
    assert work["pauses_seen"] == 1 and len(work["pauses"]) == 1
    pause = work["pauses"][0]
    assert stored_at - timedelta(seconds=1) <= _when(pause["at"]) < event_end
    assert pause["after_step"] == done_at_pause
    assert [_when(t) >= event_end for t in work["resumed_at"]] == [True]

    waited = airflow_stack.xcom(DAG_ID, run_id, "wait_for_window")
    assert _when(waited["ran_at"]) >= event_end, f"the waiting task started inside the event: {waited}"
    assert _when(waited["ran_at"]) >= released_at, f"the waiting task started before its planned slot: {waited}"
    log = airflow_stack.task_log(DAG_ID, run_id, "interruptible_work")
    assert "pausing for a grid event" in log and "resuming from the checkpoint" in log

    # The ledger: both tries recorded (reconciled against the REST API's tries), the paused one's estimated
    # energy over the pieces it ran in (1 kW x ~15 s of steps), not over the minutes it was paused.
    monkeypatch.setenv(
        "AIRFLOW_CONN_GRIDAWARE_AIRFLOW_API", f"http://admin:{airflow_stack.password}@127.0.0.1:{airflow_stack.port}"
    )
    api = AirflowApiHook()
    try:
        tries = api.ended_tries(run_start - timedelta(minutes=1), datetime.now(UTC), dag_ids=[DAG_ID])
    finally:
        api.close()
    assert sorted(t.key.task_id for t in tries) == ["interruptible_work", "wait_for_window"], tries
    with LedgerStore(airflow_stack.env["GRIDAWARE_STORE_URL"]) as ledger:
        assert reconcile(tries, ledger.keys(t.key for t in tries)).complete
        paused = ledger.get(next(t.key for t in tries if t.key.task_id == "interruptible_work"))
    assert paused is not None and any("ran in 2 pieces" in note for note in paused.notes), paused
    assert paused.actual.energy_kwh is not None and paused.actual.energy_kwh < 1.0 * 60 / 3600, paused.actual
    print(
        f"interruptible: paused after step {done_at_pause}, resumed {work['resumed_at'][0]}; waiting ran {waited['ran_at']}"
    )
