"""The real UKCarbonIntensityHook reading the simulator: forecasts, actuals, regions, and every fault mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.ukci import UKCarbonIntensityHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    GridSignalError,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    RateLimitedError,
    SeriesType,
    SourceRequestError,
    SourceUnavailableError,
    StaleSignalError,
)
from airflow_provider_gridaware.simulator import SimulatorHandle, start_simulator
from airflow_provider_gridaware.traces.trace import load_traces

UTC = timezone.utc
HALF_HOUR = timedelta(minutes=30)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with start_simulator() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _no_faults(sim: SimulatorHandle) -> Iterator[None]:
    yield
    sim.clear_faults()


@pytest.fixture
def hook(sim, make_connection) -> UKCarbonIntensityHook:
    conn_id = make_connection("ukci_sim", "gridaware_ukci", host=f"{sim.url}/ukci", extra={"max_attempts": 2})
    return UKCarbonIntensityHook(conn_id)


def test_forecast_is_48_hours_of_the_replayed_trace(hook, sim):
    before = datetime.now(UTC)
    series = hook.get_forecast("GB")
    after = datetime.now(UTC)
    assert series.series_type is SeriesType.FORECAST
    assert series.metric is CarbonMetric.AVERAGE
    assert len(series) == 96 and not series.gaps()
    assert series.points[0].duration == HALF_HOUR
    assert before - HALF_HOUR < series.start <= after  # the period under way when it was asked
    # The first period is known (lead 0): it is exactly the bundled trace at the same time of day.
    gb = sim.grid.carbon("GB")
    assert series.values[0] == round(gb.value_at(series.start))


def test_async_forecast_agrees_with_sync(hook, sim):
    # Mid-way through a half-hour, so both calls see the same issue time (and so the same forecast).
    start = datetime.now(UTC).replace(minute=10, second=0, microsecond=0)
    try:
        sim.set_clock(now=start)
        sync = hook.get_forecast("GB", start=start)
        async_ = asyncio.run(hook.aget_forecast("GB", start=start))
    finally:
        sim.set_clock(now=datetime.now(UTC))
    assert async_.points == sync.points


def test_actuals_are_the_trace_values(hook, sim):
    end = datetime.now(UTC)
    start = end - timedelta(hours=6)
    series = hook.get_actuals("GB", start, end)
    assert series.series_type is SeriesType.ACTUAL
    assert 12 <= len(series) <= 13
    gb = sim.grid.carbon("GB")
    for point in series.points:
        assert point.value == round(gb.value_at(point.start))


def test_actuals_over_more_than_14_days_are_chunked_and_merged(hook, sim):
    end = datetime.now(UTC)
    series = hook.get_actuals("GB", end - timedelta(days=20), end)
    assert len(series) >= 20 * 48 - 1
    assert not series.gaps()


def test_regional_forecast_is_served(hook):
    series = hook.get_forecast("GB-1")
    national = hook.get_forecast("GB")
    assert len(series) == 96
    assert series.zone == "GB-1"
    assert sum(series.values) < sum(national.values) * 0.2  # North Scotland is mostly wind and hydro


def test_forecast_errors_grow_but_stay_modest(hook, sim):
    series = hook.get_forecast("GB")
    gb = sim.grid.carbon("GB")
    errors = [abs(p.value - gb.value_at(p.start)) / gb.scale for p in series.points]
    assert max(errors[:2]) <= 0.02
    assert max(errors) < 0.5


def test_setting_the_clock_moves_what_is_served(hook, sim):
    later = datetime.now(UTC) + timedelta(days=3)
    try:
        sim.set_clock(now=later)
        series = hook.get_forecast("GB", start=later)
        assert series.start <= later < series.start + HALF_HOUR
        assert series.issued_at is not None
    finally:
        sim.set_clock(now=datetime.now(UTC))


def test_request_counts_are_reported(hook, sim):
    before = sim.state()["requests"].get("ukci", 0)
    hook.get_forecast("GB")
    assert sim.state()["requests"]["ukci"] == before + 1


FAULT_CASES = [
    ("timeout", {"delay": 5}, SourceUnavailableError, "no response within"),
    ("error", {}, SourceUnavailableError, "HTTP 500"),
    ("error", {"status": 503}, SourceUnavailableError, "HTTP 503"),
    ("error", {"status": 404}, SourceRequestError, "HTTP 404"),
    ("rate_limit", {"retry_after": 3600}, RateLimitedError, "HTTP 429"),
    ("malformed", {}, MalformedPayloadError, "not valid JSON"),
    ("stale", {"stale_hours": 6}, StaleSignalError, "not updating"),
    ("empty", {}, NoSignalDataError, "no forecast values"),
    ("nan", {}, InvalidSignalError, "value is nan"),
]


@pytest.mark.parametrize(
    ("mode", "fields", "error", "message"), FAULT_CASES, ids=[f"{c[0]}{c[1]}" for c in FAULT_CASES]
)
def test_each_fault_mode_gives_its_typed_error(hook, sim, mode, fields, error, message):
    sim.add_fault({"target": "ukci", "mode": mode, **fields})
    started = time.monotonic()
    with pytest.raises(error, match=message) as caught:
        hook.get_forecast("GB")
    assert isinstance(caught.value, GridSignalError)
    assert time.monotonic() - started < 15


def test_rate_limit_with_a_short_retry_after_is_waited_out(hook, sim):
    sim.add_fault({"target": "ukci", "mode": "rate_limit", "retry_after": 1, "count": 1})
    started = time.monotonic()
    series = hook.get_forecast("GB")
    assert time.monotonic() - started >= 0.9
    assert len(series) == 96


def test_fault_with_a_count_clears_itself(hook, sim):
    sim.add_fault({"target": "ukci", "mode": "error", "count": 1})
    assert len(hook.get_forecast("GB")) == 96  # the first attempt failed, the retry succeeded
    assert sim.state()["faults"] == []


def test_fault_on_another_target_or_path_leaves_ukci_alone(hook, sim):
    sim.add_fault({"target": "watttime", "mode": "error"}, {"target": "ukci", "mode": "error", "path": "/regional"})
    assert len(hook.get_forecast("GB")) == 96
    with pytest.raises(SourceUnavailableError):
        hook.get_forecast("GB-3")


def test_short_timeout_fault_only_slows_the_answer(hook, sim):
    sim.add_fault({"target": "*", "mode": "timeout", "delay": 0.5, "count": 1})
    started = time.monotonic()
    assert len(hook.get_forecast("GB")) == 96
    assert time.monotonic() - started >= 0.45


def test_fixed_anchor_serves_the_trace_dates(make_connection):
    gb = load_traces().zone("GB")
    start = gb.start + timedelta(days=2)
    with start_simulator(anchor="fixed", now=start, forecast_error=0) as sim:
        conn = make_connection("ukci_fixed", "gridaware_ukci", host=f"{sim.url}/ukci")
        hook = UKCarbonIntensityHook(conn)
        series = hook.get_forecast("GB", start=start)
        assert series.start == start
        assert series.values == [gb.value_at(p.start) for p in series.points]
        actual = hook.get_actuals("GB", start - timedelta(hours=2), start)
        assert actual.values == [gb.value_at(p.start) for p in actual.points]
        # Before the trace begins there is nothing to replay.
        with pytest.raises(NoSignalDataError):
            hook.get_actuals("GB", gb.start - timedelta(days=3), gb.start - timedelta(days=2))


# -- the API's period rule: an answer for `from` begins with the period that ends at or after it ---------------
def _boundary() -> datetime:
    """A half-hour boundary tomorrow, so the simulator's clock and the asked time agree by construction."""
    return (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("asked_offset", "first_from"),
    [
        (timedelta(0), timedelta(minutes=-30)),  # asked from 12:00: 11:30-12:00, the period that ended then
        (timedelta(minutes=1), timedelta(0)),
        (timedelta(minutes=29), timedelta(0)),
        (timedelta(minutes=30), timedelta(0)),  # 12:30 ends 12:00-12:30
    ],
    ids=["at_00", "at_01", "at_29", "at_30"],
)
@pytest.mark.parametrize("path", ["/ukci/intensity/{from}/fw48h", "/ukci/regional/intensity/{from}/fw48h/regionid/3"])
def test_simulator_begins_with_the_period_ending_at_or_after_from(sim, path, asked_offset, first_from):
    import requests

    boundary = _boundary()
    asked = boundary + asked_offset
    body = requests.get(sim.url + path.format(**{"from": f"{asked:%Y-%m-%dT%H:%MZ}"}), timeout=10).json()
    periods = body["data"][0]["data"] if "regional" in path else body["data"]
    assert len(periods) == 96
    assert periods[0]["from"] == f"{boundary + first_from:%Y-%m-%dT%H:%MZ}"


@pytest.mark.parametrize(
    "offset",
    [timedelta(0), timedelta(minutes=30), timedelta(seconds=30), timedelta(minutes=30, seconds=30)],
    ids=["at_00", "at_30", "at_00_30", "at_30_30"],
)
@pytest.mark.parametrize("zone", ["GB", "GB-3"])
def test_forecast_at_a_half_hour_boundary_starts_with_the_current_half_hour(hook, sim, zone, offset):
    asked = _boundary() + offset
    current = asked.replace(second=0) - timedelta(minutes=asked.minute % 30)
    try:
        sim.set_clock(now=asked)
        series = hook.get_forecast(zone, start=asked)
        async_series = asyncio.run(hook.aget_forecast(zone, start=asked))
    finally:
        sim.set_clock(now=datetime.now(UTC))
    for got in (series, async_series):
        assert got.start == current, f"asked at {asked:%H:%M:%S}, first period starts {got.start:%H:%M}"
        assert len(got) == 96 and not got.gaps()
