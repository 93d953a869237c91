"""UKCarbonIntensityHook against a local server replaying the real GB Carbon Intensity payload shapes."""

from __future__ import annotations

import asyncio
import copy
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.ukci import UKCarbonIntensityHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceConfigError,
)
from tests.conftest import api_shape
from tests.support.faults import FAULTS, check_connection_refused, check_fault, check_retry_after_honoured

UTC = timezone.utc
START = datetime(2023, 3, 14, 3, 31, tzinfo=UTC)
FW48H = "/ukci/intensity/2023-03-14T03:31Z/fw48h"


@pytest.fixture
def hook(scripted_server, make_connection) -> UKCarbonIntensityHook:
    conn_id = make_connection("ukci_test", "gridaware_ukci", host=f"{scripted_server.url}/ukci")
    return UKCarbonIntensityHook(conn_id)


def test_forecast_from_real_fw48h_shape(hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    scripted_server.add(FW48H, payload)
    series = hook.get_forecast("GB", start=START)
    assert series.kind is SignalKind.CARBON_INTENSITY
    assert series.metric is CarbonMetric.AVERAGE
    assert series.series_type is SeriesType.FORECAST
    assert series.unit == "gCO2eq/kWh"
    assert len(series) == len(payload["data"])
    assert series.points[0].start == datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
    assert series.points[0].end - series.points[0].start == timedelta(minutes=30)
    assert series.values[:3] == [p["intensity"]["forecast"] for p in payload["data"][:3]]
    assert series.issued_at is not None


def test_async_side_gives_the_same_series(hook, scripted_server):
    scripted_server.add(FW48H, api_shape("ukci_intensity_fw48h_response.json"))
    sync = hook.get_forecast("GB", start=START)
    async_ = asyncio.run(hook.aget_forecast("GB", start=START))
    assert async_.points == sync.points


def test_actuals_skip_unsettled_periods(hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    payload["data"][0]["intensity"]["actual"] = 70
    payload["data"][1]["intensity"]["actual"] = 71
    scripted_server.add("/ukci/intensity/2023-03-14T03:30Z/2023-03-14T05:00Z", payload)
    series = hook.get_actuals("GB", START.replace(minute=30), START.replace(hour=5, minute=0))
    assert series.series_type is SeriesType.ACTUAL
    assert series.values == [70, 71]


def test_actuals_longer_than_14_days_are_chunked(hook, scripted_server):
    first = {
        "data": [
            {
                "from": "2023-01-01T00:00Z",
                "to": "2023-01-01T00:30Z",
                "intensity": {"forecast": 1, "actual": 100},
            }
        ]
    }
    second = {
        "data": [
            {
                "from": "2023-01-15T00:00Z",
                "to": "2023-01-15T00:30Z",
                "intensity": {"forecast": 1, "actual": 200},
            }
        ]
    }
    scripted_server.add("/ukci/intensity/2023-01-01T00:00Z/2023-01-15T00:00Z", first)
    scripted_server.add("/ukci/intensity/2023-01-15T00:00Z/2023-01-20T00:00Z", second)
    series = hook.get_actuals("GB", datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 1, 20, tzinfo=UTC))
    assert series.values == [100, 200]


def test_regional_forecast_both_shapes(hook, scripted_server):
    scripted_server.add(
        "/ukci/regional/intensity/2023-03-10T17:01Z/fw48h/regionid/13",
        api_shape("ukci_regional_regionid_response.json"),
    )
    series = hook.get_forecast("GB-13", start=datetime(2023, 3, 10, 17, 1, tzinfo=UTC))
    assert series.zone == "GB-13" and series.values[0] == 210

    from airflow_provider_gridaware.sources.ukci import parse_regional

    real = api_shape("ukci_regional_response.json")
    region = real["data"][0]["regions"][0]["regionid"]
    regional = parse_regional(real, zone=f"GB-{region}", region=region, issued_at=START)
    assert regional.values[0] == real["data"][0]["regions"][0]["intensity"]["forecast"]


def test_regional_actuals_are_refused_clearly(hook):
    with pytest.raises(SourceConfigError, match="forecast-only"):
        hook.get_actuals("GB-3")


@pytest.mark.parametrize("zone", ["DE", "GB-0", "GB-18", "gb-x"])
def test_bad_zone(hook, zone):
    with pytest.raises(SourceConfigError, match="not a GB Carbon Intensity zone"):
        hook.get_forecast(zone)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_matrix(fault, hook, scripted_server):
    check_fault(fault, server=scripted_server, path=FW48H, call=lambda: hook.get_forecast("GB", start=START))


def test_retry_after_is_honoured(hook, scripted_server):
    series = check_retry_after_honoured(
        scripted_server,
        FW48H,
        api_shape("ukci_intensity_fw48h_response.json"),
        lambda: hook.get_forecast("GB", start=START),
    )
    assert len(series) > 0


def test_connection_refused(make_connection):
    hook = UKCarbonIntensityHook(
        make_connection("ukci_dead", "gridaware_ukci", host="http://127.0.0.1:9", extra={"max_attempts": 2})
    )
    check_connection_refused(lambda: hook.get_forecast("GB"))


def test_empty_data(hook, scripted_server):
    scripted_server.add(FW48H, {"data": []})
    with pytest.raises(NoSignalDataError):
        hook.get_forecast("GB", start=START)


def test_null_forecast_value_is_named(hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    payload["data"][2]["intensity"]["forecast"] = None
    scripted_server.add(FW48H, payload)
    with pytest.raises(MalformedPayloadError, match=r"data\[2\]\.intensity\.forecast"):
        hook.get_forecast("GB", start=START)


def test_nan_and_negative_are_rejected_with_their_time(hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    bad = copy.deepcopy(payload)
    bad["data"][1]["intensity"]["forecast"] = "NaN"
    scripted_server.add(FW48H, bad)
    with pytest.raises(InvalidSignalError, match=r"points\[1\] \(2023-03-14T04:00:00Z\): value is nan"):
        hook.get_forecast("GB", start=START)
    bad = copy.deepcopy(payload)
    bad["data"][0]["intensity"]["forecast"] = -5
    scripted_server.add(FW48H, bad)
    with pytest.raises(InvalidSignalError, match="negative"):
        hook.get_forecast("GB", start=START)


def test_dst_boundary_stays_contiguous_in_utc(hook, scripted_server):
    # 2023-03-26: clocks go forward at 01:00 UTC in GB; the API speaks UTC, so half-hours stay contiguous.
    periods = []
    t = datetime(2023, 3, 25, 23, 0, tzinfo=UTC)
    for i in range(8):
        periods.append(
            {
                "from": f"{t:%Y-%m-%dT%H:%M}Z",
                "to": f"{t + timedelta(minutes=30):%Y-%m-%dT%H:%M}Z",
                "intensity": {"forecast": 100 + i, "actual": None},
            }
        )
        t += timedelta(minutes=30)
    # Asked from 23:00 the API would begin with 22:30-23:00: the hook asks from 23:01 for 23:00-23:30 first.
    scripted_server.add("/ukci/intensity/2023-03-25T23:01Z/fw48h", {"data": periods})
    series = hook.get_forecast("GB", start=datetime(2023, 3, 25, 23, 0, tzinfo=UTC))
    assert len(series) == 8 and not series.gaps()
    assert series.end - series.start == timedelta(hours=4)


def test_overlapping_periods_are_rejected(hook, scripted_server):
    periods = [
        {"from": "2023-03-14T03:30Z", "to": "2023-03-14T04:00Z", "intensity": {"forecast": 1}},
        {"from": "2023-03-14T03:45Z", "to": "2023-03-14T04:15Z", "intensity": {"forecast": 2}},
    ]
    scripted_server.add(FW48H, {"data": periods})
    with pytest.raises(InvalidSignalError, match="overlapping"):
        hook.get_forecast("GB", start=START)


def test_naive_time_is_rejected(hook, scripted_server):
    scripted_server.add(
        FW48H,
        {"data": [{"from": "2023-03-14T03:30", "to": "2023-03-14T04:00", "intensity": {"forecast": 1}}]},
    )
    with pytest.raises(MalformedPayloadError, match="no timezone"):
        hook.get_forecast("GB", start=START)


def test_circuit_opens_after_repeated_failures(scripted_server, make_connection):
    from airflow_provider_gridaware.signals import CircuitOpenError
    from tests.support.scripted_server import Reply

    conn_id = make_connection(
        "ukci_breaker",
        "gridaware_ukci",
        host=f"{scripted_server.url}/ukci",
        extra={"max_attempts": 1, "circuit_failure_threshold": 2},
    )
    hook = UKCarbonIntensityHook(conn_id)
    scripted_server.add(FW48H, Reply(500, "down"))
    for _ in range(2):
        with pytest.raises(Exception, match="HTTP 500"):
            hook.get_forecast("GB", start=START)
    with pytest.raises(CircuitOpenError, match="circuit open"):
        hook.get_forecast("GB", start=START)
    assert len(scripted_server.requests_to(FW48H)) == 2


def test_test_connection_reports_failure_without_raising(make_connection):
    hook = UKCarbonIntensityHook(
        make_connection("ukci_tc", "gridaware_ukci", host="http://127.0.0.1:9", extra={"max_attempts": 1})
    )
    ok, message = hook.test_connection()
    assert not ok and "could not connect" in message
