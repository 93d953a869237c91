"""duration="auto" on the worker: resolved once from the recorded runs before the first decision, recorded at
success by the decorator and from the dispatch operators' own job times."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gridaware import window
from airflow_provider_gridaware.decorators.gridaware import _GridAwareDecoratedOperator
from airflow_provider_gridaware.hooks.store import GridStoreHook
from airflow_provider_gridaware.planning.runtime import NotEnoughRunHistoryError
from airflow_provider_gridaware.sensors.grid_window import GridWindowSensor
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series
from airflow_provider_gridaware.store.runtime import TaskRun
from airflow_provider_gridaware.window import GridWindowArgs

UTC = timezone.utc
MINUTES = [50, 55, 60, 62, 65, 70, 80]  # median 62, slowest 80: margin 18 min


def context(dag_id: str, task_id: str = "train", run_id: str = "manual__now", try_number: int = 1) -> dict[str, Any]:
    now = datetime.now(UTC)
    ti = SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1, try_number=try_number)
    return {"dag_run": SimpleNamespace(start_date=now, run_after=now), "ti": ti, "task_instance": ti}


def seed(dag_id: str, minutes: list[int], task_id: str = "train") -> None:
    history = GridStoreHook().get_runtime_history()
    for day, m in enumerate(minutes):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
        history.record(TaskRun(dag_id, task_id, f"r{day}", -1, 1, start, start + timedelta(minutes=m), m * 60.0))


def task(**kwargs: Any) -> _GridAwareDecoratedOperator:
    args: dict[str, Any] = {
        "task_id": "train",
        "python_callable": lambda: "trained",
        "duration": "auto",
        "deadline": timedelta(hours=12),
        "conn_id": "carbon",
        "zones": ["GB"],
    }
    return _GridAwareDecoratedOperator(**{**args, **kwargs})


@pytest.fixture
def dag_id() -> str:
    return f"auto_{uuid.uuid4().hex[:8]}"  # the session store is shared: each test its own DAG


def test_released_at_once_with_the_estimate_and_the_run_is_recorded(dag_id):
    seed(dag_id, MINUTES)
    operator = task(priority_class="critical")  # no signals needed: released at once
    result = operator.execute(context(dag_id))
    assert result == "trained"
    runs = GridStoreHook().get_runtime_history().recent(dag_id, "train", limit=20)
    assert len(runs) == len(MINUTES) + 1 and runs[0].run_id == "manual__now" and runs[0].kind == "python"
    assert 0 <= runs[0].run_seconds < 5 and runs[0].zone == "GB"


def test_the_first_decision_and_the_trigger_get_the_estimated_duration_and_margin(dag_id, monkeypatch):
    seed(dag_id, MINUTES)
    now = datetime.now(UTC)
    start = datetime.fromtimestamp(now.timestamp() // 1800 * 1800, UTC)
    dip = start + timedelta(hours=4)
    forecast = build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=now,
        unit="gCO2eq/kWh",
        points=[
            (start + k * timedelta(minutes=30), start + (k + 1) * timedelta(minutes=30), 40.0 if 8 <= k < 12 else 300.0)
            for k in range(48)
        ],
    )
    monkeypatch.setattr(
        window,
        "_fetch_all",
        lambda sources, budget: {(s, True): forecast for s in sources} | {(s, False): RuntimeError() for s in sources},
    )
    operator = task()
    first = operator.decide_first(context(dag_id))
    assert first.job.duration == timedelta(minutes=62)
    assert first.job.runtime_margin == pytest.approx(18 / 62)
    assert "duration 1 h 2 min estimated from 7 runs (median; p90 1 h 20 min, margin 18 min)" in first.decision.reason
    assert first.decision.plan.start == dip
    with pytest.raises(TaskDeferred) as deferred:
        operator.defer_until_window(context(dag_id), method_name="execute_complete", first=first)
    job = deferred.value.trigger.request.job
    assert job["duration_seconds"] == 62 * 60 and job["runtime_margin"] == pytest.approx(18 / 62)


def test_an_explicit_runtime_margin_wins_over_the_estimated_one(dag_id):
    seed(dag_id, MINUTES)
    args, estimate = GridWindowArgs(
        duration="auto", deadline=timedelta(hours=8), conn_id="c", zones=["GB"], runtime_margin=0.5
    ).resolved(context(dag_id))
    assert estimate is not None and args.duration == timedelta(minutes=62) and args.runtime_margin == 0.5


def test_too_little_history_fails_the_task_naming_it_and_the_count(dag_id):
    seed(dag_id, [60, 61])
    with pytest.raises(NotEnoughRunHistoryError, match=f"{dag_id}/train: found 2 successful runs.*3 needed"):
        task(priority_class="critical").execute(context(dag_id))
    seed(dag_id, [60, 61, 62, 63], task_id="other")  # another task's runs do not count
    with pytest.raises(NotEnoughRunHistoryError, match="found 2 successful runs"):
        task(priority_class="critical").execute(context(dag_id))
    assert task(priority_class="critical", duration_min_runs=2).execute(context(dag_id)) == "trained"


def test_duration_runs_limits_the_history_to_the_most_recent(dag_id):
    seed(dag_id, [10, 10, 10, 100, 100, 100])  # the last three are the newest
    args, _ = GridWindowArgs(duration="auto", deadline=timedelta(hours=8), conn_id="c", duration_runs=3).resolved(
        context(dag_id)
    )
    assert args.duration == timedelta(minutes=100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": "automatic"}, 'a timedelta or "auto"'),
        ({"duration": 3600}, 'a timedelta or "auto"'),
        ({"duration_min_runs": 0}, "duration_min_runs"),
        ({"duration_runs": 2, "duration_min_runs": 3}, "duration_min_runs"),
    ],
)
def test_bad_auto_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        task(**kwargs)


def test_a_sensor_refuses_auto_its_work_is_the_next_task():
    with pytest.raises(ValueError, match="sensor's work is the task after it"):
        GridWindowSensor(task_id="wait", duration="auto", deadline=timedelta(hours=6), conn_id="c", zones=["GB"])


def test_an_unreadable_store_fails_the_task_naming_it(dag_id, monkeypatch):
    monkeypatch.setenv("GRIDAWARE_STORE_URL", "mysql://nowhere/db")
    with pytest.raises(RuntimeError, match=f"{dag_id}/train: could not read its past run times"):
        task(priority_class="critical").execute(context(dag_id))


def test_a_store_failure_when_recording_does_not_fail_the_task(dag_id, monkeypatch, capsys):
    operator = task(priority_class="critical", duration=timedelta(minutes=5))
    monkeypatch.setenv("GRIDAWARE_STORE_URL", "mysql://nowhere/db")
    assert operator.execute(context(dag_id)) == "trained"
    assert f"could not record the run time of {dag_id}/train" in capsys.readouterr().out  # the task log


# -- dispatch: the job's own run time, summed over chunks ---------------------------------------------------
def test_kubernetes_run_time_is_the_last_chunk_plus_the_chunks_before_suspensions(dag_id):
    from airflow_provider_gridaware.hooks.kubernetes import (
        ANNOTATION_CHUNKS,
        ANNOTATION_RUN_SECONDS,
        JobRef,
        earlier_chunks,
        running_chunk_seconds,
    )
    from tests.unit.test_kubernetes_units import operator

    start = datetime(2026, 1, 1, 12, tzinfo=UTC)
    running = {"spec": {"suspend": False}, "status": {"startTime": "2026-01-01T12:00:00Z", "active": 1}}
    assert running_chunk_seconds(running, start + timedelta(minutes=20)) == 1200
    assert running_chunk_seconds({"spec": {"suspend": True}, "status": {}}, start) is None
    resumed = {"metadata": {"annotations": {ANNOTATION_RUN_SECONDS: "1200.000", ANNOTATION_CHUNKS: "1"}}}
    assert earlier_chunks(resumed) == (1200.0, 1) and earlier_chunks({}) == (0.0, 0)

    op = operator(duration="auto")
    status = {"startTime": "2026-01-01T14:00:00Z", "completionTime": "2026-01-01T14:40:00Z"}
    ref = JobRef(conn_id="kube_se", namespace="ml", name="train-1", zone="SE")
    op._result(context(dag_id), ref, None, status, (1200.0, 1))
    [run] = GridStoreHook().get_runtime_history().recent(dag_id, "train", limit=5)
    assert (run.run_seconds, run.chunks, run.kind, run.zone) == (3600.0, 2, "kubernetes_job", "SE")


def test_batch_run_time_sums_the_aws_jobs_that_ran():
    from airflow_provider_gridaware.hooks.batch import run_time

    ms = 1_767_268_800_000  # 2026-01-01T12:00Z
    jobs = [
        {"jobId": "a", "startedAt": ms, "stoppedAt": ms + 600_000},  # paused after 10 min
        {"jobId": "b"},  # terminated while still queued: never ran
        {"jobId": "c", "startedAt": ms + 3_600_000, "stoppedAt": ms + 3_600_000 + 1_500_000},
    ]
    started, ended, seconds, chunks = run_time(jobs) or (None, None, 0.0, 0)
    assert (seconds, chunks) == (2100.0, 2)
    assert started == datetime(2026, 1, 1, 12, tzinfo=UTC) and ended == datetime(2026, 1, 1, 13, 25, tzinfo=UTC)
    assert run_time([{"jobId": "b"}]) is None


def test_batch_run_time_is_exact_to_the_millisecond_aws_gives():
    from airflow_provider_gridaware.hooks.batch import run_time

    # Epoch seconds as floats cannot hold these: 1764933039.560 - 1764933039.559 is 0.00099992... there.
    started_ms = 1_764_933_039_559
    for run_ms in (1, 7, 360, 123_457):
        measured = run_time([{"jobId": "a", "startedAt": started_ms, "stoppedAt": started_ms + run_ms}])
        assert measured is not None and measured[2] == run_ms / 1000
