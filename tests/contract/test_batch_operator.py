"""GridAwareBatchOperator against moto_server: queue checks, submission in the released zone, reattachment
on retry, clear failures, and nothing duplicated or orphaned in AWS."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_JOB_ID,
    ANNOTATION_RUN_ID,
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_JOB_ID,
    LABEL_MANAGED,
    LABEL_PRIORITY_CLASS,
    LABEL_ZONE,
)
from airflow_provider_gridaware.hooks.batch import BatchDispatchError, BatchQueue
from airflow_provider_gridaware.operators.batch import STATE_KEY, GridAwareBatchOperator
from airflow_provider_gridaware.triggers.batch import GridAwareBatchJobTrigger
from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger
from tests.contract.conftest import CONN, REGIONS
from tests.support.moto_server import ENV_OUTCOME, MotoServer, StateStore, aws_connection, fake_context
from tests.support.traces import write_flat_trace

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
LOGICAL_ID = "train_dag/manual__2026-11-26T12:00:00+00:00/train"


def queues(**penalties: float) -> list[BatchQueue]:
    return [
        BatchQueue(zone=z, region_name=r, job_queue=q, aws_conn_id=CONN, penalty=penalties.get(z, 0.0))
        for z, (r, q) in REGIONS.items()
    ]


def make_operator(*, outcome: str | None = None, **overrides: Any) -> GridAwareBatchOperator:
    env = [{"name": "USER_SETTING", "value": "42"}]
    if outcome:
        env.append({"name": ENV_OUTCOME, "value": outcome})
    args: dict[str, Any] = {
        "task_id": "train",
        "queues": queues(),
        "job_name": "train-model",
        "job_definition": "gridaware-train",
        "duration": timedelta(hours=1),
        "deadline": timedelta(hours=12),
        "conn_id": "carbon",
        "container_overrides": {"environment": env},
        "tags": {"team": "ml"},
        "checkpoint_path": "s3://checkpoints/train",
        "grace_period_seconds": 60,
        "priority_class": "batch",
        "poll_interval": 5,
    }
    args.update(overrides)
    return GridAwareBatchOperator(**args)


def window_event(zone: str) -> dict[str, Any]:
    """What GridWindowTrigger fires with when it releases the job in ``zone``."""
    start = T0.isoformat()
    return {
        "status": "released",
        "released_at": start,
        "plan": {"zone": zone, "chunks": [{"start": start, "end": start}], "reason": f"cleanest in {zone}"},
        "problems": [],
        "replans": 2,
        "counterfactual": {"zone": "GB", "signals": {"gCO2eq/kWh": 250.0}, "objective": 1.0},
    }


def wait_for_job(deferred: TaskDeferred) -> dict[str, Any]:
    """Run the completion trigger to its event."""
    assert isinstance(deferred.trigger, GridAwareBatchJobTrigger)

    async def first() -> dict[str, Any]:
        async for event in deferred.trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first())


def submit(operator: GridAwareBatchOperator, context: Any, zone: str = "SE") -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute_in_window(context, window_event(zone))
    assert deferred.value.method_name == "execute_complete"
    return deferred.value


def env_of(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["container"]["environment"]}


def test_start_checks_queues_then_waits_for_the_window(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trace = write_flat_trace(tmp_path / "trace.csv", {"GB": 300, "SE": 200})
    extra = {"anchor": "fixed", "forecast_error": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CARBON", json.dumps({"conn_type": "gridaware_replay", "host": str(trace), "extra": extra})
    )
    # Submitted now, not before 11 minutes from now: the first decision waits.
    operator = make_operator(queues=queues(SE=0.3), zone_penalty={"GB": 0.1}, earliest_start=timedelta(minutes=11))
    context = fake_context(run_start=datetime.now(timezone.utc))
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert deferred.value.method_name == "execute_in_window"
    assert deferred.value.trigger.not_before is not None  # the resume guard: it resumes on a worker
    trigger = deferred.value.trigger
    assert isinstance(trigger, GridWindowTrigger)
    assert trigger.job.zones == ("GB", "SE")  # queue order: home zone first
    assert dict(trigger.job.zone_penalty) == {"GB": 0.1, "SE": 0.3}
    assert trigger.job.job_id == LOGICAL_ID
    assert aws.jobs("eu-west-2") == [] and aws.jobs("eu-north-1") == []


def test_a_missing_signal_connection_fails_at_once_naming_it(aws: MotoServer) -> None:
    from airflow_provider_gridaware.signals.errors import SourceConfigError

    with pytest.raises(SourceConfigError, match="connection 'carbon' does not exist"):
        make_operator().execute(fake_context(run_start=datetime.now(timezone.utc)))
    assert aws.jobs("eu-west-2") == [] and aws.jobs("eu-north-1") == []


def test_a_first_decision_to_start_now_submits_without_waiting_for_a_trigger(aws: MotoServer) -> None:
    operator = make_operator()
    context = fake_context(run_start=T0)  # a week ago: the latest start has passed, so it starts at once
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert deferred.value.method_name == "execute_complete"  # no grid-window deferral before the submission
    assert deferred.value.trigger.request.not_before is not None
    assert len(aws.jobs("eu-west-2")) == 1  # the home zone: no signal to choose another


def test_submits_in_the_released_zone_with_tags_and_checkpoint_contract(aws: MotoServer) -> None:
    context = fake_context(run_start=T0)
    deferred = submit(make_operator(), context, zone="SE")

    assert aws.jobs("eu-west-2") == []
    [job] = aws.jobs("eu-north-1")
    assert job["jobQueue"].endswith("job-queue/gridaware-se") and job["jobName"] == "train-model"
    record = context["task_state_store"][STATE_KEY]  # stored before deferring
    assert record["job_id"] == job["jobId"] and record["queue"]["region_name"] == "eu-north-1"
    tags = job["tags"]
    assert tags["team"] == "ml" and tags[LABEL_MANAGED] == "true"
    assert tags[LABEL_PRIORITY_CLASS] == "batch" and tags[LABEL_ZONE] == "SE"
    assert tags[ANNOTATION_JOB_ID] == LOGICAL_ID and tags[ANNOTATION_ATTEMPT] == "1"
    assert tags[ANNOTATION_RUN_ID] == "manual__2026-11-26T12:00:00+00:00"  # exact: AWS tags allow ':' and '+'
    env = env_of(job)
    assert env["USER_SETTING"] == "42" and env[ENV_JOB_ID] == LOGICAL_ID and env[ENV_ATTEMPT] == "1"
    assert env[ENV_CHECKPOINT_DIR] == "s3://checkpoints/train"
    assert context["ti"].xcoms["batch_job_details"]["region_name"] == "eu-north-1"

    event = wait_for_job(deferred)
    assert event == {
        "status": "success",
        "job_ids": [job["jobId"]],
        "job_id": job["jobId"],
        "job_status": "SUCCEEDED",
        "message": None,
    }
    result = make_operator().execute_complete(context, event)
    assert result["zone"] == "SE" and result["region_name"] == "eu-north-1" and result["job_queue"] == "gridaware-se"
    assert result["job_id"] == LOGICAL_ID and result["aws_job_ids"] == [job["jobId"]]
    assert result["decision"]["counterfactual"]["zone"] == "GB"
    # The AWS job's own run time (startedAt..stoppedAt) is recorded for duration="auto".
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    [described] = [j for j in aws.jobs("eu-north-1") if j["jobId"] == job["jobId"]]
    runs = GridStoreHook().get_runtime_history().recent("train_dag", "train", limit=50)
    expected = (described["stoppedAt"] - described["startedAt"]) / 1000
    assert any(r.kind == "batch_job" and r.zone == "SE" and r.run_seconds == expected for r in runs), runs


def test_retry_reattaches_to_an_active_job(aws: MotoServer) -> None:
    store = StateStore()
    submit(make_operator(outcome="hold"), fake_context(store, run_start=T0), zone="GB")
    [job] = aws.jobs("eu-west-2")
    assert job["status"] == "RUNNING"

    with pytest.raises(TaskDeferred) as retried:
        make_operator(outcome="hold").execute(fake_context(store, run_start=T0))
    assert isinstance(retried.value.trigger, GridAwareBatchJobTrigger)
    assert retried.value.trigger.request.job_id == job["jobId"]
    assert len(aws.jobs("eu-west-2")) == 1 and aws.jobs("eu-north-1") == []


def test_retry_after_success_returns_without_submitting(aws: MotoServer) -> None:
    store = StateStore()
    submit(make_operator(), fake_context(store, run_start=T0), zone="GB")
    result = make_operator().execute(fake_context(store, run_start=T0))
    [job] = aws.jobs("eu-west-2")
    assert result["aws_job_ids"] == [job["jobId"]] and result["zone"] == "GB"
    assert result["decision"]["plan"]["zone"] == "GB"


def test_real_failure_is_reported_and_a_retry_submits_the_next_attempt(aws: MotoServer) -> None:
    store = StateStore()
    context = fake_context(store, run_start=T0)
    deferred = submit(make_operator(outcome="fail"), context, zone="GB")
    event = wait_for_job(deferred)
    assert event["status"] == "error" and event["job_status"] == "FAILED"
    with pytest.raises(BatchDispatchError, match=r"FAILED: Essential container in task exited.*gridaware-gb"):
        make_operator(outcome="fail").execute_complete(context, event)
    [failed] = aws.jobs("eu-west-2")

    retry = make_operator()
    # A failed job is not reattached: the retry decides again (its latest start has passed: at once) and submits.
    with pytest.raises(TaskDeferred) as waiting:
        retry.execute(fake_context(store, run_start=T0))
    assert isinstance(waiting.value.trigger, GridAwareBatchJobTrigger)
    second = next(j for j in aws.jobs("eu-west-2") if j["jobId"] != failed["jobId"])
    assert second["tags"][ANNOTATION_ATTEMPT] == "2" and env_of(second)[ENV_ATTEMPT] == "2"
    assert second["tags"][ANNOTATION_JOB_ID] == failed["tags"][ANNOTATION_JOB_ID]
    assert store[STATE_KEY]["job_ids"] == [failed["jobId"], second["jobId"]]


def test_missing_queue_fails_before_waiting(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    moto.reset()
    moto.setup_batch("eu-west-2", queue="gridaware-gb")  # no queue in eu-north-1
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", aws_connection(moto.url, "eu-west-2"))
    with pytest.raises(BatchDispatchError, match=r"zone SE: .*'gridaware-se' does not exist in eu-north-1"):
        make_operator().execute(fake_context(run_start=T0))
    assert moto.jobs("eu-west-2") == []


def test_disabled_queue_fails_before_waiting(aws: MotoServer) -> None:
    aws.client("batch", "eu-north-1").update_job_queue(jobQueue="gridaware-se", state="DISABLED")
    with pytest.raises(BatchDispatchError, match=r"'gridaware-se' in eu-north-1 cannot take jobs: state DISABLED"):
        make_operator().execute(fake_context(run_start=T0))


def test_missing_connection_is_named(aws: MotoServer) -> None:
    broken = [q.model_copy(update={"aws_conn_id": "aws_nowhere"}) for q in queues()]
    with pytest.raises(BatchDispatchError, match=r"AWS connection 'aws_nowhere' for queue 'gridaware-gb'"):
        make_operator(queues=broken).execute(fake_context(run_start=T0))


def test_bad_job_definition_creates_nothing_and_stores_nothing(aws: MotoServer) -> None:
    context = fake_context(run_start=T0)
    with pytest.raises(BatchDispatchError, match=r"definition 'no-such-definition'.*not submitted.*does not exist"):
        make_operator(job_definition="no-such-definition").execute_in_window(context, window_event("SE"))
    assert aws.jobs("eu-north-1") == [] and aws.jobs("eu-west-2") == []
    assert STATE_KEY not in context["task_state_store"]


def test_on_kill_terminates_the_job(aws: MotoServer) -> None:
    operator = make_operator(outcome="hold")
    submit(operator, fake_context(run_start=T0), zone="SE")
    operator.on_kill()
    [job] = aws.jobs("eu-north-1")
    assert job["status"] == "FAILED" and job["statusReason"] == "gridaware: task killed"


def carbon(zone: str, g_per_kwh: float) -> Any:
    from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series

    half_hour = timedelta(minutes=30)
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="test",
        series_type=SeriesType.FORECAST,
        issued_at=T0,
        unit="gCO2eq/kWh",
        points=[(T0 + i * half_hour, T0 + (i + 1) * half_hour, g_per_kwh) for i in range(48)],
    )


@pytest.mark.parametrize(
    ("penalties", "zone", "region"),
    [
        pytest.param({}, "SE", "eu-north-1", id="cleaner-zone-wins"),
        pytest.param({"SE": 1.0}, "GB", "eu-west-2", id="penalty-flips-it"),
    ],
)
def test_planner_picks_the_queue_by_signals_and_penalty(
    aws: MotoServer, penalties: dict[str, float], zone: str, region: str
) -> None:
    from airflow_provider_gridaware.planning.planner import plan_job
    from airflow_provider_gridaware.planning.signal_grid import grid_for

    operator = make_operator(queues=queues(**penalties))
    job = operator.window_args().job(run_start=T0, job_id=LOGICAL_ID)
    grid = grid_for(job, carbon={"GB": carbon("GB", 300.0), "SE": carbon("SE", 200.0)}, price={}, now=T0)
    plan = plan_job(job, grid, now=T0)
    assert plan.zone == zone
    event = {**window_event(zone), "plan": plan.to_dict()}
    with pytest.raises(TaskDeferred):
        operator.execute_in_window(fake_context(run_start=T0), event)
    other = next(r for r, _ in REGIONS.values() if r != region)
    assert len(aws.jobs(region)) == 1 and aws.jobs(other) == []
