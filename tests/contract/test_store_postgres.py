"""The store on the loopback PostgreSQL (forecast archive, task run times): a throw-away database per session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from airflow_provider_gridaware.signals.units import CarbonMetric, SignalKind
from airflow_provider_gridaware.store import ForecastArchive
from tests.support.postgres import throwaway_database, unreachable_reason
from tests.unit.test_grid_response import claim_releases_from_two_runners_and_check
from tests.unit.test_store_archive import (
    HALF_HOUR,
    T0,
    actual,
    forecast,
    open_and_record_from_two_processes,
    open_twice_and_compare,
)
from tests.unit.test_task_runtime_store import round_trip as task_runtime_round_trip

CI = SignalKind.CARBON_INTENSITY


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database created for this session and dropped after it; skips if the server is not reachable."""
    reason = unreachable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_database("gridaware_test") as url:
        yield url


@pytest.fixture
def url(postgres_database: str) -> Iterator[str]:
    """The session database, emptied of the store's tables after each test (the next test migrates from empty)."""
    yield postgres_database
    engine = create_engine(postgres_database)
    with engine.begin() as connection:
        # Every table of the store, whatever migrations added since this test was written.
        names = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'gridaware%'")
        ).scalars()
        for name in names:
            connection.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def test_migrations_from_empty_and_reopen(url):
    tables, differences = open_twice_and_compare(url)
    assert differences == [] and {"gridaware_forecast_point", "gridaware_task_runtime"} <= tables
    engine = create_engine(url)
    with engine.connect() as connection:
        kind = connection.execute(
            text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'gridaware_forecast_vintage' AND column_name = 'issued_at'"
            )
        ).scalar_one()
    engine.dispose()
    assert kind == "timestamp with time zone"


def test_dedupe_revision_and_queries(url):
    with ForecastArchive(url, retention=None) as store:
        for hour in (0, 1, 2):
            vintage = forecast(T0 + timedelta(hours=hour), [100.0 + hour, 90.0])
            store.record(vintage)
            store.record(vintage)
        got = store.vintages("ukci", "GB", CI, issued_from=T0 + timedelta(hours=1))
        assert [(v.issued_at, v.series.values) for v in got] == [
            (T0 + timedelta(hours=1), [101.0, 90.0]),
            (T0 + timedelta(hours=2), [102.0, 90.0]),
        ]
        assert got[0].series.points[0].start.tzinfo is not None
        store.record(actual(T0, [1.0, 2.0]))
        store.record(actual(T0 + HALF_HOUR, [3.0]))
        series = store.actuals("ukci", "GB", CI, T0, T0 + timedelta(hours=1), metric=CarbonMetric.AVERAGE)
        assert series is not None and series.values == [1.0, 3.0]
        result = store.prune(T0 + timedelta(hours=1, minutes=30))
        assert (result.vintages, result.forecast_points, result.actual_points) == (2, 4, 2)
        assert len(store.vintages("ukci", "GB", CI)) == 1


def test_two_processes_open_and_record_at_once(url):
    open_and_record_from_two_processes(url)


def test_grid_events_on_postgres_record_dedupe_and_tail(url):
    from airflow_provider_gridaware.signals.grid_event import EventStatus
    from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
    from tests.support.grid_events import make_event

    with EventStore(url) as events:
        assert events.record(make_event()).outcome is RecordOutcome.NEW
        assert events.record(make_event()).outcome is RecordOutcome.DUPLICATE
        assert events.record(make_event(status=EventStatus.ACTIVE)).outcome is RecordOutcome.STATUS
        assert events.record(make_event(modification_number=3)).outcome is RecordOutcome.MODIFIED
        stored = events.since(0)
        assert [(s.event.modification_number, s.event.status) for s in stored] == [
            (0, EventStatus.FAR),
            (0, EventStatus.ACTIVE),
            (3, EventStatus.FAR),
        ]
        assert stored[0].event.received_at.tzinfo is not None
        assert events.since(stored[1].seq) == stored[2:]


def test_task_runtimes_round_trip(url):
    task_runtime_round_trip(url)


def test_grid_response_claims_are_exclusive_on_postgresql(url):
    """Two stores (two runners) claiming the same pause and release: one wins each, the record is complete."""
    from concurrent.futures import ThreadPoolExecutor

    from airflow_provider_gridaware.planning.grid_response import InFlightWork, PauseStep, TargetKind, WorkState
    from airflow_provider_gridaware.planning.job import PriorityClass
    from airflow_provider_gridaware.planning.response_policy import ResponseAction
    from airflow_provider_gridaware.store.responses import ResponseStore
    from tests.support.grid_events import make_event

    work = InFlightWork("dag/nightly", TargetKind.DAG, PriorityClass.BATCH, None, WorkState.RUNNING, 0.0)
    step = PauseStep(work, make_event(), ResponseAction.STOP, "SIMPLE level 2", hold_no=1, join=False)
    with ResponseStore(url) as one, ResponseStore(url) as two, ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda store: store.claim_pauses([step])[0], (one, two)))
        [hold_id] = [c for c in claims if c is not None]
        assert claims.count(None) == 1
        one.finish_pauses([(hold_id, "paused", {"dag_id": "nightly"})])
        releases = list(pool.map(lambda store: store.claim_releases([(hold_id, 1, "event ended")])[0], (one, two)))
        assert sorted(releases) == [False, True]
        waited = two.finish_releases([(hold_id, "resumed", None)])
        [record] = one.records()
        assert record.resume_result == "resumed" and record.waited_seconds == waited[hold_id] >= 0
        assert record.detail == {"dag_id": "nightly"} and not one.open_holds()


def test_two_runners_claiming_the_same_releases_at_once_win_each_exactly_once_on_postgresql(url):
    claim_releases_from_two_runners_and_check(url)
