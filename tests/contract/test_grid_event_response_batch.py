"""The grid-event response on AWS Batch (moto_server): batch and flexible jobs paused by terminate-with-reason,
critical untouched, resumed by resubmission as the same logical job when the event ends, each step once; a
pause applied by a runner that stopped before recording it is found and resumed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_gridaware.dispatch import ANNOTATION_JOB_ID
from airflow_provider_gridaware.hooks.batch import PAUSE_REASON_PREFIX, TAG_PREVIOUS_JOB_ID
from airflow_provider_gridaware.operators.grid_event_response import BatchJobsActuator
from airflow_provider_gridaware.planning.grid_response import plan_response
from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY
from airflow_provider_gridaware.responder import CLAIM_LEASE, respond
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.store.responses import ResponseStore
from airflow_provider_gridaware.times import UTC
from tests.contract.test_batch_pause_resume import QUEUES, by_id, start_job
from tests.support.grid_events import make_event, simple_signal
from tests.support.moto_server import MotoServer


def dr_event(status: EventStatus, start: datetime, event_id: str = "event-1") -> GridEvent:
    """A one-hour demand-response event in both queues' zones, begun a minute before ``start``."""
    return make_event(
        source="webhook:dr",
        protocol="webhook",
        event_id=event_id,
        status=status,
        received_at=start,
        targets=(EventTarget(kind="zone", value="GB"), EventTarget(kind="zone", value="SE")),
        signals=(simple_signal(start=start - timedelta(minutes=1), levels=(1,)),),
    )


def test_batch_jobs_pause_for_the_event_and_resume_as_the_same_logical_job(aws: MotoServer, tmp_path: Path) -> None:
    batch = start_job("GB").trigger.request.job_id
    flexible = start_job("SE", task_id="tune", priority_class="flexible").trigger.request.job_id
    critical = start_job("GB", task_id="urgent", priority_class="critical").trigger.request.job_id
    now = datetime.now(UTC)

    def event(status: EventStatus) -> GridEvent:
        return dr_event(status, now)

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


def test_a_job_terminated_by_a_runner_that_stopped_before_recording_the_pause_is_resubmitted_once(
    aws: MotoServer, tmp_path: Path
) -> None:
    """An earlier event paused and resumed the job (so its logical job has an older paused AWS job, already
    resubmitted). Then a runner claims the pause of the running successor, terminates it and stops before
    recording it: a pass after the lease finds the terminated successor, holds it, and the event's end
    resubmits it once."""
    original = start_job("GB").trigger.request.job_id
    start = datetime.now(UTC)
    now = [start]
    actuators = [BatchJobsActuator(q, DEFAULT_POLICY) for q in QUEUES]
    with ResponseStore(f"sqlite:///{tmp_path / 'store.db'}", clock=lambda: now[0]) as store:
        earlier = dr_event(EventStatus.ACTIVE, start, event_id="event-0")
        assert len(respond(events=[earlier], actuators=actuators, store=store, now=start).paused) == 1
        ended = dr_event(EventStatus.COMPLETED, start, event_id="event-0")
        assert len(respond(events=[ended], actuators=actuators, store=store, now=start).resumed) == 1
        (running,) = [w for a in actuators for w in a.discover()]
        successor = actuators[0].hook.successor(actuators[0].hook.describe_job(original) or {})
        assert successor is not None and successor["status"] == "RUNNING"

        event = dr_event(EventStatus.ACTIVE, start)
        plan = plan_response([event], [running], [], now=start, hold_counts=store.hold_counts())
        (claimed,) = store.claim_pauses(plan.pauses)
        assert claimed is not None
        outcome = actuators[0].hook.pause_job(successor, reason=f"{PAUSE_REASON_PREFIX} by a runner that stops now")
        assert outcome == "paused" and not [w for a in actuators for w in a.discover()]  # no longer listed

        later = start + CLAIM_LEASE + timedelta(minutes=1)
        now[0] = later
        taken = respond(events=[event], actuators=actuators, store=store, now=later)
        assert [p["target"] for p in taken.paused] == [running.target] and not taken.failed
        (held,) = store.open_holds()
        assert held.result == "paused" and held.detail["job_id"] == successor["jobId"]
        assert held.detail["region"] == QUEUES[0].region_name and "found already paused" in held.detail["note"]

        completed = dr_event(EventStatus.COMPLETED, start)
        resumed = respond(events=[completed], actuators=actuators, store=store, now=later)
        assert len(resumed.resumed) == 1 and not resumed.failed
        assert not respond(events=[completed], actuators=actuators, store=store, now=later).resumed
        jobs = by_id(aws)
        resubmissions = [j for j in jobs.values() if j["tags"].get(TAG_PREVIOUS_JOB_ID) == successor["jobId"]]
        assert len(resubmissions) == 1 and resubmissions[0]["status"] == "RUNNING"
        assert resubmissions[0]["tags"][ANNOTATION_JOB_ID] == jobs[original]["tags"][ANNOTATION_JOB_ID]
        assert len(jobs) == 3  # the original, its successor, and the successor's resubmission


def test_a_job_terminated_by_a_runner_that_stopped_is_resubmitted_when_the_event_ends_within_the_lease(
    aws: MotoServer, tmp_path: Path
) -> None:
    job_id = start_job("GB").trigger.request.job_id
    start = datetime.now(UTC)
    actuators = [BatchJobsActuator(q, DEFAULT_POLICY) for q in QUEUES]
    with ResponseStore(f"sqlite:///{tmp_path / 'store.db'}", clock=lambda: start) as store:
        event = dr_event(EventStatus.ACTIVE, start)
        plan = plan_response([event], [w for a in actuators for w in a.discover()], [], now=start)
        store.claim_pauses(plan.pauses)
        job = actuators[0].hook.describe_job(job_id) or {}
        assert actuators[0].hook.pause_job(job, reason=PAUSE_REASON_PREFIX) == "paused"  # ... and the runner stops

        ended = respond(events=[dr_event(EventStatus.COMPLETED, start)], actuators=actuators, store=store, now=start)
        assert len(ended.resumed) == 1 and not ended.failed and not store.open_holds()
        resubmissions = [j for j in by_id(aws).values() if j["tags"].get(TAG_PREVIOUS_JOB_ID) == job_id]
        assert len(resubmissions) == 1
