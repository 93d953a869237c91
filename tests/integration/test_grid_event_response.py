"""The grid-event response end to end on a real Airflow 3.3 (triggerer included), two emulated clusters.

Six Kubernetes Jobs run (critical, flexible and batch, in a DE and a FR cluster: each a local process the
emulator's Job runner starts, SIGTERMs on suspend and restarts on resume), and a DAG tagged
``gridaware:batch`` is running. A grid event stored in the provider's store (as the relay stores one) fires
``GridEventTrigger`` in the triggerer; the asset-scheduled DAG's ``GridEventResponseOperator`` suspends the
flexible and batch Jobs in both clusters and pauses the batch DAG through the REST API; critical work runs
on. The batch DAG's next task does not start while it is paused. When the event completes everything it
paused resumes and finishes, and the store says how long each piece waited.

Then the same again with the grid misbehaving: an event announced (NEAR) then ACTIVE (two runs at once),
a second overlapping event, the first event modified to end sooner, a state of the old modification
arriving late, an event cancelled before it starts, and the triggerer restarted while the second event's
completion is stored: the same end state, nothing paused twice, nothing left paused.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from airflow_provider_gridaware.store.responses import ResponseStore
from tests.integration.airflow_stack import AirflowStack, poll
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTC = timezone.utc
RESPONSE_DAG, BATCH_DAG = "gridaware_event_response_it", "gridaware_respond_batch_it"
SOURCE = "webhook:respond-it"
CLUSTERS = {"DE": "k8s_respond_de", "FR": "k8s_respond_fr"}
API_CONN = "gridaware_airflow_api_it"
ZONES = (EventTarget(kind="zone", value="DE"), EventTarget(kind="zone", value="FR"))


def response_failures(stack: AirflowStack) -> list[dict[str, Any]]:
    runs = stack.api("GET", f"/api/v2/dags/{RESPONSE_DAG}/dagRuns", params={"limit": 100})["dag_runs"]
    return [r for r in runs if r["state"] == "failed"]


def event(event_id: str, *, mod: int = 0, status: EventStatus, start: datetime, minutes: float, level: int = 2):
    return make_event(
        source=SOURCE,
        protocol="webhook",
        event_id=event_id,
        modification_number=mod,
        status=status,
        targets=ZONES,
        signals=(simple_signal(start=start, levels=(level,), step=timedelta(minutes=minutes)),),
        received_at=datetime.now(UTC),
    )


def test_an_event_pauses_flexible_and_batch_work_in_both_clusters_and_its_end_brings_it_back(
    airflow_stack: AirflowStack, integration_workdir: Path
) -> None:
    stack = airflow_stack
    workdir = integration_workdir / "grid-response"
    workdir.mkdir(parents=True, exist_ok=True)
    stack.wait_for_dag(RESPONSE_DAG)
    stack.wait_for_dag(BATCH_DAG)
    with clusters(stack, workdir, CLUSTERS, API_CONN) as urls, EventStore(stack.env["GRIDAWARE_STORE_URL"]) as events:
        names = start_jobs(urls, workdir, prefix="")
        gate, marker = workdir / "gate", workdir / "after-gate"
        batch_run = stack.trigger_dag(BATCH_DAG, conf={"gate": str(gate), "marker": str(marker)})
        poll(
            lambda: True if task_state(stack, BATCH_DAG, batch_run, "gated") == "running" else None,
            timeout=120,
            what="the batch DAG's first task running",
        )

        # -- the event: flexible and batch suspended in both clusters, batch DAG paused, critical untouched
        now = datetime.now(UTC)
        assert events.record(event("peak-1", status=EventStatus.ACTIVE, start=now, minutes=30)).outcome.stored
        paused = {n: ("running" if c == "critical" else "suspended") for n, c in names.items()}
        wait_states(urls, paused, "flexible and batch Jobs suspended")
        wait_paused(stack, BATCH_DAG, True)
        print(f"\nevent stored -> Jobs suspended and DAG paused in {(datetime.now(UTC) - now).total_seconds():.1f} s")
        wait_logs(workdir, {n: ["start"] if c == "critical" else ["start", "checkpoint"] for n, c in names.items()})
        gate.touch()
        poll(
            lambda: True if task_state(stack, BATCH_DAG, batch_run, "gated") == "success" else None,
            timeout=120,
            what="the gated task done",
        )

        # -- the end: a completed state fires the asset, the next run resumes exactly what peak-1 held
        assert not marker.exists(), "the paused batch DAG started its next task"
        assert dag_paused(stack, BATCH_DAG)
        events.record(event("peak-1", status=EventStatus.COMPLETED, start=now, minutes=30))
        wait_states(urls, dict.fromkeys(names, "running"), "every Job resumed")
        wait_paused(stack, BATCH_DAG, False)
        assert stack.wait_for_run(BATCH_DAG, batch_run, timeout=180) == "success"
        assert marker.exists()
        (workdir / "finish").touch()
        wait_states(urls, dict.fromkeys(names, "complete"), "every Job finished")

        with ResponseStore(stack.env["GRIDAWARE_STORE_URL"]) as responses:
            records = responses.records(event=(SOURCE, "peak-1"))
            assert not responses.open_holds()
        held = sorted(r.target.rsplit("/", 1)[-1] for r in records)
        assert held == sorted([BATCH_DAG, *(n for n, c in names.items() if c != "critical")])
        for record in records:
            assert record.result == "paused" and record.resume_result == "resumed", record
            assert record.waited_seconds is not None and record.waited_seconds > 0
            assert record.resume_reason and "event ended" in record.resume_reason
        assert not response_failures(stack)


def test_duplicated_modified_cancelled_late_events_and_a_triggerer_restart_leave_nothing_paused_twice(
    airflow_stack: AirflowStack, integration_workdir: Path
) -> None:
    stack = airflow_stack
    workdir = integration_workdir / "grid-response-repeat"
    workdir.mkdir(parents=True, exist_ok=True)
    stack.wait_for_dag(RESPONSE_DAG)
    with clusters(stack, workdir, CLUSTERS, API_CONN) as urls, EventStore(stack.env["GRIDAWARE_STORE_URL"]) as events:
        names = start_jobs(urls, workdir, prefix="again-")
        paused = {n: ("running" if c == "critical" else "suspended") for n, c in names.items()}
        now = datetime.now(UTC)

        # Announced, then active (two runs, may overlap), re-sent (a duplicate: stored once).
        events.record(event("storm-1", status=EventStatus.NEAR, start=now, minutes=30))
        events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, minutes=30))
        assert events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, minutes=30)).outcome is (
            RecordOutcome.DUPLICATE
        )
        # A second event overlapping the first, and one cancelled before it starts.
        events.record(event("storm-2", status=EventStatus.ACTIVE, start=now, minutes=40, level=1))
        later = now + timedelta(minutes=20)
        events.record(event("later-3", status=EventStatus.FAR, start=later, minutes=10))
        events.record(event("later-3", mod=1, status=EventStatus.CANCELLED, start=later, minutes=10))
        wait_states(urls, paused, "flexible and batch Jobs suspended")
        # storm-1 modified to have ended a second ago; then its old modification arrives late (stale).
        ended = event("storm-1", mod=1, status=EventStatus.ACTIVE, start=now - timedelta(minutes=1), minutes=1)
        events.record(ended)
        stale = events.record(event("storm-1", status=EventStatus.ACTIVE, start=now, minutes=30, level=3))
        assert stale.outcome in (RecordOutcome.STALE, RecordOutcome.DUPLICATE)

        with ResponseStore(stack.env["GRIDAWARE_STORE_URL"]) as responses:

            def storm_1_released() -> bool | None:
                done = [
                    r
                    for r in responses.records(event=(SOURCE, "storm-1"))
                    if r.resume_requested_at and r.target.rsplit("/", 1)[-1] in names
                ]
                return True if len(done) == len(names) - 2 else None

            poll(storm_1_released, timeout=120, interval=0.3, what="storm-1's holds released")
            # storm-2 still holds everything: nothing resumed.
            assert job_states(urls) == paused

            restart = stack.restart_component(
                "triggerer",
                while_down=lambda: events.record(
                    event("storm-2", status=EventStatus.COMPLETED, start=now, minutes=40, level=1)
                ),
            )
            print(f"\ntriggerer restart: {restart}")
            wait_states(urls, dict.fromkeys(names, "running"), "every Job resumed after the restart")

            def recorded() -> list[Any] | None:
                # The pass records the releases after its PATCHes: a Job can run before its record says so.
                mine = [r for r in responses.records() if r.target.rsplit("/", 1)[-1] in names]
                return mine if all(r.resume_result for r in mine) else None

            records = poll(recorded, timeout=60, interval=0.2, what="every release recorded")
            assert not [r for r in responses.open_holds() if r.target.rsplit("/", 1)[-1] in names]
        physical = [r for r in records if r.result == "paused"]
        # Each flexible and batch Job paused exactly once (by storm-1 or storm-2, whichever claimed first) ...
        assert sorted(r.target.rsplit("/", 1)[-1] for r in physical) == sorted(
            n for n, c in names.items() if c != "critical"
        )
        # ... held by both storms, never by the cancelled event, and resumed exactly once.
        assert {r.event_id for r in records} == {"storm-1", "storm-2"}
        assert sum(r.resume_result == "resumed" for r in records) == len(physical)
        wait_logs(
            workdir, {n: ["start"] if c == "critical" else ["start", "checkpoint", "start"] for n, c in names.items()}
        )
        (workdir / "finish").touch()
        wait_states(urls, dict.fromkeys(names, "complete"), "every Job finished")
        assert not dag_paused(stack, BATCH_DAG)
        assert not response_failures(stack)


TRIGGERER_DAG, TRIGGERER_SOURCE = "gridaware_event_respond_triggerer_it", "webhook:respond-triggerer-it"


def test_a_watcher_that_responds_in_the_triggerer_pauses_before_its_dag_runs_and_the_run_applies_nothing_twice(
    airflow_stack: AirflowStack, integration_workdir: Path
) -> None:
    stack = airflow_stack
    workdir = integration_workdir / "grid-response-triggerer"
    workdir.mkdir(parents=True, exist_ok=True)
    stack.wait_for_dag(TRIGGERER_DAG)
    stack.wait_for_dag(BATCH_DAG)
    url = stack.env["GRIDAWARE_STORE_URL"]
    with (
        clusters(stack, workdir, CLUSTERS, API_CONN) as urls,
        EventStore(url) as events,
        ResponseStore(url) as responses,
    ):
        names = start_jobs(urls, workdir, prefix="trig-")
        paused = {n: ("running" if c == "critical" else "suspended") for n, c in names.items()}
        now = datetime.now(UTC)
        peak = make_event(
            source=TRIGGERER_SOURCE,
            protocol="webhook",
            event_id="tpeak-1",
            status=EventStatus.ACTIVE,
            targets=ZONES,
            signals=(simple_signal(start=now, levels=(2,), step=timedelta(minutes=30)),),
            received_at=now,
        )
        assert events.record(peak).outcome.stored
        wait_states(urls, paused, "flexible and batch Jobs suspended by the triggerer")
        wait_paused(stack, BATCH_DAG, True)
        print(f"\nevent stored -> Jobs suspended in the triggerer in {(datetime.now(UTC) - now).total_seconds():.1f} s")

        # The DAG run the asset event started passes too: it finds every hold applied and waits for the end.
        run_id = poll(
            lambda: next(
                iter(r["dag_run_id"] for r in stack.api("GET", f"/api/v2/dags/{TRIGGERER_DAG}/dagRuns")["dag_runs"]),
                None,
            ),
            timeout=120,
            what="the grid-event DAG's run",
        )
        poll(
            lambda: True if task_state(stack, TRIGGERER_DAG, run_id, "respond") == "deferred" else None,
            timeout=120,
            what="the run's pass done, deferred until the event's end",
        )
        records = responses.records(event=(TRIGGERER_SOURCE, "tpeak-1"))
        assert sorted(r.target.rsplit("/", 1)[-1] for r in records) == sorted(
            [BATCH_DAG, *(n for n, c in names.items() if c != "critical")]
        )
        assert {(r.result, r.detail.get("paused_by")) for r in records} == {("paused", "triggerer")}

        # The completion: resumed by the triggerer, each once; the waiting run ends with nothing held.
        completed = peak.model_copy(update={"modification_number": 1, "status": EventStatus.COMPLETED})
        assert events.record(completed).outcome.stored
        wait_states(urls, dict.fromkeys(names, "running"), "every Job resumed by the triggerer")
        wait_paused(stack, BATCH_DAG, False)
        assert stack.wait_for_run(TRIGGERER_DAG, run_id, timeout=180) == "success"
        records = responses.records(event=(TRIGGERER_SOURCE, "tpeak-1"))
        assert {(r.resume_result, r.detail.get("resumed_by")) for r in records} == {("resumed", "triggerer")}
        assert not responses.open_holds()
        wait_logs(
            workdir, {n: ["start"] if c == "critical" else ["start", "checkpoint", "start"] for n, c in names.items()}
        )
        (workdir / "finish").touch()
        wait_states(urls, dict.fromkeys(names, "complete"), "every Job finished")
