"""The AWS Batch dispatch pieces without AWS: resubmission from a description, targets, the completion
trigger's decisions on a scripted hook, the operator's configuration errors, and the example DAG."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.dispatch import ANNOTATION_ATTEMPT, ANNOTATION_JOB_ID, ENV_ATTEMPT, LABEL_MANAGED
from airflow_provider_gridaware.hooks.batch import (
    PAUSE_REASON_PREFIX,
    TAG_PREVIOUS_JOB_ID,
    BatchDispatchError,
    BatchQueue,
    failure_reason,
    is_paused,
    resubmission_request,
)
from airflow_provider_gridaware.operators.batch import GridAwareBatchOperator
from airflow_provider_gridaware.triggers.batch import MAX_POLL_ERRORS, BatchJobWait, GridAwareBatchJobTrigger
from tests.support.moto_server import fake_context

REPO = Path(__file__).resolve().parents[2]
QUEUES = [
    BatchQueue(zone="GB", job_queue="q-gb", region_name="eu-west-2"),
    BatchQueue(zone="SE", job_queue="q-se", region_name="eu-north-1", penalty=0.4),
]


def description(**overrides: Any) -> dict[str, Any]:
    """A DescribeJobs entry of a paused job, as AWS returns it."""
    job = {
        "jobId": "job-1",
        "jobName": "train",
        "jobQueue": "arn:aws:batch:eu-west-2:1:job-queue/q-gb",
        "jobDefinition": "arn:aws:batch:eu-west-2:1:job-definition/train:3",
        "status": "FAILED",
        "statusReason": f"{PAUSE_REASON_PREFIX} for grid event",
        "parameters": {"epochs": "20"},
        "timeout": {"attemptDurationSeconds": 3600},
        "retryStrategy": {"attempts": 2},
        "tags": {LABEL_MANAGED: "true", ANNOTATION_JOB_ID: "d/r/t", ANNOTATION_ATTEMPT: "3", "team": "ml"},
        "container": {
            "command": ["python", "train.py"],
            "resourceRequirements": [{"type": "GPU", "value": "1"}],
            "environment": [
                {"name": ENV_ATTEMPT, "value": "3"},
                {"name": "GRIDAWARE_CHECKPOINT_DIR", "value": "s3://c"},
                {"name": "AWS_BATCH_JOB_ID", "value": "job-1"},
            ],
            "exitCode": 143,
        },
    }
    job.update(overrides)
    return job


def test_resubmission_is_the_next_attempt_of_the_same_logical_job() -> None:
    request = resubmission_request(description())
    assert request["jobName"] == "train" and request["jobQueue"].endswith("q-gb")
    assert request["jobDefinition"].endswith("train:3")
    assert request["parameters"] == {"epochs": "20"} and request["timeout"] == {"attemptDurationSeconds": 3600}
    assert request["retryStrategy"] == {"attempts": 2}
    assert request["tags"] == {
        LABEL_MANAGED: "true",
        ANNOTATION_JOB_ID: "d/r/t",
        ANNOTATION_ATTEMPT: "4",
        "team": "ml",
        TAG_PREVIOUS_JOB_ID: "job-1",
    }
    overrides = request["containerOverrides"]
    assert overrides["command"] == ["python", "train.py"]
    assert overrides["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    # AWS_BATCH_* is set by AWS and refused in overrides.
    assert overrides["environment"] == [
        {"name": ENV_ATTEMPT, "value": "4"},
        {"name": "GRIDAWARE_CHECKPOINT_DIR", "value": "s3://c"},
    ]


def test_pause_is_told_apart_from_failure() -> None:
    assert is_paused(description())
    failed = description(statusReason="Essential container in task exited")
    assert not is_paused(failed)
    assert failure_reason(failed) == "Essential container in task exited (exit code 143)"
    assert not is_paused(description(status="RUNNING"))


def test_queues_are_validated_at_parse_time() -> None:
    with pytest.raises(ValueError, match="two targets for zone 'GB'"):
        make_operator(queues=[QUEUES[0], QUEUES[0]])
    with pytest.raises(ValueError, match="extra"):
        BatchQueue.model_validate({"zone": "GB", "job_queue": "q", "region_name": "r", "cluster": "x"})
    with pytest.raises(ValueError, match=r"signal zones without a target to run in: \['FR'\]"):
        make_operator(sources=[{"conn_id": "carbon", "zone": "FR"}])


def test_window_zones_and_penalties_come_from_the_queues() -> None:
    operator = make_operator(queues=[q.model_dump() for q in QUEUES], zone_penalty={"GB": 0.1})
    args = operator.window_args()
    assert list(args.zones) == ["GB", "SE"]
    assert dict(args.zone_penalty) == {"GB": 0.1, "SE": 0.4}
    assert {"job_name", "container_overrides", "checkpoint_path", "deadline"} <= set(operator.template_fields)


def make_operator(**overrides: Any) -> GridAwareBatchOperator:
    args: dict[str, Any] = {
        "task_id": "train",
        "queues": QUEUES,
        "job_name": "train",
        "job_definition": "train",
        "duration": timedelta(hours=1),
        "deadline": timedelta(hours=6),
        "conn_id": "carbon",
    }
    args.update(overrides)
    return GridAwareBatchOperator(**args)


def test_execute_complete_fails_clearly() -> None:
    operator = make_operator()
    with pytest.raises(BatchDispatchError, match="unexpected event"):
        operator.execute_complete(fake_context(), None)
    store = fake_context()["task_state_store"]
    store.set("gridaware_batch_job", {"job_id": "a", "job_ids": ["a"], "queue": QUEUES[0].model_dump()})
    event = {"status": "error", "job_ids": ["a", "b"], "job_id": "b", "message": "AWS Batch job b FAILED: oom"}
    with pytest.raises(BatchDispatchError, match=r"b FAILED: oom \(queue 'q-gb' in eu-west-2 \(zone GB\); .*a, b\)"):
        operator.execute_complete(fake_context(store), event)
    assert store["gridaware_batch_job"]["job_ids"] == ["a", "b"]


class ScriptedHook:
    """Stands in for GridAwareBatchHook.follow: answers from a script (an exception is raised)."""

    region_name = "eu-west-2"

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers

    def follow(self, job_id: str) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def trigger_with(answers: list[Any]) -> GridAwareBatchJobTrigger:
    trigger = GridAwareBatchJobTrigger(BatchJobWait(job_id="a", region_name="eu-west-2", poll_interval=1))
    trigger.__dict__["hook"] = ScriptedHook(answers)  # the cached_property's slot
    return trigger


def poll(trigger: GridAwareBatchJobTrigger, chain: list[str]) -> Any:
    event = asyncio.run(trigger.poll_once(chain))
    return None if event is None else event.payload


def test_trigger_waits_while_paused_and_fails_only_on_a_real_failure() -> None:
    running = {"jobId": "b", "status": "RUNNING"}
    trigger = trigger_with(
        [
            (["a"], description(jobId="a")),  # paused, no successor yet
            (["a", "b"], running),
            (["b"], {"jobId": "b", "status": "FAILED", "statusReason": "Host EC2 terminated"}),
        ]
    )
    chain = ["a"]
    assert poll(trigger, chain) is None
    assert poll(trigger, chain) is None and chain == ["a", "b"]
    event = poll(trigger, chain)
    assert event == {
        "status": "error",
        "job_ids": ["a", "b"],
        "job_id": "b",
        "job_status": "FAILED",
        "message": "AWS Batch job b FAILED: Host EC2 terminated",
    }


def test_trigger_tolerates_a_few_failed_status_checks() -> None:
    errors = [BatchDispatchError("throttled")] * MAX_POLL_ERRORS
    trigger = trigger_with([*errors[:2], (["a"], {"jobId": "a", "status": "RUNNING"}), *errors])
    chain = ["a"]
    for _ in range(3 + MAX_POLL_ERRORS - 1):
        assert poll(trigger, chain) is None
    event = poll(trigger, chain)
    assert event["status"] == "error" and "throttled" in event["message"]


def test_trigger_reports_a_vanished_job() -> None:
    event = poll(trigger_with([(["a"], None)]), ["a"])
    assert event["status"] == "error" and "not found in eu-west-2" in event["message"]


def test_trigger_serialises_one_typed_request() -> None:
    trigger = GridAwareBatchJobTrigger(BatchJobWait(job_id="a", region_name="eu-north-1", aws_conn_id="aws_se"))
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_gridaware.triggers.batch.GridAwareBatchJobTrigger"
    assert GridAwareBatchJobTrigger(**kwargs).request == trigger.request


def test_example_dag_parses_without_aws_connections() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    bag = DagBag(dag_folder=str(REPO / "example_dags" / "example_batch_dispatch.py"))
    assert bag.import_errors == {}
    assert {"example_batch_dispatch", "example_batch_grid_event"} <= set(bag.dag_ids)
    for dag_id in ("example_batch_dispatch", "example_batch_grid_event"):
        DagSerialization.to_dict(bag.dags[dag_id])  # what the dag-processor stores
