"""The forecast archive on SQLite: dedupe, revisions, retention, queries by issue time, concurrent openers."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, func, inspect, select

from airflow_provider_gridaware.signals.models import SignalSeries, build_series
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.store import ForecastArchive, PruneResult
from airflow_provider_gridaware.store.migrate import current_revision, head_revision
from airflow_provider_gridaware.store.schema import actual_point, forecast_point, forecast_vintage, signal

UTC = timezone.utc
T0 = datetime(2026, 3, 1, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)
CI = SignalKind.CARBON_INTENSITY


def forecast(
    issued: datetime, values: list[float], *, start: datetime | None = None, zone: str = "GB", source: str = "ukci"
) -> SignalSeries:
    first = start or issued
    return build_series(
        kind=CI,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source=source,
        series_type=SeriesType.FORECAST,
        unit="gCO2eq/kWh",
        issued_at=issued,
        points=[(first + i * HALF_HOUR, first + (i + 1) * HALF_HOUR, v) for i, v in enumerate(values)],
    )


def actual(start: datetime, values: list[float], *, zone: str = "GB") -> SignalSeries:
    return build_series(
        kind=CI,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="ukci",
        series_type=SeriesType.ACTUAL,
        unit="gCO2eq/kWh",
        points=[(start + i * HALF_HOUR, start + (i + 1) * HALF_HOUR, v) for i, v in enumerate(values)],
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def archive(url):
    with ForecastArchive(url, retention=None) as opened:
        yield opened


def count(url: str, table) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def open_twice_and_compare(url: str) -> tuple[set[str], list[object]]:
    """Open a new store twice; return its tables and the differences between migrations and declared schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from airflow_provider_gridaware.store.schema import VERSION_TABLE, metadata

    ForecastArchive(url).close()
    ForecastArchive(url).close()
    engine = create_engine(url)
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE, "compare_type": True})
        differences = compare_metadata(context, metadata)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    return tables, differences


def test_migrations_create_the_declared_tables_from_empty_and_reopening_is_a_no_op(url):
    tables, differences = open_twice_and_compare(url)
    assert differences == []
    assert tables == {
        "gridaware_alembic_version",
        "gridaware_signal",
        "gridaware_forecast_vintage",
        "gridaware_forecast_point",
        "gridaware_actual_point",
        "gridaware_store_meta",
        "gridaware_grid_event",
        "gridaware_task_runtime",
        "gridaware_relay_delivery",
        "gridaware_grid_response",
        "gridaware_ledger_try",
    }


def test_a_vintage_recorded_twice_is_stored_once(archive, url):
    vintage = forecast(T0, [100, 110, 120])
    archive.record(vintage)
    archive.record(vintage)
    assert (count(url, signal), count(url, forecast_vintage), count(url, forecast_point)) == (1, 1, 3)
    [back] = archive.vintages("ukci", "GB", CI)
    assert back.series == vintage and back.issued_at == T0 and back.issue_time_stated


def test_a_vintage_fetched_over_two_windows_collects_both(archive):
    archive.record(forecast(T0, [100, 110], start=T0))
    archive.record(forecast(T0, [110, 120, 130], start=T0 + HALF_HOUR))
    [back] = archive.vintages("ukci", "GB", CI)
    assert back.series.values == [100, 110, 120, 130]


def test_record_many_mixes_vintages_windows_zones_and_actuals_in_one_go(archive, url):
    archive.record(forecast(T0, [100, 110]))  # already stored: its points are not added twice
    archive.record_many(
        [
            forecast(T0, [110, 120], start=T0 + HALF_HOUR),  # same vintage, overlapping window
            forecast(T0 + timedelta(hours=1), [7.0]),
            forecast(T0, [5.0], zone="FR"),
            actual(T0, [1.0, 2.0]),
            forecast(T0 + timedelta(hours=2), []),  # nothing to store
        ]
    )
    assert [v.series.values for v in archive.vintages("ukci", "GB", CI)] == [[100, 110, 120], [7.0]]
    assert [v.series.values for v in archive.vintages("ukci", "FR", CI)] == [[5.0]]
    back = archive.actuals("ukci", "GB", CI, T0, T0 + timedelta(hours=1))
    assert back is not None and back.values == [1.0, 2.0]
    assert (count(url, forecast_vintage), count(url, forecast_point)) == (3, 5)


