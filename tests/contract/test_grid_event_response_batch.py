"""The grid-event response on AWS Batch (moto_server): batch and flexible jobs paused by terminate-with-reason,
critical untouched, resumed by resubmission as the same logical job when the event ends, each step once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_gridaware.dispatch import ANNOTATION_JOB_ID
from airflow_provider_gridaware.hooks.batch import PAUSE_REASON_PREFIX, TAG_PREVIOUS_JOB_ID
from airflow_provider_gridaware.operators.grid_event_response import BatchJobsActuator
from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY
from airflow_provider_gridaware.responder import respond
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget
from airflow_provider_gridaware.store.responses import ResponseStore
from airflow_provider_gridaware.times import UTC
from tests.contract.test_batch_pause_resume import QUEUES, by_id, start_job
from tests.support.grid_events import make_event, simple_signal
from tests.support.moto_server import MotoServer


def test_batch_jobs_pause_for_the_event_and_resume_as_the_same_logical_job(aws: MotoServer, tmp_path: Path) -> None:
    batch = start_job("GB").trigger.request.job_id
    flexible = start_job("SE", task_id="tune", priority_class="flexible").trigger.request.job_id
    critical = start_job("GB", task_id="urgent", priority_class="critical").trigger.request.job_id
    now = datetime.now(UTC)

    def event(status: EventStatus):  # type: ignore[no-untyped-def]
        return make_event(
            source="webhook:dr",
            protocol="webhook",
            status=status,
            received_at=now,
            targets=(EventTarget(kind="zone", value="GB"), EventTarget(kind="zone", value="SE")),
            signals=(simple_signal(start=now - timedelta(minutes=1), levels=(1,)),),
        )

    with ResponseStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        actuators = [BatchJobsActuator(q, DEFAULT_POLICY) for q in QUEUES]
        first = respond(events=[event(EventStatus.ACTIVE)], actuators=actuators, store=store, now=now)
        assert sorted(p["action"] for p in first.paused) == ["checkpoint", "stop"] and not first.failed
        jobs = by_id(aws)
        for job_id in (batch, flexible):
            assert jobs[job_id]["status"] == "FAILED"
            assert jobs[job_id]["statusReason"].startswith(PAUSE_REASON_PREFIX)
            assert "webhook:dr/event-1" in jobs[job_id]["statusReason"]
        assert jobs[critical]["status"] == "RUNNING"
        # Paused AWS jobs are not listed any more: the next pass knows them from the record, pauses nothing.
        again = respond(events=[event(EventStatus.ACTIVE)], actuators=actuators, store=store, now=now)
        assert not again.paused and not again.resumed and not again.failed

        ended = respond(
            events=[event(EventStatus.COMPLETED)], actuators=actuators, store=store, now=now + timedelta(minutes=5)
        )
        assert len(ended.resumed) == 2 and not ended.failed
        jobs = by_id(aws)
        successors = {
            j["tags"].get(TAG_PREVIOUS_JOB_ID): j for j in jobs.values() if j["tags"].get(TAG_PREVIOUS_JOB_ID)
        }
        assert set(successors) == {batch, flexible}
        for old, new in successors.items():
            assert new["tags"][ANNOTATION_JOB_ID] == jobs[old]["tags"][ANNOTATION_JOB_ID]
        records = store.records()
        assert {r.resume_result for r in records} == {"resumed"} and all(r.waited_seconds is not None for r in records)
        assert not respond(events=[event(EventStatus.COMPLETED)], actuators=actuators, store=store, now=now).resumed
