"""GridReplayHook: grid signals from CSV traces through an Airflow connection, sync and async, no HTTP."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.hooks.replay import GridReplayHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceConfigError,
)
from airflow_provider_gridaware.sources import replay
from airflow_provider_gridaware.traces.timeline import Anchor, ZoneReplay
from airflow_provider_gridaware.traces.trace import load_traces

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 9, 47, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    replay.clear_cache()
    yield
    replay.clear_cache()


@pytest.fixture(scope="module")
def gb() -> ZoneReplay:
    return ZoneReplay(load_traces().zone("GB"), Anchor.NOW)


def fixed_clock(when: datetime = NOW):
    return lambda: when


def write_csv(path: Path, zone: str = "ZZ", hours: int = 72, start: datetime | None = None) -> Path:
    start = start or datetime(2024, 1, 1, tzinfo=UTC)
    rows = [f"{(start + timedelta(hours=h)).isoformat()},{zone},{100 + (h % 24) * 5}" for h in range(hours)]
    path.write_text("time,zone,value\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def bundled(make_connection) -> GridReplayHook:
    return GridReplayHook(make_connection("replay_gb", "gridaware_replay"), clock=fixed_clock())


def test_bundled_forecast_is_48_hours_issued_at_the_current_half_hour(bundled, gb):
    series = bundled.get_forecast("GB")
    assert series.kind is SignalKind.CARBON_INTENSITY and series.metric is CarbonMetric.AVERAGE
    assert series.series_type is SeriesType.FORECAST and series.source == "replay"
    assert series.issued_at == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert series.start == series.issued_at and len(series) == 96 and not series.gaps()
    assert series.end == series.issued_at + timedelta(hours=48)
    assert series.values[0] == gb.value_at(series.start)  # lead 0: the current half-hour is known
    errors = [abs(p.value - gb.value_at(p.start)) / gb.scale for p in series.points]
    assert 0 < max(errors) < 0.5
    assert bundled.get_forecast("GB").values == series.values  # same issue time, same forecast


def test_bundled_actuals_are_the_settled_past(bundled, gb):
    series = bundled.get_actuals("GB")
    assert series.series_type is SeriesType.ACTUAL and series.issued_at is None
    assert series.end <= NOW and series.end == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    assert len(series) == 48
    assert series.values == [gb.value_at(p.start) for p in series.points]
    ranged = bundled.get_actuals("GB", NOW - timedelta(days=40), NOW - timedelta(days=39))
    assert len(ranged) == 49  # a 30-day trace serves any date (it loops); both edge half-hours overlap the range


def test_async_gives_the_same_series(bundled):
    sync = bundled.get_forecast("GB")
    async_ = asyncio.run(bundled.aget_forecast("GB"))
    assert async_ == sync
    assert asyncio.run(bundled.aget_actuals("GB")) == bundled.get_actuals("GB")


def test_async_load_and_slice_run_off_the_event_loop(tmp_path, make_connection, monkeypatch):
    # The blocking work (reading the CSV, building the series) must run in a worker thread, not the loop.
    big = tmp_path / "big.csv"
    start = datetime(2020, 1, 1, tzinfo=UTC)
    big.write_text(
        "time,zone,value\n"
        + "".join(f"{(start + timedelta(minutes=5 * i)).isoformat()},BIG,{i % 500}\n" for i in range(2000))
    )
    hook = GridReplayHook(make_connection("replay_big", "gridaware_replay", host=str(big)), clock=fixed_clock())
    threads: dict[str, int] = {}
    real_load, real_slice = replay.load_cached, replay.replay_signal

    def load(*args, **kwargs):
        threads["load"] = threading.get_ident()
        return real_load(*args, **kwargs)

    def slice_(*args, **kwargs):
        threads["slice"] = threading.get_ident()
        return real_slice(*args, **kwargs)

    monkeypatch.setattr(replay, "load_cached", load)
    monkeypatch.setattr(replay, "replay_signal", slice_)

    async def scenario() -> tuple[int, object]:
        return threading.get_ident(), await hook.aget_actuals("BIG")

    loop_thread, series = asyncio.run(scenario())
    assert len(series) > 0
    assert threads["load"] != loop_thread and threads["slice"] != loop_thread


def test_perfect_forecast_and_horizon(make_connection, gb):
    conn = make_connection("replay_perfect", "gridaware_replay", extra={"forecast_error": 0, "horizon_hours": 6})
    series = GridReplayHook(conn, clock=fixed_clock()).get_forecast("GB")
    assert len(series) == 12
    assert series.values == [gb.value_at(p.start) for p in series.points]


def test_forecast_window_is_clipped_to_the_horizon(bundled):
    series = bundled.get_forecast("GB", start=NOW + timedelta(hours=10), end=NOW + timedelta(hours=100))
    assert series.start == datetime(2026, 11, 26, 19, 30, tzinfo=UTC)
    assert series.end == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    past = bundled.get_forecast("GB", start=NOW - timedelta(hours=5), end=NOW + timedelta(hours=1))
    assert past.start == series.issued_at  # a forecast never reaches back before its issue time


def test_temp_csv_with_a_zone_and_a_fixed_anchor(tmp_path, make_connection):
    path = write_csv(tmp_path / "trace.csv")
    conn = make_connection(
        "replay_tmp", "gridaware_replay", host=f"{path}:ZZ", extra={"anchor": "fixed", "forecast_error": 0}
    )
    hook = GridReplayHook(conn, clock=fixed_clock(datetime(2024, 1, 2, 10, 15, tzinfo=UTC)))
    forecast = hook.get_forecast("ZZ")
    assert forecast.start == datetime(2024, 1, 2, 10, tzinfo=UTC)
    assert forecast.end == datetime(2024, 1, 4, tzinfo=UTC)  # the trace ends before the 48-hour horizon
    assert forecast.values[:2] == [150.0, 155.0]
    actuals = hook.get_actuals("ZZ", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 3, tzinfo=UTC))
    assert actuals.values == [100.0, 105.0, 110.0]
    late = GridReplayHook(conn, clock=fixed_clock(datetime(2030, 1, 1, tzinfo=UTC)))
    with pytest.raises(NoSignalDataError, match="anchor fixed"):
        late.get_forecast("ZZ")


def test_anchor_now_lines_a_short_trace_up_with_the_present(tmp_path, make_connection):
    path = write_csv(tmp_path / "trace.csv", hours=72)
    conn = make_connection("replay_now", "gridaware_replay", host=str(path), extra={"forecast_error": 0})
    series = GridReplayHook(conn, clock=fixed_clock()).get_forecast("ZZ")
    assert len(series) == 48  # three days loop forever
    assert series.values[0] == 100 + 9 * 5  # 09:00 in the trace, 09:00 now: the time of day is kept


def test_folder_of_traces(tmp_path, make_connection):
    folder = tmp_path / "traces"
    folder.mkdir()
    write_csv(folder / "a.csv", zone="A")
    write_csv(folder / "b.csv", zone="B")
    hook = GridReplayHook(make_connection("replay_dir", "gridaware_replay", host=str(folder)), clock=fixed_clock())
    assert sorted(hook.get_traces().zones) == ["A", "B"]
    assert hook.get_forecast("B").zone == "B"


def test_price_traces(tmp_path, make_connection):
    path = tmp_path / "prices.csv"
    path.write_text("time,DE,FR\n2024-01-01 00:00:00,-5.5,30\n2024-01-01 01:00:00,10,31\n2024-01-01 02:00:00,12,32\n")
    conn = make_connection(
        "replay_price", "gridaware_replay", host=str(path), extra={"kind": "price", "anchor": "fixed"}
    )
    hook = GridReplayHook(conn, clock=fixed_clock(datetime(2024, 1, 1, 3, tzinfo=UTC)))
    series = hook.get_actuals("DE", datetime(2024, 1, 1, tzinfo=UTC))
    assert series.kind is SignalKind.PRICE and series.unit == "EUR/MWh" and series.currency == "EUR"
    assert series.metric is None
    assert series.values == [-5.5, 10.0, 12.0]  # negative prices are kept
    with pytest.raises(SourceConfigError, match="replays price, not carbon_intensity"):
        hook.get_actuals("DE", kind=SignalKind.CARBON_INTENSITY)


def test_units_are_converted(tmp_path, make_connection):
    path = write_csv(tmp_path / "lbs.csv")
    conn = make_connection(
        "replay_lbs",
        "gridaware_replay",
        host=str(path),
        extra={"unit": "lbs/MWh", "metric": "marginal", "anchor": "fixed"},
    )
    hook = GridReplayHook(conn, clock=fixed_clock(datetime(2024, 1, 1, 2, tzinfo=UTC)))
    series = hook.get_actuals("ZZ", datetime(2024, 1, 1, tzinfo=UTC))
    assert series.metric is CarbonMetric.MARGINAL
    assert series.values[0] == pytest.approx(100 * 0.45359237)


def test_missing_file_bad_row_and_unknown_zone_are_typed_errors(tmp_path, make_connection):
    missing = GridReplayHook(make_connection("replay_missing", "gridaware_replay", host=str(tmp_path / "nope.csv")))
    with pytest.raises(SourceConfigError, match="no such file"):
        missing.get_forecast("GB")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,zone,value\n2024-01-01T00:00Z,ZZ,1\n2024-01-01T01:00Z,ZZ,one\n")
    broken = GridReplayHook(make_connection("replay_bad", "gridaware_replay", host=str(bad)))
    with pytest.raises(MalformedPayloadError, match=r"bad\.csv:3: value 'one' is not a number"):
        broken.get_forecast("ZZ")
    with pytest.raises(SourceConfigError, match="no trace for zone 'DE'; known zones: GB"):
        GridReplayHook(make_connection("replay_zone", "gridaware_replay")).get_forecast("DE")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"kind": "weather"}, "'kind' must be carbon_intensity or price"),
        ({"metric": "median"}, "'metric' must be average or marginal"),
        ({"anchor": "tomorrow"}, "'now' or 'fixed'"),
        ({"forecast_error": -1}, "'forecast_error' must be 0 or more"),
        ({"horizon_hours": 0}, "'horizon_hours' must be positive"),
        ({"unit": "furlongs"}, "unknown carbon-intensity unit"),
    ],
)
def test_bad_extras_are_named(make_connection, extra, message):
    hook = GridReplayHook(make_connection("replay_extra", "gridaware_replay", extra=extra))
    with pytest.raises(SourceConfigError, match=message):
        hook.get_forecast("GB")


def test_the_trace_is_cached_until_the_file_changes(tmp_path, make_connection, monkeypatch):
    path = write_csv(tmp_path / "trace.csv")
    hook = GridReplayHook(make_connection("replay_cache", "gridaware_replay", host=str(path)), clock=fixed_clock())
    loads: list[object] = []
    real = replay.load_traces

    def counting(specs):
        loads.append(specs)
        return real(specs)

    monkeypatch.setattr(replay, "load_traces", counting)
    hook.get_forecast("ZZ")
    hook.get_actuals("ZZ")
    asyncio.run(hook.aget_forecast("ZZ"))
    assert len(loads) == 1
    write_csv(path, hours=96)
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    hook.get_forecast("ZZ")
    assert len(loads) == 2


def test_connection_test_button(bundled, make_connection, tmp_path):
    ok, message = bundled.test_connection()
    assert ok and "96 carbon_intensity points for GB" in message
    broken = GridReplayHook(make_connection("replay_tc", "gridaware_replay", host=str(tmp_path / "none.csv")))
    ok, message = broken.test_connection()
    assert not ok and "no such file" in message


def test_without_a_clock_the_trace_lines_up_with_the_provider_clock(make_connection, monkeypatch):
    """On a simulated clock (GRIDAWARE_CLOCK in every component) the forecast is issued at the time the planner
    plans at, not at the wall clock's: a trace with a shape would otherwise be read hours off."""
    from airflow_provider_gridaware.times import ScaledClock

    ahead = ScaledClock(sim_epoch_s=NOW.timestamp(), wall_epoch_s=datetime.now(UTC).timestamp(), speed=60.0)
    monkeypatch.setenv("GRIDAWARE_CLOCK", ahead.spec())
    series = GridReplayHook(make_connection("replay_gb", "gridaware_replay")).get_forecast("GB")
    assert series.issued_at == datetime(2026, 11, 26, 9, 30, tzinfo=UTC)  # NOW's half-hour, not today's