def test_vintages_by_issue_time_inclusive_and_oldest_first(archive):
    for hour in (3, 0, 2, 1):
        archive.record(forecast(T0 + timedelta(hours=hour), [float(hour)]))
    archive.record(forecast(T0, [9.0], zone="FR"))
    got = archive.vintages("ukci", "GB", CI, issued_from=T0 + timedelta(hours=1), issued_until=T0 + timedelta(hours=2))
    assert [v.issued_at for v in got] == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert [v.series.values for v in got] == [[1.0], [2.0]]
    assert len(archive.vintages("ukci", "GB", CI)) == 4
    assert archive.vintages("ukci", "GB", CI, metric=CarbonMetric.MARGINAL) == []
    assert archive.vintages("other", "GB", CI) == []


def test_issue_time_flag_and_first_fetch_are_kept(archive):
    fetched = T0 + timedelta(minutes=7)
    archive.record(forecast(T0, [1.0]), fetched_at=fetched, issue_time_stated=False)
    archive.record(forecast(T0, [1.0]), fetched_at=fetched + timedelta(hours=1))
    [back] = archive.vintages("ukci", "GB", CI)
    assert not back.issue_time_stated and back.first_fetched_at == fetched


def test_actuals_revision_latest_value_wins(archive, url):
    clock = Clock(T0)
    with ForecastArchive(url, retention=None, clock=clock) as store:
        store.record(actual(T0, [100, 110, 120]))
        clock.now = T0 + timedelta(hours=1)
        store.record(actual(T0 + HALF_HOUR, [111, 120, 130]))
        series = store.actuals("ukci", "GB", CI, T0, T0 + timedelta(hours=3))
    assert series is not None and series.series_type is SeriesType.ACTUAL
    assert series.values == [100, 111, 120, 130]
    assert count(url, actual_point) == 4
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = dict(connection.execute(select(actual_point.c.value, actual_point.c.recorded_at)).all())
    engine.dispose()
    # The revised value carries the later recording time; the unchanged one keeps the first.
    assert rows[111.0].replace(tzinfo=UTC) == T0 + timedelta(hours=1)
    assert rows[120.0].replace(tzinfo=UTC) == T0


def test_actuals_overlapping_the_range_only_and_none_for_unknown(archive):
    archive.record(actual(T0, [1, 2, 3, 4]))
    series = archive.actuals("ukci", "GB", CI, T0 + timedelta(minutes=45), T0 + timedelta(minutes=61))
    assert series is not None and series.values == [2, 3]
    assert archive.actuals("ukci", "XX", CI, T0, T0 + HALF_HOUR) is None


def test_actuals_ask_for_the_metric_when_two_are_archived(archive):
    archive.record(actual(T0, [1]))
    marginal = actual(T0, [500]).model_copy(update={"metric": CarbonMetric.MARGINAL})
    archive.record(marginal)
    with pytest.raises(ValueError, match="pass metric"):
        archive.actuals("ukci", "GB", CI, T0, T0 + HALF_HOUR)
    series = archive.actuals("ukci", "GB", CI, T0, T0 + HALF_HOUR, metric=CarbonMetric.MARGINAL)
    assert series is not None and series.values == [500]


def test_prices_without_metric_dedupe_too(archive, url):
    price = build_series(
        kind=SignalKind.PRICE,
        zone="DE",
        source="entsoe",
        series_type=SeriesType.FORECAST,
        unit="EUR/MWh",
        currency="EUR",
        issued_at=T0,
        points=[(T0, T0 + HALF_HOUR, -5.0)],
    )
    archive.record(price)
    archive.record(price)
    [back] = archive.vintages("entsoe", "DE", SignalKind.PRICE)
    assert back.series == price and count(url, signal) == 1
    assert [(s.kind, s.metric, s.currency) for s in archive.signals(zone="DE")] == [(SignalKind.PRICE, None, "EUR")]


