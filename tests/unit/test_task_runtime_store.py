"""Task run times in the store (SQLite): round trip, overwrite per try, newest first, concurrent openers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.store.runtime import TaskRun, TaskRuntimeHistory

UTC = timezone.utc
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def run(day: int, seconds: float, *, task_id: str = "train", try_number: int = 1, map_index: int = -1) -> TaskRun:
    start = T0 + timedelta(days=day)
    return TaskRun(
        dag_id="nightly",
        task_id=task_id,
        run_id=f"scheduled__{start.date()}",
        map_index=map_index,
        try_number=try_number,
        started_at=start,
        ended_at=start + timedelta(seconds=seconds),
        run_seconds=seconds,
        zone="GB",
    )


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def round_trip(url: str) -> None:
    """Shared with the PostgreSQL contract test."""
    with TaskRuntimeHistory(url) as history:
        for day in range(5):
            history.record(run(day, 3600.0 + day))
        history.record(run(2, 7200.0))  # the same try again: overwritten, not doubled
        history.record(run(3, 100.0, task_id="other"))
        history.record(run(4, 50.0, map_index=1))
        got = history.recent("nightly", "train", limit=4)
        assert [r.run_seconds for r in got] == [3604.0, 50.0, 3603.0, 7200.0]
        assert got[0].ended_at.tzinfo is not None and got[0].ended_at == T0 + timedelta(days=4, seconds=3604)
        assert got[0] == run(4, 3604.0)
        assert history.recent("nightly", "nothing", limit=5) == []
        assert [r.task_id for r in history.recent("nightly", "other", limit=5)] == ["other"]


def test_round_trip(url):
    round_trip(url)


def test_a_try_needs_aware_times_and_a_sane_run_time():
    with pytest.raises(ValueError):
        TaskRun("d", "t", "r", -1, 1, datetime(2026, 1, 1), T0, 1.0)  # naive on purpose
    with pytest.raises(ValueError, match="run_seconds"):
        TaskRun("d", "t", "r", -1, 1, T0, T0, float("nan"))
    with pytest.raises(ValueError, match="chunks"):
        TaskRun("d", "t", "r", -1, 1, T0, T0, 1.0, chunks=0)
