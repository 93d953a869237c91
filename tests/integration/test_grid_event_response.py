"""The grid-event response applied in the triggerer, on the session's shared Airflow 3.3 (wall-clock time).

Six Kubernetes Jobs run (critical, flexible and batch, in a DE and a FR emulated cluster: each a local
process the emulator's Job runner starts, SIGTERMs on suspend and restarts on resume), and a DAG tagged
``gridaware:batch`` is running. The watcher ``GridEventTrigger(respond=...)`` suspends the flexible and batch
Jobs and pauses the DAG in the triggerer before its asset event fires; the DAG run it starts finds every
hold applied, and the completion resumes each piece once.

The whole story (the operator's pass too, grid-aware tasks waiting and running, the event's end on the
provider clock, duplicated, modified, cancelled and late events and a triggerer restart) is
test_grid_event_scenario.py, on a stack of its own running on accelerated time.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget
from airflow_provider_gridaware.store.events import EventStore
from airflow_provider_gridaware.store.responses import ResponseStore
from tests.integration.airflow_stack import AirflowStack, poll
from tests.integration.grid_response_support import (
    clusters,
    start_jobs,
    task_state,
    wait_logs,
    wait_paused,
    wait_states,
)
from tests.support.grid_events import make_event, simple_signal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTC = timezone.utc
BATCH_DAG = "gridaware_respond_batch_it"
CLUSTERS = {"DE": "k8s_respond_de", "FR": "k8s_respond_fr"}
API_CONN = "gridaware_airflow_api_it"
ZONES = (EventTarget(kind="zone", value="DE"), EventTarget(kind="zone", value="FR"))
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
        now = stack.now()  # the event's times on the clock the watcher reads
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
        print(f"\nevent stored -> Jobs suspended in the triggerer in {(stack.now() - now).total_seconds():.1f} s")

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