def test_prune_deletes_old_vintages_and_actuals(archive):
    archive.record(forecast(T0, [1.0, 2.0]))
    archive.record(forecast(T0 + timedelta(days=2), [3.0]))
    archive.record(actual(T0, [1.0, 2.0]))
    archive.record(actual(T0 + timedelta(days=2), [3.0]))
    result = archive.prune(T0 + timedelta(days=1))
    assert result == PruneResult(vintages=1, forecast_points=2, actual_points=2)
    assert [v.issued_at for v in archive.vintages("ukci", "GB", CI)] == [T0 + timedelta(days=2)]
    kept = archive.actuals("ukci", "GB", CI, T0, T0 + timedelta(days=3))
    assert kept is not None and kept.values == [3.0]


def test_default_retention_applies_on_record_at_most_once_a_day(url, mocker):
    clock = Clock(T0)
    with ForecastArchive(url, retention=timedelta(days=90), clock=clock) as store:
        prune = mocker.spy(store, "prune")
        store.record(forecast(T0 - timedelta(days=100), [1.0]))  # already too old: pruned by this very call
        assert prune.call_count == 1 and store.vintages("ukci", "GB", CI) == []
        assert store.last_pruned_at() == T0
        clock.now = T0 + timedelta(hours=23)
        store.record(forecast(T0 - timedelta(days=100), [1.0]))
        assert prune.call_count == 1 and len(store.vintages("ukci", "GB", CI)) == 1
    # Another process (a new instance) sees when the store was last pruned and waits for the day to pass.
    clock.now = T0 + timedelta(hours=23, minutes=30)
    with ForecastArchive(url, retention=timedelta(days=90), clock=clock) as other:
        other.record(forecast(T0, [2.0]))
        assert len(other.vintages("ukci", "GB", CI)) == 2
        clock.now = T0 + timedelta(days=1)
        other.record(forecast(T0, [2.0]))
        assert [v.issued_at for v in other.vintages("ukci", "GB", CI)] == [T0]
        assert other.last_pruned_at() == T0 + timedelta(days=1)


def test_naive_times_are_refused(archive):
    with pytest.raises(Exception, match="no timezone"):
        archive.vintages("ukci", "GB", CI, issued_from=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="retention must be positive"):
        ForecastArchive("sqlite://", retention=timedelta(0))


def test_the_folder_of_a_new_sqlite_store_is_created(tmp_path):
    with ForecastArchive(f"sqlite:///{tmp_path / 'fresh' / 'home' / 'gridaware.db'}") as store:
        assert store.signals() == []
    assert (tmp_path / "fresh" / "home" / "gridaware.db").is_file()


def test_in_memory_store_keeps_data_across_calls():
    with ForecastArchive("sqlite://", retention=None) as store:
        store.record(forecast(T0, [1.0]))
        assert len(store.vintages("ukci", "GB", CI)) == 1


def _open_and_record(url: str, barrier, zone: str) -> None:
    barrier.wait()
    with ForecastArchive(url, retention=None) as store:
        store.record(forecast(T0, [1.0, 2.0], zone=zone))
        store.record(forecast(T0, [1.0, 2.0], zone="SHARED"))


def open_and_record_from_two_processes(url: str) -> None:
    """Two processes open a new store at the same moment and record the same and different vintages."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [context.Process(target=_open_and_record, args=(url, barrier, zone)) for zone in ("A", "B")]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [p.exitcode for p in processes] == [0, 0]
    with ForecastArchive(url, retention=None) as store:
        assert {s.zone for s in store.signals()} == {"A", "B", "SHARED"}
        assert len(store.vintages("ukci", "SHARED", CI)) == 1
    assert count(url, forecast_point) == 6


def test_two_processes_open_and_record_the_same_new_store_at_once(url):
    open_and_record_from_two_processes(url)


def test_the_head_a_store_is_opened_at_is_the_migrations_head():
    from airflow_provider_gridaware.store.migrate import HEAD_REVISION

    assert head_revision() == HEAD_REVISION


def test_opening_a_store_at_head_does_not_import_alembic(tmp_path):
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'store.db'}"
    ForecastArchive(url).close()  # created and migrated here
    code = (
        "import sys\n"
        "from airflow_provider_gridaware.store.responses import ResponseStore\n"
        f"ResponseStore({url!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
