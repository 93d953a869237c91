"""ElectricityMapsHook against a local server replaying the real Electricity Maps v3 payload shapes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.electricity_maps import ElectricityMapsHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceAuthError,
    SourceConfigError,
)
from tests.conftest import api_shape
from tests.support.faults import FAULTS, check_connection_refused, check_fault, check_retry_after_honoured
from tests.support.scripted_server import Reply

UTC = timezone.utc
API_TOKEN = "em-Auth-Token-0123456789"
FORECAST = "/em/v3/carbon-intensity/forecast"
HISTORY = "/em/v3/carbon-intensity/history"
PAST_RANGE = "/em/v3/carbon-intensity/past-range"
LATEST = "/em/v3/carbon-intensity/latest"
ZONE = "ES"


@pytest.fixture
def make_hook(scripted_server, make_connection):
    def _make(conn_id: str = "em_test", **extra: object) -> ElectricityMapsHook:
        conn = make_connection(
            conn_id,
            "gridaware_electricitymaps",
            host=f"{scripted_server.url}/em",
            password=API_TOKEN,
            extra=dict(extra),
        )
        return ElectricityMapsHook(conn)

    return _make


@pytest.fixture
def hook(make_hook) -> ElectricityMapsHook:
    return make_hook()


def hourly(start: datetime, values: list[float | None]) -> list[dict]:
    return [
        {"carbonIntensity": v, "datetime": f"{start + timedelta(hours=i):%Y-%m-%dT%H:%M:%S.000Z}"}
        for i, v in enumerate(values)
    ]


# -- happy paths on the real shapes -----------------------------------------------------------------------
def test_forecast_from_real_shape(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    scripted_server.add(FORECAST, payload)
    series = hook.get_forecast(ZONE)
    assert series.kind is SignalKind.CARBON_INTENSITY
    assert series.metric is CarbonMetric.AVERAGE
    assert series.series_type is SeriesType.FORECAST
    assert series.unit == "gCO2eq/kWh"
    assert series.zone == ZONE and series.source == "electricity_maps"
    assert series.issued_at == datetime(2022, 1, 1, 23, 48, tzinfo=UTC)
    assert series.values == [p["carbonIntensity"] for p in payload["forecast"]]
    assert series.values[:3] == [179, 185, 195]
    assert series.points[0].start == datetime(2022, 1, 2, 0, 0, tzinfo=UTC)
    assert all(p.duration == timedelta(hours=1) for p in series.points)
    assert not series.gaps()
    (sent,) = scripted_server.requests_to(FORECAST)
    assert sent.query == {"zone": [ZONE]}
    assert sent.headers["auth-token"] == API_TOKEN


def test_async_side_gives_the_same_series(hook, scripted_server):
    scripted_server.add(FORECAST, api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json"))
    assert asyncio.run(hook.aget_forecast(ZONE)) == hook.get_forecast(ZONE)


def test_forecast_points_take_their_length_from_the_spacing(hook, scripted_server):
    start = datetime(2024, 5, 1, tzinfo=UTC)
    forecast = [
        {"carbonIntensity": 100 + i, "datetime": f"{start + timedelta(minutes=15 * i):%Y-%m-%dT%H:%M:%SZ}"}
        for i in range(4)
    ]
    scripted_server.add(FORECAST, {"zone": ZONE, "forecast": forecast, "updatedAt": "2024-04-30T23:50:00Z"})
    series = hook.get_forecast(ZONE)
    assert [p.duration for p in series.points] == [timedelta(minutes=15)] * 4


def test_history_from_real_shape(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_history_response.json")
    scripted_server.add(HISTORY, payload)
    series = hook.get_actuals(ZONE)
    assert series.series_type is SeriesType.ACTUAL and series.issued_at is None
    assert series.metric is CarbonMetric.AVERAGE
    assert series.values == [p["carbonIntensity"] for p in payload["history"]]
    assert series.start == datetime(2022, 1, 1, tzinfo=UTC)
    assert series.points[0].end == datetime(2022, 1, 1, 1, tzinfo=UTC)
    assert scripted_server.requests_to(HISTORY)[0].query == {"zone": [ZONE]}
    assert scripted_server.requests_to(PAST_RANGE) == []


def test_null_intensity_is_a_gap(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_history_response.json")
    payload["history"][1]["carbonIntensity"] = None
    scripted_server.add(HISTORY, payload)
    series = hook.get_actuals(ZONE)
    assert series.values == [176, 192]
    assert series.gaps() == [(datetime(2022, 1, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, 2, tzinfo=UTC))]


def test_all_null_is_no_data(hook, scripted_server):
    scripted_server.add(HISTORY, {"zone": ZONE, "history": hourly(datetime(2022, 1, 1, tzinfo=UTC), [None, None])})
    with pytest.raises(NoSignalDataError, match="no carbon intensity values for ES"):
        hook.get_actuals(ZONE)


def test_past_range_in_10_day_chunks(hook, scripted_server):
    start, end = datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 1, 26, tzinfo=UTC)
    scripted_server.add(
        PAST_RANGE,
        {"zone": ZONE, "data": hourly(start, [100, 101])},
        # Inclusive ends: the first hour of a chunk may repeat the last of the previous one.
        {"zone": ZONE, "data": hourly(datetime(2023, 1, 11, tzinfo=UTC), [110, 111])},
        {"zone": ZONE, "data": hourly(datetime(2023, 1, 25, 23, tzinfo=UTC), [125])},
    )
    series = hook.get_actuals(ZONE, start, end)
    assert series.values == [100, 101, 110, 111, 125]
    assert len(series.gaps()) == 2
    spans = [(r.query["start"][0], r.query["end"][0]) for r in scripted_server.requests_to(PAST_RANGE)]
    assert spans == [
        ("2023-01-01T00:00:00Z", "2023-01-11T00:00:00Z"),
        ("2023-01-11T00:00:00Z", "2023-01-21T00:00:00Z"),
        ("2023-01-21T00:00:00Z", "2023-01-26T00:00:00Z"),
    ]
    assert all(r.query["zone"] == [ZONE] for r in scripted_server.requests_to(PAST_RANGE))


def test_past_range_repeated_edge_hour_is_kept_once(hook, scripted_server):
    start = datetime(2023, 1, 1, tzinfo=UTC)
    scripted_server.add(
        PAST_RANGE,
        {"data": hourly(datetime(2023, 1, 10, 23, tzinfo=UTC), [7, 8])},
        {"data": hourly(datetime(2023, 1, 11, tzinfo=UTC), [8, 9])},
    )
    series = hook.get_actuals(ZONE, start, datetime(2023, 1, 11, 2, tzinfo=UTC))
    assert series.values == [7, 8, 9]


def test_emission_factor_type_is_sent_and_checked(make_hook, scripted_server):
    hook = make_hook("em_direct", emission_factor_type="direct")
    payload = api_shape("electricitymaps_v3_carbon-intensity_history_response.json")
    for entry in payload["history"]:
        entry["emissionFactorType"] = "direct"
    scripted_server.add(HISTORY, payload)
    assert hook.get_actuals(ZONE).values == [176, 182, 192]
    assert scripted_server.requests_to(HISTORY)[0].query == {"zone": [ZONE], "emissionFactorType": ["direct"]}

    # The real payload says lifecycle: a direct-factor connection must not take it silently.
    scripted_server.add(HISTORY, api_shape("electricitymaps_v3_carbon-intensity_history_response.json"))
    with pytest.raises(MalformedPayloadError, match="'lifecycle', but 'direct' was asked for"):
        hook.get_actuals(ZONE)


def test_unknown_emission_factor_type_is_a_config_error(make_hook, scripted_server):
    with pytest.raises(SourceConfigError, match="lifecycle, direct"):
        make_hook("em_bad_factor", emission_factor_type="operational").get_forecast(ZONE)
    assert scripted_server.requests == []


def test_latest_is_a_one_point_actual(hook, scripted_server):
    scripted_server.add(LATEST, api_shape("electricitymaps_v3_carbon-intensity_latest_response.json"))
    series = hook.get_latest(ZONE)
    assert series.series_type is SeriesType.ACTUAL and series.metric is CarbonMetric.AVERAGE
    assert series.values == [176]
    assert series.points[0].start == datetime(2022, 1, 1, tzinfo=UTC)
    assert series.points[0].end == datetime(2022, 1, 1, 1, tzinfo=UTC)
    assert asyncio.run(hook.aget_latest(ZONE)) == series


def test_latest_with_stated_granularity(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_latest_response.json")
    payload["temporalGranularity"] = "5_minutes"
    scripted_server.add(LATEST, payload)
    assert hook.get_latest(ZONE).points[0].duration == timedelta(minutes=5)


def test_latest_null_is_no_data(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_latest_response.json")
    payload["carbonIntensity"] = None
    scripted_server.add(LATEST, payload)
    with pytest.raises(NoSignalDataError, match="no latest carbon intensity for ES"):
        hook.get_latest(ZONE)


def test_host_with_v3_suffix_is_not_doubled(scripted_server, make_connection):
    conn = make_connection(
        "em_v3host", "gridaware_electricitymaps", host=f"{scripted_server.url}/em/v3", password=API_TOKEN
    )
    scripted_server.add(LATEST, api_shape("electricitymaps_v3_carbon-intensity_latest_response.json"))
    assert ElectricityMapsHook(conn).get_latest(ZONE).values == [176]


def test_test_connection_uses_latest(hook, scripted_server):
    scripted_server.add(
        "/em/v3/carbon-intensity/latest", api_shape("electricitymaps_v3_carbon-intensity_latest_response.json")
    )
    ok, message = hook.test_connection()
    assert ok, message
    assert message == "latest carbon intensity for DE: 176 gCO2eq/kWh"
    assert scripted_server.requests_to(LATEST)[0].query == {"zone": ["DE"]}


# -- configuration ---------------------------------------------------------------------------------------
def test_missing_token_fails_before_any_request(scripted_server, make_connection):
    conn = make_connection("em_notoken", "gridaware_electricitymaps", host=f"{scripted_server.url}/em")
    hook = ElectricityMapsHook(conn)
    with pytest.raises(SourceConfigError, match="no Electricity Maps API token"):
        hook.get_forecast(ZONE)
    with pytest.raises(SourceConfigError, match="no Electricity Maps API token"):
        hook.get_latest(ZONE)
    assert scripted_server.requests == []


def test_only_carbon_intensity_is_served(hook):
    with pytest.raises(SourceConfigError, match="serves carbon_intensity, not carbon_index"):
        hook.get_forecast(ZONE, kind=SignalKind.CARBON_INDEX)


def test_naive_start_is_refused(hook, scripted_server):
    with pytest.raises(SourceConfigError, match="has no timezone"):
        hook.get_actuals(ZONE, datetime(2023, 1, 1))
    assert scripted_server.requests == []


# -- faults -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_matrix(fault, hook, scripted_server):
    check_fault(
        fault, server=scripted_server, path=FORECAST, call=lambda: hook.get_forecast(ZONE), secrets=(API_TOKEN,)
    )


def test_auth_token_never_appears_in_errors(hook, scripted_server):
    scripted_server.add(FORECAST, Reply(401, {"message": f"Invalid auth-token {API_TOKEN}", "status": "error"}))
    with pytest.raises(SourceAuthError, match="HTTP 401") as caught:
        hook.get_forecast(ZONE)
    assert API_TOKEN not in str(caught.value)
    assert "Invalid auth-token ***" in str(caught.value)


def test_retry_after_is_honoured(hook, scripted_server):
    series = check_retry_after_honoured(
        scripted_server,
        FORECAST,
        api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json"),
        lambda: hook.get_forecast(ZONE),
    )
    assert series.values[0] == 179


def test_connection_refused(make_connection):
    conn = make_connection(
        "em_dead", "gridaware_electricitymaps", host="http://127.0.0.1:9", password=API_TOKEN, extra={"max_attempts": 2}
    )
    check_connection_refused(lambda: ElectricityMapsHook(conn).get_forecast(ZONE))


# -- payload edge cases --------------------------------------------------------------------------------------
def test_empty_forecast(hook, scripted_server):
    scripted_server.add(FORECAST, {"zone": ZONE, "forecast": [], "updatedAt": "2022-01-01T23:48:00.000Z"})
    with pytest.raises(NoSignalDataError):
        hook.get_forecast(ZONE)


def test_forecast_without_updated_at_is_malformed(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    del payload["updatedAt"]
    scripted_server.add(FORECAST, payload)
    with pytest.raises(MalformedPayloadError, match="'updatedAt' is missing"):
        hook.get_forecast(ZONE)


def test_nan_and_negative_are_rejected_with_their_time(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    payload["forecast"][1]["carbonIntensity"] = float("nan")
    scripted_server.add(FORECAST, payload)
    with pytest.raises(InvalidSignalError, match=r"points\[1\] \(2022-01-02T01:00:00Z\): value is nan"):
        hook.get_forecast(ZONE)
    payload["forecast"][1]["carbonIntensity"] = -3
    scripted_server.add(FORECAST, payload)
    with pytest.raises(InvalidSignalError, match="negative"):
        hook.get_forecast(ZONE)


def test_text_intensity_is_malformed(hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    payload["forecast"][0]["carbonIntensity"] = "high"
    scripted_server.add(FORECAST, payload)
    with pytest.raises(MalformedPayloadError, match=r"forecast\[0\]\.carbonIntensity"):
        hook.get_forecast(ZONE)


def test_spring_forward_stays_hourly_in_utc(hook, scripted_server):
    # 2023-03-26 01:00 UTC: Spain moves from CET to CEST; the API speaks UTC, so the hours stay contiguous.
    start = datetime(2023, 3, 25, 22, tzinfo=UTC)
    scripted_server.add(
        FORECAST,
        {"zone": ZONE, "forecast": hourly(start, [150 + i for i in range(6)]), "updatedAt": "2023-03-25T21:50:00Z"},
    )
    series = hook.get_forecast(ZONE)
    assert len(series) == 6 and not series.gaps()
    assert series.end - series.start == timedelta(hours=6)


def test_fall_back_repeated_local_hour_is_two_hours(hook, scripted_server):
    # 2023-10-29: 02:00 local happens twice in Spain (CEST then CET); with offsets these are two distinct hours.
    times = [
        "2023-10-29T01:00:00+02:00",
        "2023-10-29T02:00:00+02:00",
        "2023-10-29T02:00:00+01:00",
        "2023-10-29T03:00:00+01:00",
    ]
    forecast = [{"carbonIntensity": 120 + i, "datetime": t} for i, t in enumerate(times)]
    scripted_server.add(FORECAST, {"zone": ZONE, "forecast": forecast, "updatedAt": "2023-10-28T22:50:00Z"})
    series = hook.get_forecast(ZONE)
    assert [p.start.hour for p in series.points] == [23, 0, 1, 2]
    assert not series.gaps() and all(p.duration == timedelta(hours=1) for p in series.points)


def test_duplicated_hour_is_refused(hook, scripted_server):
    forecast = hourly(datetime(2023, 1, 1, tzinfo=UTC), [1, 2])
    forecast.append(dict(forecast[1]))
    scripted_server.add(FORECAST, {"zone": ZONE, "forecast": forecast, "updatedAt": "2022-12-31T23:50:00Z"})
    with pytest.raises(InvalidSignalError, match="overlapping"):
        hook.get_forecast(ZONE)
