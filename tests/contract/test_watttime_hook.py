"""WattTimeHook against a local server replaying the real WattTime v3 payload shapes."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.watttime import WattTimeHook
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceAuthError,
    SourceConfigError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.units import LBS_PER_MWH_TO_G_PER_KWH
from airflow_provider_gridaware.sources import watttime
from tests.conftest import api_shape
from tests.support.faults import FAULTS, check_connection_refused, check_fault, check_retry_after_honoured
from tests.support.scripted_server import Reply, ScriptedServer

UTC = timezone.utc
USER = "gridaware-user"
PASSWORD = "s3cret-Pa55word"
TOKEN = api_shape("watttime_v3_login_response.json")["token"]
SECOND_TOKEN = "eyJzZWNvbmQiOiJ0b2tlbiJ9.second-token-value"
LOGIN = "/wt/login"
FORECAST = "/wt/v3/forecast"
HISTORICAL = "/wt/v3/historical"
INDEX = "/wt/v3/signal-index"
FORECAST_HISTORY = "/wt/v3/forecast/historical"
REGION_FROM_LOC = "/wt/v3/region-from-loc"
ZONE = "CAISO_NORTH"


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    # Tokens are cached process-wide; each test counts its own logins.
    watttime.TOKENS.clear()
    yield
    watttime.TOKENS.clear()


@pytest.fixture
def make_hook(scripted_server, make_connection):
    def _make(conn_id: str = "watttime_test", **extra: object) -> WattTimeHook:
        conn = make_connection(
            conn_id,
            "gridaware_watttime",
            host=f"{scripted_server.url}/wt",
            login=USER,
            password=PASSWORD,
            extra=dict(extra),
        )
        return WattTimeHook(conn)

    return _make


@pytest.fixture
def hook(make_hook) -> WattTimeHook:
    return make_hook()


@pytest.fixture
def server(scripted_server) -> ScriptedServer:
    """The scripted server with a working login."""
    scripted_server.add(LOGIN, {"token": TOKEN})
    return scripted_server


def g_per_kwh(lbs_per_mwh: float) -> float:
    return lbs_per_mwh * LBS_PER_MWH_TO_G_PER_KWH


# -- happy paths on the real shapes -----------------------------------------------------------------------
def test_forecast_from_real_shape(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    server.add(FORECAST, payload)
    series = hook.get_forecast(ZONE)
    assert series.kind is SignalKind.CARBON_INTENSITY
    assert series.metric is CarbonMetric.MARGINAL
    assert series.series_type is SeriesType.FORECAST
    assert series.unit == "gCO2eq/kWh"
    assert series.zone == ZONE and series.source == "watttime"
    assert series.issued_at == datetime(2023, 6, 8, 0, 0, tzinfo=UTC)
    assert len(series) == len(payload["data"]) == 6
    # 412.406 lbs/MWh is 187.064 g/kWh: the conversion the GSF SDK uses.
    assert series.values[0] == pytest.approx(187.0642, abs=1e-3)
    assert series.values == pytest.approx([g_per_kwh(p["value"]) for p in payload["data"]])
    assert series.points[0].start == datetime(2023, 6, 8, 0, 5, tzinfo=UTC)
    assert series.points[0].end == datetime(2023, 6, 8, 0, 10, tzinfo=UTC)
    assert not series.gaps()

    (sent,) = server.requests_to(FORECAST)
    assert sent.query == {"region": [ZONE], "signal_type": ["co2_moer"], "horizon_hours": ["24"]}
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    (login,) = server.requests_to(LOGIN)
    assert login.headers["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def test_async_side_gives_the_same_series(hook, server):
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    sync = hook.get_forecast(ZONE)
    async_ = asyncio.run(hook.aget_forecast(ZONE))
    assert async_ == sync
    assert len(server.requests_to(LOGIN)) == 1  # the async side reuses the cached token too


@pytest.mark.parametrize(("ahead", "expected"), [(timedelta(hours=6, minutes=-1), "6"), (timedelta(days=9), "72")])
def test_horizon_follows_the_wanted_end(hook, server, ahead, expected):
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    hook.get_forecast(ZONE, end=datetime.now(UTC) + ahead)
    assert server.requests_to(FORECAST)[0].query["horizon_hours"] == [expected]


def test_forecast_is_cut_to_the_wanted_range(hook, server):
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    series = hook.get_forecast(
        ZONE, start=datetime(2023, 6, 8, 0, 10, tzinfo=UTC), end=datetime(2023, 6, 8, 0, 20, tzinfo=UTC)
    )
    assert [p.start.minute for p in series.points] == [10, 15]


def test_average_signal_type_is_labelled_average(make_hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["meta"]["signal_type"] = "co2_aoer"
    server.add(FORECAST, payload)
    series = make_hook("watttime_aoer", signal_type="co2_aoer").get_forecast(ZONE)
    assert series.metric is CarbonMetric.AVERAGE
    assert server.requests_to(FORECAST)[0].query["signal_type"] == ["co2_aoer"]


def test_answer_for_another_signal_type_is_refused(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["meta"]["signal_type"] = "co2_aoer"
    server.add(FORECAST, payload)
    with pytest.raises(MalformedPayloadError, match="asked for signal_type 'co2_moer', got 'co2_aoer'"):
        hook.get_forecast(ZONE)


def test_health_damage_is_a_clear_config_error(make_hook, server):
    hook = make_hook("watttime_health", signal_type="health_damage")
    with pytest.raises(SourceConfigError, match=r"signal_type 'health_damage' .* co2_moer, co2_aoer"):
        hook.get_forecast(ZONE)
    assert server.requests == []


def test_historical_from_real_shape(hook, server):
    payload = api_shape("watttime_v3_historical_response.json")
    server.add(HISTORICAL, payload)
    start, end = datetime(2023, 6, 8, 0, 0, tzinfo=UTC), datetime(2023, 6, 8, 0, 30, tzinfo=UTC)
    series = hook.get_actuals(ZONE, start, end)
    assert series.series_type is SeriesType.ACTUAL and series.issued_at is None
    assert series.metric is CarbonMetric.MARGINAL
    assert series.values == pytest.approx([g_per_kwh(p["value"]) for p in payload["data"]])
    assert series.start == start and series.end == end
    (sent,) = server.requests_to(HISTORICAL)
    assert sent.query["start"] == ["2023-06-08T00:00:00Z"] and sent.query["end"] == ["2023-06-08T00:30:00Z"]


def test_historical_longer_than_30_days_is_chunked_and_merged(hook, server):
    def page(*times_values: tuple[str, float]) -> dict:
        meta = api_shape("watttime_v3_historical_response.json")["meta"]
        return {"data": [{"point_time": t, "value": v} for t, v in times_values], "meta": meta}

    server.add(
        HISTORICAL,
        page(("2023-01-01T00:00:00+00:00", 100.0), ("2023-01-31T00:00:00+00:00", 200.0)),
        # The API's ends are inclusive: the edge point comes again at the start of the next chunk.
        page(("2023-01-31T00:00:00+00:00", 200.0), ("2023-03-01T00:00:00+00:00", 300.0)),
        page(),  # nothing measured in the last chunk yet: a gap, not a failure
    )
    series = hook.get_actuals(ZONE, datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 3, 6, tzinfo=UTC))
    assert series.values == pytest.approx([g_per_kwh(100), g_per_kwh(200), g_per_kwh(300)])
    spans = [(r.query["start"][0], r.query["end"][0]) for r in server.requests_to(HISTORICAL)]
    assert spans == [
        ("2023-01-01T00:00:00Z", "2023-01-31T00:00:00Z"),
        ("2023-01-31T00:00:00Z", "2023-03-02T00:00:00Z"),
        ("2023-03-02T00:00:00Z", "2023-03-06T00:00:00Z"),
    ]
    assert len(server.requests_to(LOGIN)) == 1


def test_signal_index_is_read_as_a_percentile(hook, server):
    payload = api_shape("watttime_v3_signal-index_response.json")
    server.add(INDEX, payload)
    series = hook.get_actuals(ZONE, kind=SignalKind.CARBON_INDEX)
    assert series.kind is SignalKind.CARBON_INDEX
    assert series.unit == "percentile"
    assert series.metric is CarbonMetric.MARGINAL
    assert series.values == [62.0]  # not 62 x 0.4536: an index is no lbs/MWh value
    assert series.points[0].end - series.points[0].start == timedelta(minutes=5)
    assert server.requests_to(INDEX)[0].query == {"region": [ZONE], "signal_type": ["co2_moer"]}


def test_signal_index_in_lbs_is_refused(hook, server):
    payload = api_shape("watttime_v3_signal-index_response.json")
    payload["meta"]["units"] = "lbs_co2_per_mwh"
    server.add(INDEX, payload)
    with pytest.raises(UnknownUnitError, match="percentile"):
        hook.get_actuals(ZONE, kind=SignalKind.CARBON_INDEX)


def test_signal_index_has_no_forecast(hook, server):
    with pytest.raises(SourceConfigError, match="no forecast of its signal index"):
        hook.get_forecast(ZONE, kind=SignalKind.CARBON_INDEX)
    assert server.requests == []


def test_price_is_not_served(hook):
    with pytest.raises(SourceConfigError, match="serves carbon_intensity, carbon_index, not price"):
        hook.get_forecast(ZONE, kind=SignalKind.PRICE)


# -- extra endpoints ---------------------------------------------------------------------------------------
def test_region_from_location_sync_and_async(hook, server):
    server.add(REGION_FROM_LOC, api_shape("watttime_v3_region-from-loc_response.json"))
    assert hook.region_from_location(37.77, -122.42) == "CAISO_NORTH"
    assert asyncio.run(hook.aregion_from_location(37.77, -122.42)) == "CAISO_NORTH"
    sent = server.requests_to(REGION_FROM_LOC)[0]
    assert sent.query == {"latitude": ["37.77"], "longitude": ["-122.42"], "signal_type": ["co2_moer"]}


def test_region_from_location_refuses_impossible_coordinates(hook, server):
    with pytest.raises(SourceConfigError, match="not a latitude/longitude"):
        hook.region_from_location(122.4, 37.7)
    assert server.requests == []


def test_forecast_history_from_real_shape(hook, server):
    server.add(FORECAST_HISTORY, api_shape("watttime_v3_forecast_historical_response.json"))
    start, end = datetime(2023, 6, 8, tzinfo=UTC), datetime(2023, 6, 9, tzinfo=UTC)
    (vintage,) = hook.get_forecast_history(ZONE, start, end)
    assert vintage.series_type is SeriesType.FORECAST
    assert vintage.issued_at == datetime(2023, 6, 8, tzinfo=UTC)
    assert vintage.values == pytest.approx([g_per_kwh(v) for v in (412.406, 413.812, 410.728)])
    assert asyncio.run(hook.aget_forecast_history(ZONE, start, end)) == [vintage]
    assert server.requests_to(FORECAST_HISTORY)[0].query["horizon_hours"] == ["24"]


def test_forecast_history_is_one_series_per_vintage_in_daily_requests(hook, server):
    meta = api_shape("watttime_v3_forecast_historical_response.json")["meta"]

    def vintage(issued: str, first: str, value: float) -> dict:
        return {"generated_at": issued, "forecast": [{"point_time": first, "value": value}]}

    server.add(
        FORECAST_HISTORY,
        {
            "data": [
                vintage("2023-06-08T00:00:00+00:00", "2023-06-08T00:05:00+00:00", 100),
                vintage("2023-06-08T12:00:00+00:00", "2023-06-08T12:05:00+00:00", 110),
                vintage("2023-06-09T00:00:00+00:00", "2023-06-09T00:05:00+00:00", 120),
            ],
            "meta": meta,
        },
        {
            "data": [
                vintage("2023-06-09T00:00:00+00:00", "2023-06-09T00:05:00+00:00", 120),
                vintage("2023-06-09T06:00:00+00:00", "2023-06-09T06:05:00+00:00", 130),
            ],
            "meta": meta,
        },
    )
    vintages = hook.get_forecast_history(
        ZONE, datetime(2023, 6, 8, tzinfo=UTC), datetime(2023, 6, 10, tzinfo=UTC), horizon_hours=1
    )
    assert [v.issued_at.hour for v in vintages if v.issued_at] == [0, 12, 0, 6]
    assert [v.values[0] for v in vintages] == pytest.approx([g_per_kwh(x) for x in (100, 110, 120, 130)])
    sent = server.requests_to(FORECAST_HISTORY)
    assert [(r.query["start"][0], r.query["end"][0]) for r in sent] == [
        ("2023-06-08T00:00:00Z", "2023-06-09T00:00:00Z"),
        ("2023-06-09T00:00:00Z", "2023-06-10T00:00:00Z"),
    ]
    assert sent[0].query["horizon_hours"] == ["1"]


# -- tokens ---------------------------------------------------------------------------------------------------
def test_token_is_reused_across_calls_and_hooks(make_hook, server):
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    first = make_hook()
    first.get_forecast(ZONE)
    first.get_forecast(ZONE)
    make_hook().get_forecast(ZONE)  # a new hook on the same connection, as the next task would build
    assert len(server.requests_to(LOGIN)) == 1
    assert len(server.requests_to(FORECAST)) == 3


def test_token_is_renewed_after_25_minutes(hook, server, monkeypatch):
    server.add(LOGIN, {"token": TOKEN}, {"token": SECOND_TOKEN})
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    now = [1000.0]
    monkeypatch.setattr(watttime.TOKENS, "clock", lambda: now[0])
    hook.get_forecast(ZONE)
    now[0] += 24 * 60
    hook.get_forecast(ZONE)
    assert len(server.requests_to(LOGIN)) == 1
    now[0] += 2 * 60
    hook.get_forecast(ZONE)
    assert len(server.requests_to(LOGIN)) == 2
    assert server.requests_to(FORECAST)[-1].headers["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_401_logs_in_again_once_and_retries(hook, server):
    server.add(LOGIN, {"token": TOKEN}, {"token": SECOND_TOKEN})
    server.add(
        FORECAST, Reply(401, {"error": "token expired"}), Reply(200, api_shape("watttime_v3_forecast_response.json"))
    )
    series = hook.get_forecast(ZONE)
    assert len(series) == 6
    sent = server.requests_to(FORECAST)
    assert [r.headers["Authorization"] for r in sent] == [f"Bearer {TOKEN}", f"Bearer {SECOND_TOKEN}"]
    assert len(server.requests_to(LOGIN)) == 2
    hook.get_forecast(ZONE)  # the renewed token is the cached one now
    assert len(server.requests_to(LOGIN)) == 2


def test_second_401_is_an_auth_error_without_secrets(hook, server):
    server.add(LOGIN, {"token": TOKEN}, {"token": SECOND_TOKEN})
    # A server that echoes what it was sent must not leak it into our messages.
    server.add(FORECAST, Reply(401, f"invalid token {TOKEN} / {SECOND_TOKEN} for {USER}:{PASSWORD}"))
    with pytest.raises(SourceAuthError, match="HTTP 401") as caught:
        hook.get_forecast(ZONE)
    message = str(caught.value)
    for secret in (TOKEN, SECOND_TOKEN, PASSWORD):
        assert secret not in message, message
    assert "***" in message
    assert len(server.requests_to(FORECAST)) == 2  # one retry, never a loop
    assert len(server.requests_to(LOGIN)) == 2


def test_login_refused_is_an_auth_error(hook, scripted_server):
    scripted_server.add(LOGIN, Reply(401, f"bad password {PASSWORD}"))
    with pytest.raises(SourceAuthError, match="login -> HTTP 401") as caught:
        hook.get_forecast(ZONE)
    assert PASSWORD not in str(caught.value)
    assert scripted_server.requests_to(FORECAST) == []


@pytest.mark.parametrize("missing", ["login", "password"])
def test_missing_credentials_fail_before_any_request(scripted_server, make_connection, missing):
    fields = {"login": USER, "password": PASSWORD}
    del fields[missing]
    conn = make_connection("watttime_nocred", "gridaware_watttime", host=f"{scripted_server.url}/wt", **fields)
    with pytest.raises(SourceConfigError, match="Login field" if missing == "login" else "Password field"):
        WattTimeHook(conn).get_forecast(ZONE)
    assert scripted_server.requests == []


def test_token_is_masked_in_airflow_logs(hook, server, monkeypatch):
    masked: list[object] = []
    monkeypatch.setattr("airflow_provider_gridaware.hooks.watttime.mask_secret", masked.append)
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    hook.get_forecast(ZONE)
    hook.get_forecast(ZONE)
    assert masked == [TOKEN]  # once per token, not once per request


# -- faults -----------------------------------------------------------------------------------------------
# A 401 on /v3 triggers one re-login: tested above, not in the generic matrix.
V3_FAULTS = [f for f in FAULTS if f.name != "http_401"]


@pytest.mark.parametrize("fault", V3_FAULTS, ids=lambda f: f.name)
def test_fault_matrix_on_forecast(fault, hook, server):
    check_fault(fault, server=server, path=FORECAST, call=lambda: hook.get_forecast(ZONE), secrets=(PASSWORD, TOKEN))


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_matrix_on_login(fault, hook, scripted_server):
    check_fault(fault, server=scripted_server, path=LOGIN, call=lambda: hook.get_forecast(ZONE), secrets=(PASSWORD,))
    assert scripted_server.requests_to(FORECAST) == []


def test_retry_after_is_honoured(hook, server):
    series = check_retry_after_honoured(
        server, FORECAST, api_shape("watttime_v3_forecast_response.json"), lambda: hook.get_forecast(ZONE)
    )
    assert len(series) == 6


def test_connection_refused(make_connection):
    conn = make_connection(
        "watttime_dead",
        "gridaware_watttime",
        host="http://127.0.0.1:9",
        login=USER,
        password=PASSWORD,
        extra={"max_attempts": 2},
    )
    check_connection_refused(lambda: WattTimeHook(conn).get_forecast(ZONE))


# -- payload edge cases --------------------------------------------------------------------------------------
@pytest.mark.parametrize("units", ["kg_per_furlong", "percentile"])
def test_unknown_or_wrong_units_are_refused(hook, server, units):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["meta"]["units"] = units
    server.add(FORECAST, payload)
    with pytest.raises(UnknownUnitError, match=units):
        hook.get_forecast(ZONE)


def test_units_are_never_assumed(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    del payload["meta"]["units"]
    server.add(FORECAST, payload)
    with pytest.raises(MalformedPayloadError, match="field 'units' is missing"):
        hook.get_forecast(ZONE)


def test_units_in_g_per_kwh_are_not_converted(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["meta"]["units"] = "gCO2/kWh"
    server.add(FORECAST, payload)
    assert hook.get_forecast(ZONE).values[0] == pytest.approx(412.406)


def test_empty_data(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["data"] = []
    server.add(FORECAST, payload)
    with pytest.raises(NoSignalDataError, match="no carbon_intensity values for CAISO_NORTH"):
        hook.get_forecast(ZONE)


def test_forecast_without_generated_at_is_malformed(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    del payload["meta"]["generated_at"]
    server.add(FORECAST, payload)
    with pytest.raises(MalformedPayloadError, match="generated_at"):
        hook.get_forecast(ZONE)


def test_nan_is_rejected_with_its_time(hook, server):
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["data"][2]["value"] = float("nan")  # serialised as the bare NaN token Python's json accepts
    server.add(FORECAST, payload)
    with pytest.raises(InvalidSignalError, match=r"points\[2\] \(2023-06-08T00:15:00Z\): value is nan"):
        hook.get_forecast(ZONE)


def test_null_actual_is_a_gap(hook, server):
    payload = api_shape("watttime_v3_historical_response.json")
    payload["data"][2]["value"] = None
    server.add(HISTORICAL, payload)
    series = hook.get_actuals(ZONE, datetime(2023, 6, 8, tzinfo=UTC), datetime(2023, 6, 8, 0, 30, tzinfo=UTC))
    assert len(series) == 5
    assert series.gaps() == [(datetime(2023, 6, 8, 0, 10, tzinfo=UTC), datetime(2023, 6, 8, 0, 15, tzinfo=UTC))]


def test_dst_boundary_with_local_offsets_stays_contiguous(hook, server):
    # 2023-03-12 10:00 UTC: Pacific clocks jump from 02:00 PST to 03:00 PDT; offsets change mid-series.
    times = ["2023-03-12T01:50:00-08:00", "2023-03-12T01:55:00-08:00", "2023-03-12T03:00:00-07:00"]
    payload = api_shape("watttime_v3_forecast_response.json")
    payload["data"] = [{"point_time": t, "value": 400 + i} for i, t in enumerate(times)]
    server.add(FORECAST, payload)
    series = hook.get_forecast(ZONE)
    assert [p.start for p in series.points] == [
        datetime(2023, 3, 12, 9, 50, tzinfo=UTC),
        datetime(2023, 3, 12, 9, 55, tzinfo=UTC),
        datetime(2023, 3, 12, 10, 0, tzinfo=UTC),
    ]
    assert not series.gaps() and series.end - series.start == timedelta(minutes=15)


def test_naive_query_time_is_refused(hook, server):
    with pytest.raises(SourceConfigError, match="has no timezone"):
        hook.get_actuals(ZONE, datetime(2023, 6, 8), datetime(2023, 6, 9))
    assert server.requests == []


def test_test_connection_reports_the_series(hook, server):
    server.add(FORECAST, api_shape("watttime_v3_forecast_response.json"))
    ok, message = hook.test_connection()
    assert ok, message
    assert message == "6 carbon_intensity points for CAISO_NORTH in gCO2eq/kWh"
