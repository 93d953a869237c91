"""GridRestHook against a local server: every auth type, the mappings, and the shared fault matrix."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import pytest

from airflow_provider_gridaware.hooks.rest import GridRestHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceAuthError,
    SourceConfigError,
    SourceUnavailableError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.units import LBS_PER_MWH_TO_G_PER_KWH
from airflow_provider_gridaware.sources import rest
from tests.conftest import api_shape
from tests.support.faults import FAULTS, check_connection_refused, check_fault, check_retry_after_honoured
from tests.support.scripted_server import Reply, ScriptedServer

UTC = timezone.utc
API_KEY = "utility-key-93b7d1f0"
CLIENT_ID = "gridaware:client"
CLIENT_SECRET = "s3cr+t/with=chars"
START = datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
END = datetime(2023, 3, 14, 5, 30, tzinfo=UTC)
FORECAST = "/api/v1/intensity/GB/forecast"
TOKEN_PATH = "/api/oauth/token"
UKCI_EXTRAS = {
    "forecast_path": "v1/intensity/{zone}/forecast?from={start}&to={end}",
    "actual_path": "v1/intensity/{zone}/actual?from={start}&to={end}",
    "records_path": "data",
    "time_field": "from",
    "end_field": "to",
    "value_field": "intensity.forecast",
    "unit": "gCO2/kWh",
}


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    # Access tokens are cached process-wide per connection id: tests must not share them.
    rest.reset_token_cache()
    yield
    rest.reset_token_cache()


@pytest.fixture
def rest_hook(scripted_server, make_connection) -> Callable[..., GridRestHook]:
    def _make(conn_id: str = "rest_test", *, login: str | None = None, password: str | None = None, **extra: Any):
        fields: dict[str, Any] = {"host": f"{scripted_server.url}/api", "extra": extra}
        if login is not None:
            fields["login"] = login
        if password is not None:
            fields["password"] = password
        return GridRestHook(make_connection(conn_id, "gridaware_rest", **fields))

    return _make


def header(request, name: str) -> str | None:
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), None)


def ukci_forecast(hook: GridRestHook):
    return hook.get_forecast("GB", start=START, end=END)


# -- a real shape through the generic mapping ------------------------------------------------------
def test_ukci_shape_through_the_generic_mapping(rest_hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    scripted_server.add(FORECAST, payload)
    series = ukci_forecast(rest_hook(**UKCI_EXTRAS))
    assert series.kind is SignalKind.CARBON_INTENSITY and series.metric is CarbonMetric.AVERAGE
    assert series.series_type is SeriesType.FORECAST and series.issued_at is not None
    assert series.unit == "gCO2eq/kWh" and series.source == "rest_test" and series.zone == "GB"
    assert series.values == [p["intensity"]["forecast"] for p in payload["data"]]
    assert series.points[0].start == datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
    assert series.points[0].end == datetime(2023, 3, 14, 4, 0, tzinfo=UTC)
    (request,) = scripted_server.requests_to(FORECAST)
    assert request.query == {"from": ["2023-03-14T03:30:00Z"], "to": ["2023-03-14T05:30:00Z"]}
    assert header(request, "Authorization") is None


def test_watttime_shape_with_unit_field_and_issue_time(rest_hook, scripted_server):
    payload = api_shape("watttime_v3_forecast_response.json")
    scripted_server.add("/api/v3/forecast", payload)
    hook = rest_hook(
        forecast_path="v3/forecast?region={zone}",
        records_path="data",
        time_field="point_time",
        unit_field="meta.units",
        metric="marginal",
        issued_at_field="meta.generated_at",
    )
    series = hook.get_forecast("CAISO_NORTH")
    assert series.metric is CarbonMetric.MARGINAL and series.unit == "gCO2eq/kWh"
    assert series.issued_at == datetime(2023, 6, 8, tzinfo=UTC)
    assert series.values[0] == pytest.approx(payload["data"][0]["value"] * LBS_PER_MWH_TO_G_PER_KWH)
    # No end field: each point lasts until the next (5 minutes), the last one as long.
    assert all(p.duration == timedelta(minutes=5) for p in series.points)
    assert len(series) == len(payload["data"])
    assert scripted_server.requests_to("/api/v3/forecast")[0].query == {"region": ["CAISO_NORTH"]}


def test_electricity_maps_shape_with_millisecond_iso_times(rest_hook, scripted_server):
    payload = api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    scripted_server.add("/api/carbon-intensity/forecast", payload)
    hook = rest_hook(
        forecast_path="carbon-intensity/forecast?zone={zone}",
        records_path="forecast",
        time_field="datetime",
        value_field="carbonIntensity",
        unit="gCO2eq/kWh",
        issued_at_field="updatedAt",
    )
    series = hook.get_forecast("ES")
    assert series.values == [179, 185, 195]
    assert series.points[1].start == datetime(2022, 1, 2, 1, tzinfo=UTC)
    assert series.issued_at == datetime(2022, 1, 1, 23, 48, tzinfo=UTC)


def test_async_side_gives_the_same_series(rest_hook, scripted_server):
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    scripted_server.add(
        TOKEN_PATH, {"access_token": "tok-async", "token_type": "Bearer", "expires_in": 3600}, method="POST"
    )
    hook = rest_hook(
        login=CLIENT_ID,
        password=CLIENT_SECRET,
        auth_type="oauth2_client_credentials",
        oauth2_url="oauth/token",
        **UKCI_EXTRAS,
    )
    sync = ukci_forecast(hook)
    async_ = asyncio.run(hook.aget_forecast("GB", start=START, end=END))
    assert async_.points == sync.points and len(async_) == 4
    assert len(scripted_server.requests_to(TOKEN_PATH)) == 1


# -- paths -----------------------------------------------------------------------------------------
def test_placeholders_are_url_encoded(rest_hook, scripted_server):
    path = "/api/zones/US%2FCAL%20ISO%2B1/prices"
    scripted_server.add(path, {"points": [{"time": "2023-03-14T03:30:00Z", "value": 42.5}]})
    hook = rest_hook(
        actual_path="zones/{zone}/prices?start={start}&end={end}",
        records_path="points",
        unit="EUR/MWh",
        kind="price",
        period_minutes=30,
    )
    series = hook.get_actuals("US/CAL ISO+1", START, END)
    assert series.values == [42.5] and series.points[0].duration == timedelta(minutes=30)
    assert series.kind is SignalKind.PRICE and series.currency == "EUR" and series.metric is None
    assert scripted_server.requests_to(path)[0].query == {
        "start": ["2023-03-14T03:30:00Z"],
        "end": ["2023-03-14T05:30:00Z"],
    }


def test_actuals_are_trimmed_to_the_requested_range(rest_hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    scripted_server.add("/api/v1/intensity/GB/actual", payload)
    series = rest_hook(**UKCI_EXTRAS).get_actuals("GB", START, START + timedelta(hours=1))
    assert series.series_type is SeriesType.ACTUAL and series.issued_at is None
    assert series.values == [p["intensity"]["forecast"] for p in payload["data"][:2]]


# -- auth ------------------------------------------------------------------------------------------
def test_api_key_goes_in_the_named_header(rest_hook, scripted_server):
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    ukci_forecast(rest_hook(password=API_KEY, auth_type="api_key", key_header="X-Utility-Key", **UKCI_EXTRAS))
    request = scripted_server.requests_to(FORECAST)[0]
    assert header(request, "X-Utility-Key") == API_KEY
    assert header(request, "Authorization") is None


def test_bearer_token(rest_hook, scripted_server):
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    ukci_forecast(rest_hook(password=API_KEY, auth_type="bearer", **UKCI_EXTRAS))
    assert header(scripted_server.requests_to(FORECAST)[0], "Authorization") == f"Bearer {API_KEY}"


def oauth_hook(rest_hook, conn_id: str = "rest_oauth", **extra: Any) -> GridRestHook:
    return rest_hook(
        conn_id,
        login=CLIENT_ID,
        password=CLIENT_SECRET,
        **{
            **UKCI_EXTRAS,
            "auth_type": "oauth2_client_credentials",
            "oauth2_url": "oauth/token",
            "scope": "prices.read",
            **extra,
        },
    )


def token_reply(token: str, expires_in: object = 3600) -> dict[str, object]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}


def test_oauth2_basic_auth_per_rfc6749_and_token_cached_process_wide(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-1"), method="POST")
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    hook = oauth_hook(rest_hook)
    ukci_forecast(hook)
    ukci_forecast(hook)
    ukci_forecast(oauth_hook(rest_hook))  # another hook instance, same connection: same token
    (token_request,) = scripted_server.requests_to(TOKEN_PATH)
    assert token_request.method == "POST"
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["prices.read"]}
    basic = header(token_request, "Authorization")
    assert basic is not None and basic.startswith("Basic ")
    # RFC 6749 2.3.1: id and secret are form-urlencoded before base64.
    assert base64.b64decode(basic[6:]).decode() == "gridaware%3Aclient:s3cr%2Bt%2Fwith%3Dchars"
    data_requests = scripted_server.requests_to(FORECAST)
    assert [header(r, "Authorization") for r in data_requests] == ["Bearer tok-1"] * 3


def test_oauth2_form_client_auth(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-form"), method="POST")
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    ukci_forecast(oauth_hook(rest_hook, client_auth="form"))
    (token_request,) = scripted_server.requests_to(TOKEN_PATH)
    assert header(token_request, "Authorization") is None
    assert parse_qs(token_request.body.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["prices.read"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    assert header(scripted_server.requests_to(FORECAST)[0], "Authorization") == "Bearer tok-form"


def test_oauth2_token_is_renewed_before_it_expires(rest_hook, scripted_server, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(rest.TOKEN_CACHE, "clock", lambda: now[0])
    scripted_server.add(TOKEN_PATH, token_reply("tok-1", "600"), token_reply("tok-2", 600), method="POST")
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    hook = oauth_hook(rest_hook)
    ukci_forecast(hook)
    now[0] += 539  # 600 s minus a 60 s margin: still fresh
    ukci_forecast(hook)
    now[0] += 2  # inside the margin: renewed
    ukci_forecast(hook)
    assert len(scripted_server.requests_to(TOKEN_PATH)) == 2
    assert [header(r, "Authorization") for r in scripted_server.requests_to(FORECAST)] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_oauth2_refreshes_once_on_401(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-1"), token_reply("tok-2"), method="POST")
    scripted_server.add(
        FORECAST, Reply(401, {"error": "token revoked"}), api_shape("ukci_intensity_fw48h_response.json")
    )
    series = ukci_forecast(oauth_hook(rest_hook))
    assert len(series) == 4
    assert len(scripted_server.requests_to(TOKEN_PATH)) == 2
    assert [header(r, "Authorization") for r in scripted_server.requests_to(FORECAST)] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_oauth2_persistent_401_is_an_auth_error_without_secrets(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-first-1234"), token_reply("tok-second-5678"), method="POST")
    scripted_server.add(FORECAST, Reply(401, "rejected Bearer tok-second-5678"))
    with pytest.raises(SourceAuthError, match="HTTP 401") as caught:
        ukci_forecast(oauth_hook(rest_hook))
    message = str(caught.value)
    for secret in ("tok-first-1234", "tok-second-5678", CLIENT_SECRET):
        assert secret not in message, message
    assert len(scripted_server.requests_to(FORECAST)) == 2
    assert len(scripted_server.requests_to(TOKEN_PATH)) == 2


def test_oauth2_refused_client_is_an_auth_error(rest_hook, scripted_server):
    scripted_server.add(
        TOKEN_PATH,
        Reply(400, {"error": "invalid_client", "error_description": f"bad secret {CLIENT_SECRET}"}),
        method="POST",
    )
    with pytest.raises(SourceAuthError, match="invalid_client") as caught:
        ukci_forecast(oauth_hook(rest_hook))
    assert CLIENT_SECRET not in str(caught.value)
    assert scripted_server.requests_to(FORECAST) == []


def test_oauth2_token_response_without_access_token(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, {"token_type": "Bearer"}, method="POST")
    with pytest.raises(MalformedPayloadError, match="'access_token' is missing"):
        ukci_forecast(oauth_hook(rest_hook))


def test_oauth2_token_never_leaks_from_a_failing_data_call(rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-leaky-9999"), method="POST")
    scripted_server.add(FORECAST, Reply(500, "upstream said: Bearer tok-leaky-9999 invalid"))
    with pytest.raises(SourceUnavailableError, match="HTTP 500") as caught:
        ukci_forecast(oauth_hook(rest_hook, max_attempts=2))
    assert "tok-leaky-9999" not in str(caught.value)


# -- mappings --------------------------------------------------------------------------------------
def test_nested_records_path_with_list_index_and_epoch_milliseconds(rest_hook, scripted_server):
    body = {
        "result": [
            {
                "meta": {"unit": "kgCO2/MWh"},
                "values": [
                    {"ts": 1678764600000, "until": 1678766400000, "v": {"avg": 210.5}},
                    {"ts": 1678766400000, "until": 1678768200000, "v": {"avg": 190}},
                ],
            }
        ]
    }
    scripted_server.add("/api/ci", body)
    hook = rest_hook(
        actual_path="ci",
        records_path="result.0.values",
        time_field="ts",
        end_field="until",
        value_field="v.avg",
        unit_field="result.0.meta.unit",
    )
    series = hook.get_actuals("X", datetime(2023, 3, 14, 3, tzinfo=UTC), datetime(2023, 3, 14, 5, tzinfo=UTC))
    assert series.values == [210.5, 190.0]
    assert series.points[0].start == datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
    assert series.points[1].end == datetime(2023, 3, 14, 4, 30, tzinfo=UTC)


def test_epoch_seconds_and_body_as_list(rest_hook, scripted_server):
    scripted_server.add("/api/ci", [{"time": 1678764600, "value": 1}, {"time": 1678766400.0, "value": 2}])
    series = rest_hook(forecast_path="ci", unit="g/kWh").get_forecast("X")
    assert [p.start for p in series.points] == [
        datetime(2023, 3, 14, 3, 30, tzinfo=UTC),
        datetime(2023, 3, 14, 4, 0, tzinfo=UTC),
    ]
    assert series.values == [1, 2]


def test_offset_times_are_converted_to_utc(rest_hook, scripted_server):
    scripted_server.add(
        "/api/ci", [{"time": "2023-03-14T04:30:00+01:00", "value": 1}, {"time": "2023-03-14T05:00+01:00", "value": 2}]
    )
    series = rest_hook(forecast_path="ci", unit="g/kWh").get_forecast("X")
    assert series.start == datetime(2023, 3, 14, 3, 30, tzinfo=UTC)
    assert series.end == datetime(2023, 3, 14, 4, 30, tzinfo=UTC)


def test_naive_times_need_the_timezone_extra(rest_hook, scripted_server):
    scripted_server.add(
        "/api/ci", [{"time": "2023-03-14T04:30:00", "value": 1}, {"time": "2023-03-14T05:00", "value": 2}]
    )
    with pytest.raises(SourceConfigError, match=r"records\[0\]\.time.*no UTC offset.*extra field 'timezone'"):
        rest_hook(forecast_path="ci", unit="g/kWh").get_forecast("X")


def test_naive_times_at_a_fall_back_are_resolved_by_order(rest_hook, scripted_server):
    # Europe/Berlin, 2023-10-29: 02:00-03:00 local happens twice (CEST, then CET).
    records = [
        {"time": "2023-10-29 01:00", "value": 1},
        {"time": "2023-10-29 02:00", "value": 2},
        {"time": "2023-10-29 02:00", "value": 3},
        {"time": "2023-10-29 03:00", "value": 4},
    ]
    scripted_server.add("/api/ci", {"data": records})
    hook = rest_hook(forecast_path="ci", records_path="data", unit="g/kWh", timezone="Europe/Berlin")
    series = hook.get_forecast("DE")
    assert [p.start for p in series.points] == [
        datetime(2023, 10, 28, 23, 0, tzinfo=UTC),
        datetime(2023, 10, 29, 0, 0, tzinfo=UTC),
        datetime(2023, 10, 29, 1, 0, tzinfo=UTC),
        datetime(2023, 10, 29, 2, 0, tzinfo=UTC),
    ]
    assert series.values == [1, 2, 3, 4] and not series.gaps()
    assert all(p.duration == timedelta(hours=1) for p in series.points)


def test_naive_end_times_at_a_fall_back_take_the_first_reading_after_the_start(rest_hook, scripted_server):
    # Europe/London, 2023-10-29: 01:00-02:00 local happens twice (BST, then GMT).
    pairs = [("00:30", "01:00"), ("01:00", "01:30"), ("01:30", "01:00"), ("01:00", "01:30"), ("01:30", "02:00")]
    records = [{"from": f"2023-10-29T{a}", "to": f"2023-10-29T{b}", "v": i} for i, (a, b) in enumerate(pairs)]
    scripted_server.add("/api/ci", records)
    hook = rest_hook(
        forecast_path="ci", time_field="from", end_field="to", value_field="v", unit="g/kWh", timezone="Europe/London"
    )
    series = hook.get_forecast("GB")
    start = datetime(2023, 10, 28, 23, 30, tzinfo=UTC)
    assert [(p.start, p.end) for p in series.points] == [
        (start + timedelta(minutes=30 * i), start + timedelta(minutes=30 * (i + 1))) for i in range(5)
    ]


def test_naive_time_in_the_spring_forward_gap_is_an_error(rest_hook, scripted_server):
    records = [{"time": "2023-03-26T01:30", "value": 1}, {"time": "2023-03-26T02:30", "value": 2}]
    scripted_server.add("/api/ci", records)
    hook = rest_hook(forecast_path="ci", unit="g/kWh", timezone="Europe/Berlin")
    with pytest.raises(
        MalformedPayloadError,
        match=r"records\[1\]\.time: local time '2023-03-26T02:30' does not exist in Europe/Berlin",
    ):
        hook.get_forecast("DE")


def test_a_local_time_three_times_is_an_error(rest_hook, scripted_server):
    records = [{"time": "2023-10-29 02:00", "value": v} for v in (1, 2, 3)]
    scripted_server.add("/api/ci", records)
    hook = rest_hook(forecast_path="ci", unit="g/kWh", timezone="Europe/Berlin", period_minutes=60)
    with pytest.raises(MalformedPayloadError, match=r"records\[2\]\.time.*appears 3 times"):
        hook.get_forecast("DE")


def test_price_in_cents_per_kwh(rest_hook, scripted_server):
    scripted_server.add(
        "/api/p", {"prices": [{"start": "2024-01-01T00:00Z", "ct": 8.5}, {"start": "2024-01-01T01:00Z", "ct": -1.2}]}
    )
    hook = rest_hook(
        forecast_path="p",
        records_path="prices",
        time_field="start",
        value_field="ct",
        kind="price",
        unit="ct/kWh",
        currency="EUR",
    )
    series = hook.get_forecast("X")
    assert series.unit == "EUR/MWh" and series.currency == "EUR"
    assert series.values == pytest.approx([85.0, -12.0])


def test_null_values_are_gaps(rest_hook, scripted_server):
    records = [{"time": f"2024-01-01T0{h}:00Z", "value": v} for h, v in enumerate([1, None, 3])]
    scripted_server.add("/api/ci", records)
    series = rest_hook(forecast_path="ci", unit="g/kWh").get_forecast("X")
    assert series.values == [1, 3]
    assert series.gaps() == [(datetime(2024, 1, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 2, tzinfo=UTC))]


def test_wrong_unit(rest_hook, scripted_server):
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    with pytest.raises(UnknownUnitError, match=r"extra field 'unit'.*unknown carbon-intensity unit 'MW'"):
        ukci_forecast(rest_hook(**{**UKCI_EXTRAS, "unit": "MW"}))


def test_wrong_unit_in_the_body(rest_hook, scripted_server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["meta"]["units"] = "percentile"
    scripted_server.add("/api/v3/forecast", payload)
    hook = rest_hook(forecast_path="v3/forecast", records_path="data", time_field="point_time", unit_field="meta.units")
    with pytest.raises(UnknownUnitError, match=r"unit_field 'meta.units'.*relative index"):
        hook.get_forecast("X")


def test_empty_records(rest_hook, scripted_server):
    scripted_server.add(FORECAST, {"data": []})
    with pytest.raises(NoSignalDataError, match="no records for GB"):
        ukci_forecast(rest_hook(**UKCI_EXTRAS))


def test_nan_value_is_named_with_its_time(rest_hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    payload["data"][1]["intensity"]["forecast"] = "NaN"
    scripted_server.add(FORECAST, payload)
    with pytest.raises(InvalidSignalError, match=r"points\[1\] \(2023-03-14T04:00:00Z\): value is nan"):
        ukci_forecast(rest_hook(**UKCI_EXTRAS))


def test_missing_field_is_named(rest_hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    del payload["data"][2]["intensity"]["forecast"]
    scripted_server.add(FORECAST, payload)
    with pytest.raises(
        MalformedPayloadError,
        match=r"value_field 'intensity.forecast': field 'forecast' is missing at records\[2\].intensity",
    ):
        ukci_forecast(rest_hook(**UKCI_EXTRAS))


def test_records_path_pointing_at_an_object(rest_hook, scripted_server):
    scripted_server.add(FORECAST, {"data": {"from": "x"}})
    with pytest.raises(MalformedPayloadError, match="expected a list of records, got dict"):
        ukci_forecast(rest_hook(**UKCI_EXTRAS))


# -- configuration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"unit": None}, "extra field 'unit' is not set"),
        ({"unit_field": "meta.unit"}, "extra field 'unit_field' and 'unit' are both set"),
        ({"auth_type": "magic"}, "extra field 'auth_type' must be one of"),
        ({"kind": "voltage"}, "extra field 'kind' must be one of"),
        ({"metric": "median"}, "extra field 'metric' must be one of"),
        ({"forecast_path": "https://evil.example/{zone}"}, "extra field 'forecast_path' must be relative"),
        ({"forecast_path": "v1/{region}"}, "extra field 'forecast_path' uses {region}"),
        ({"forecast_path": "v1/{zone"}, "extra field 'forecast_path' has unbalanced braces"),
        ({"forecast_path": None}, "extra field 'forecast_path' is not set: this connection cannot serve forecasts"),
        ({"timezone": "Mars/Olympus"}, "extra field 'timezone' is not an IANA time zone"),
        ({"period_minutes": "soon"}, "extra field 'period_minutes' must be a number"),
        ({"auth_type": "oauth2_client_credentials"}, "extra field 'oauth2_url' is required"),
        ({"auth_type": "api_key"}, "no API key or token"),
        (
            {"auth_type": "api_key", "key_header": "X Key"},
            "extra field 'key_header' is not a valid HTTP header",
        ),
        ({"currency": "euro"}, "extra field 'currency' must be an ISO 4217 code"),
        ({"client_auth": "mtls"}, "extra field 'client_auth' must be one of"),
        ({"records_path": "data..x"}, "extra field 'records_path' is not a dotted path"),
    ],
)
def test_config_errors_name_the_extra_field_before_any_request(rest_hook, scripted_server, extra, fragment):
    extras = {k: v for k, v in {**UKCI_EXTRAS, **extra}.items() if v is not None}
    with pytest.raises(SourceConfigError) as caught:
        ukci_forecast(rest_hook(**extras))
    assert fragment in str(caught.value)
    assert scripted_server.requests == []


def test_a_query_for_another_kind_is_refused(rest_hook):
    with pytest.raises(SourceConfigError, match=r"serves carbon_intensity.*not price"):
        rest_hook(**UKCI_EXTRAS).get_forecast("GB", kind=SignalKind.PRICE)


def test_zone_placeholder_without_a_zone(rest_hook):
    with pytest.raises(SourceConfigError, match=r"uses \{zone\} but no zone was given"):
        rest_hook(**UKCI_EXTRAS).get_forecast("")


# -- faults and secrets ----------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_matrix(fault, rest_hook, scripted_server):
    hook = rest_hook(password=API_KEY, auth_type="api_key", **UKCI_EXTRAS)
    check_fault(fault, server=scripted_server, path=FORECAST, call=lambda: ukci_forecast(hook), secrets=(API_KEY,))


@pytest.mark.parametrize(
    "fault", [f for f in FAULTS if f.name in ("http_403", "http_500", "truncated_json")], ids=lambda f: f.name
)
def test_fault_matrix_with_oauth2(fault, rest_hook, scripted_server):
    scripted_server.add(TOKEN_PATH, token_reply("tok-fault-4242"), method="POST")
    hook = oauth_hook(rest_hook)
    error = check_fault(
        fault,
        server=scripted_server,
        path=FORECAST,
        call=lambda: ukci_forecast(hook),
        secrets=("tok-fault-4242", CLIENT_SECRET),
    )
    assert error is not None


def test_key_echoed_in_a_body_never_reaches_a_message(rest_hook, scripted_server):
    hook = rest_hook(password=API_KEY, auth_type="api_key", **UKCI_EXTRAS)
    scripted_server.add(FORECAST, Reply(401, f"key {API_KEY} is not valid"))
    with pytest.raises(SourceAuthError) as caught:
        ukci_forecast(hook)
    assert API_KEY not in str(caught.value)
    scripted_server.add(FORECAST, Reply(200, f"<html>your key {API_KEY}</html>"))
    with pytest.raises(MalformedPayloadError) as caught_json:
        ukci_forecast(hook)
    assert API_KEY not in str(caught_json.value) and "***" in str(caught_json.value)
    scripted_server.add(FORECAST, {"data": [{"from": API_KEY, "to": "x", "intensity": {"forecast": 1}}]})
    with pytest.raises(MalformedPayloadError) as caught_time:
        ukci_forecast(hook)
    assert API_KEY not in str(caught_time.value)


def test_retry_after_is_honoured(rest_hook, scripted_server):
    series = check_retry_after_honoured(
        scripted_server,
        FORECAST,
        api_shape("ukci_intensity_fw48h_response.json"),
        lambda: ukci_forecast(rest_hook(**UKCI_EXTRAS)),
    )
    assert len(series) == 4


def test_connection_refused(make_connection):
    hook = GridRestHook(
        make_connection(
            "rest_dead", "gridaware_rest", host="http://127.0.0.1:9/api", extra={**UKCI_EXTRAS, "max_attempts": 2}
        )
    )
    check_connection_refused(lambda: ukci_forecast(hook))


def test_token_endpoint_may_live_on_another_host(rest_hook, scripted_server):
    with ScriptedServer() as idp:
        idp.add("/oauth2/v2.0/token", token_reply("tok-idp"), method="POST")
        scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
        hook = oauth_hook(rest_hook, oauth2_url=f"{idp.url}/oauth2/v2.0/token")
        ukci_forecast(hook)
        assert len(idp.requests_to("/oauth2/v2.0/token")) == 1
    assert header(scripted_server.requests_to(FORECAST)[0], "Authorization") == "Bearer tok-idp"


def test_naive_query_bounds_are_refused(rest_hook, scripted_server):
    with pytest.raises(SourceConfigError, match="query start 2023-03-14T03:30:00 has no timezone"):
        rest_hook(**UKCI_EXTRAS).get_forecast("GB", start=START.replace(tzinfo=None))
    assert scripted_server.requests == []


def test_forecast_is_cut_only_to_the_bounds_given(rest_hook, scripted_server):
    payload = api_shape("ukci_intensity_fw48h_response.json")
    scripted_server.add(FORECAST, payload)
    hook = rest_hook(**{**UKCI_EXTRAS, "forecast_path": "v1/intensity/{zone}/forecast"})
    assert len(hook.get_forecast("GB")) == 4
    assert len(hook.get_forecast("GB", start=START + timedelta(minutes=30))) == 3
    assert len(hook.get_forecast("GB", start=START - timedelta(days=1), end=START + timedelta(minutes=30))) == 1
    with pytest.raises(SourceConfigError, match="is empty: end must be after start"):
        hook.get_forecast("GB", end=START)  # the start defaults to now, years after
