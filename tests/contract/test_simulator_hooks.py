"""The real WattTime, Electricity Maps and ENTSO-E hooks read the simulator unchanged, through the connection's host."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceAuthError,
)
from airflow_provider_gridaware.simulator import SimulatorHandle, start_simulator
from tests.conftest import SHARED_DATA

watttime = pytest.importorskip("airflow_provider_gridaware.hooks.watttime")
watttime_source = pytest.importorskip("airflow_provider_gridaware.sources.watttime")
electricity_maps = pytest.importorskip("airflow_provider_gridaware.hooks.electricity_maps")
entsoe = pytest.importorskip("airflow_provider_gridaware.hooks.entsoe")

UTC = timezone.utc
PRICES = SHARED_DATA / "prices" / "elec_price_2019_2020_eur_mwh.csv.gz"
TOKEN = "sim-token"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    price_trace = PRICES if PRICES.is_file() else None
    with start_simulator(price_trace=price_trace, api_token=TOKEN) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _no_faults(sim: SimulatorHandle) -> Iterator[None]:
    yield
    sim.clear_faults()


@pytest.fixture
def wt(sim, make_connection):
    watttime_source.TOKENS.clear()  # tokens are cached per process: start each test logged out
    conn = make_connection("wt_sim", "gridaware_watttime", host=f"{sim.url}/watttime", login="user", password="pw")
    return watttime.WattTimeHook(conn)


@pytest.fixture
def em(sim, make_connection):
    conn = make_connection("em_sim", "gridaware_electricitymaps", host=f"{sim.url}/electricitymaps", password=TOKEN)
    return electricity_maps.ElectricityMapsHook(conn)


@pytest.fixture
def prices(sim, make_connection):
    conn = make_connection("entsoe_sim", "gridaware_entsoe", host=f"{sim.url}/entsoe", password=TOKEN)
    return entsoe.EntsoePriceHook(conn)


def test_watttime_forecast_and_actuals(wt, sim):
    forecast = wt.get_forecast("GB")
    assert forecast.series_type is SeriesType.FORECAST and forecast.metric is CarbonMetric.MARGINAL
    assert forecast.points[0].duration == timedelta(minutes=5)
    assert len(forecast) == 288
    gb = sim.grid.carbon("GB")
    assert forecast.values[0] == pytest.approx(gb.value_at(forecast.start), abs=0.01)  # lbs/MWh round trip
    end = datetime.now(UTC) - timedelta(hours=1)
    actuals = wt.get_actuals("GB", end - timedelta(hours=2), end)
    assert 23 <= len(actuals) <= 24
    assert all(p.value == pytest.approx(gb.value_at(p.start), abs=0.01) for p in actuals.points)


def test_watttime_async_and_region_and_vintages(wt):
    assert asyncio.run(wt.aget_forecast("GB")).zone == "GB"
    assert wt.region_from_location(51.5, -0.1) == "GB"
    # Half-way between two 5-minute issue times, so the window holds exactly six whatever the test's start time.
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    end = two_hours_ago.replace(minute=two_hours_ago.minute // 5 * 5, second=0, microsecond=0) + timedelta(
        minutes=2, seconds=30
    )
    vintages = wt.get_forecast_history("GB", end - timedelta(minutes=30), end, horizon_hours=1)
    assert len(vintages) == 6 and all(len(v) == 12 for v in vintages)


def test_watttime_signal_index_actual(wt):
    index = wt.get_actuals("GB", kind=SignalKind.CARBON_INDEX)
    assert index.kind is SignalKind.CARBON_INDEX and 0 <= index.values[-1] <= 100


def test_watttime_relogs_after_token_revocation(wt, sim):
    wt.get_forecast("GB")
    sim.revoke_tokens()
    assert len(wt.get_forecast("GB")) == 288  # the 401 made the hook log in again


def test_electricity_maps_forecast_actuals_latest(em, sim):
    forecast = em.get_forecast("GB")
    assert forecast.metric is CarbonMetric.AVERAGE and len(forecast) == 24
    history = em.get_actuals("GB")
    assert len(history) == 24
    end = datetime.now(UTC)
    ranged = em.get_actuals("GB", end - timedelta(days=12), end)  # two past-range requests (10-day limit)
    assert len(ranged) >= 12 * 24 - 1 and not ranged.gaps()
    latest = em.get_latest("GB")
    gb = sim.grid.carbon("GB")
    hour_mean = (gb.value_at(latest.start) + gb.value_at(latest.start + timedelta(minutes=30))) / 2
    assert latest.values[0] == round(hour_mean)


def test_electricity_maps_wrong_token_is_an_auth_error(sim, make_connection):
    conn = make_connection("em_bad", "gridaware_electricitymaps", host=f"{sim.url}/electricitymaps", password="nope")
    with pytest.raises(SourceAuthError):
        electricity_maps.ElectricityMapsHook(conn).get_forecast("GB")


def test_entsoe_synthetic_gb_prices(prices, sim):
    series = prices.get_forecast("GB")
    assert series.kind is SignalKind.PRICE and series.unit == "EUR/MWh"
    assert sim.state()["prices"]["synthetic_zones"] == ["GB"]
    assert len(series) >= 4 * 20  # the rest of today in 15-minute products, at least


@pytest.mark.skipif(not PRICES.is_file(), reason="shared price trace not beside the checkout")
def test_entsoe_real_price_trace_by_zone_name_and_eic(prices):
    by_name = prices.get_actuals("DE-LU")
    by_eic = prices.get_actuals("10Y1001A1001A82H")
    assert by_name.values == by_eic.values
    assert len(by_name) >= 90
    assert sorted(set(by_name.values)) != [by_name.values[0]]


def test_entsoe_faults_reach_the_hook(prices, sim):
    sim.add_fault({"target": "entsoe", "mode": "empty", "count": 1})
    with pytest.raises(NoSignalDataError):
        prices.get_actuals("GB")
    sim.add_fault({"target": "entsoe", "mode": "nan", "count": 1})
    with pytest.raises(InvalidSignalError):
        prices.get_actuals("GB")
