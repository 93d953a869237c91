"""Pause = terminate, resume = resubmit, against moto_server: one logical job across attempts, selection by
tags, idempotence, and a waiting operator that follows its job to the resubmitted successor."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gridaware.dispatch import ANNOTATION_ATTEMPT, ANNOTATION_JOB_ID, ENV_ATTEMPT, ENV_CHECKPOINT_DIR
from airflow_provider_gridaware.hooks.batch import PAUSE_REASON_PREFIX, TAG_PREVIOUS_JOB_ID, BatchQueue
from airflow_provider_gridaware.operators.batch import (
    GridAwareBatchOperator,
    PauseBatchJobsOperator,
    ResumeBatchJobsOperator,
)
from airflow_provider_gridaware.triggers.batch import GridAwareBatchJobTrigger
from tests.contract.conftest import CONN, REGIONS
from tests.support.moto_server import ENV_OUTCOME, MotoServer, fake_context

EVENT = "grid event GB demand flexibility 17:00-18:00"


QUEUES = [BatchQueue(zone=z, region_name=r, job_queue=q, aws_conn_id=CONN) for z, (r, q) in REGIONS.items()]


def start_job(
    zone: str, *, task_id: str = "train", priority_class: str = "batch", outcome: str = "hold"
) -> TaskDeferred:
    """A GridAwareBatchOperator that has submitted in ``zone`` and now waits (its completion deferral)."""
    operator = GridAwareBatchOperator(
        task_id=task_id,
        queues=QUEUES,
        job_name=f"{task_id}-job",
        job_definition="gridaware-train",
        duration=timedelta(hours=1),
        deadline=timedelta(hours=12),
        conn_id="carbon",
        priority_class=priority_class,
        container_overrides={"environment": [{"name": ENV_OUTCOME, "value": outcome}]},
        checkpoint_path="s3://checkpoints/" + task_id,
    )
    context = fake_context()
    context["ti"].task_id = task_id
    event = {"status": "released", "plan": {"zone": zone, "reason": "test"}, "counterfactual": None}
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute_in_window(context, event)
    return deferred.value


def pause(**kwargs: Any) -> list[dict[str, Any]]:
    return PauseBatchJobsOperator(task_id="pause", queues=QUEUES, reason=EVENT, **kwargs).execute({})


def resume(**kwargs: Any) -> list[dict[str, Any]]:
    return ResumeBatchJobsOperator(task_id="resume", queues=QUEUES, **kwargs).execute({})


def by_id(aws: MotoServer) -> dict[str, dict[str, Any]]:
    return {j["jobId"]: j for region, _ in REGIONS.values() for j in aws.jobs(region)}


def states(jobs: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    # Not whole descriptions: moto appends AWS_BATCH_JOB_ID to the environment on every describe.
    return {i: (j["status"], j.get("statusReason"), j.get("stoppedAt"), j["tags"]) for i, j in jobs.items()}


def test_pause_terminates_matching_jobs_with_a_marked_reason_and_is_idempotent(aws: MotoServer) -> None:
    gb = start_job("GB").trigger.request.job_id
    se = start_job("SE", task_id="other").trigger.request.job_id
    critical = start_job("GB", task_id="urgent", priority_class="critical").trigger.request.job_id

    rows = pause(priority_class="batch")
    assert sorted((r["aws_job_id"], r["action"], r["region_name"]) for r in rows) == sorted(
        [(gb, "paused", "eu-west-2"), (se, "paused", "eu-north-1")]
    )
    jobs = by_id(aws)
    assert jobs[gb]["status"] == "FAILED" and jobs[gb]["statusReason"] == f"{PAUSE_REASON_PREFIX} for {EVENT}"
    assert jobs[critical]["status"] == "RUNNING"  # another priority class: untouched

    again = pause(priority_class="batch")
    assert sorted((r["aws_job_id"], r["action"]) for r in again) == sorted(
        [(gb, "already paused"), (se, "already paused")]
    )
    assert states(by_id(aws)) == states(jobs)  # nothing changed


def test_pause_by_zone_and_dag(aws: MotoServer) -> None:
    gb = start_job("GB").trigger.request.job_id
    se = start_job("SE", task_id="other").trigger.request.job_id
    assert [r["aws_job_id"] for r in pause(zone="SE")] == [se]
    assert pause(target_dag_id="another_dag", zone="GB") == []
    assert by_id(aws)[gb]["status"] == "RUNNING"


def test_resume_resubmits_one_logical_job_and_is_idempotent(aws: MotoServer) -> None:
    first = start_job("SE").trigger.request.job_id
    pause()
    [row] = resume()
    assert row["action"] == "resumed" and row["aws_job_id"] == first
    jobs = by_id(aws)
    assert len(jobs) == 2
    old, new = jobs[first], jobs[row["new_aws_job_id"]]
    assert new["jobName"] == old["jobName"] and new["jobQueue"] == old["jobQueue"]
    assert new["jobDefinition"] == old["jobDefinition"]
    assert new["tags"][ANNOTATION_JOB_ID] == old["tags"][ANNOTATION_JOB_ID] == row["job_id"]
    assert new["tags"][ANNOTATION_ATTEMPT] == "2" and new["tags"][TAG_PREVIOUS_JOB_ID] == first
    env = {e["name"]: e["value"] for e in new["container"]["environment"]}
    assert env[ENV_ATTEMPT] == "2" and env[ENV_CHECKPOINT_DIR] == "s3://checkpoints/train"
    assert env[ENV_OUTCOME] == "hold" and env["AWS_BATCH_JOB_ID"] == new["jobId"]  # not copied from the old job

    [again] = resume()
    assert again["action"] == "already resumed" and again["new_aws_job_id"] == new["jobId"]
    assert len(by_id(aws)) == 2


def test_waiting_operator_follows_its_job_through_pause_and_resume(aws: MotoServer) -> None:
    deferred = start_job("GB", outcome="hold-first")  # attempt 2 (after the resume) finishes
    trigger = deferred.trigger
    assert isinstance(trigger, GridAwareBatchJobTrigger)
    first = trigger.request.job_id
    chain = [first]

    pause()
    assert asyncio.run(trigger.poll_once(chain)) is None  # paused: waiting for the successor, not failed
    [row] = resume()
    event = asyncio.run(trigger.poll_once(chain))
    assert event is not None
    assert event.payload["status"] == "success" and event.payload["job_ids"] == [first, row["new_aws_job_id"]]

    # A restarted triggerer starts again from the stored job and finds the same chain.
    restarted = GridAwareBatchJobTrigger(trigger.serialize()[1]["request"])

    async def first_event() -> dict[str, Any]:
        async for ev in restarted.run():
            return dict(ev.payload)
        raise AssertionError("no event")

    assert asyncio.run(first_event())["job_ids"] == [first, row["new_aws_job_id"]]
