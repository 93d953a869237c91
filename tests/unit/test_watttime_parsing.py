"""Pure WattTime pieces: parsing, horizon, chunking, the token cache, and the flow driven without a server."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, UnknownUnitError
from airflow_provider_gridaware.signals.units import LBS_PER_MWH_TO_G_PER_KWH
from airflow_provider_gridaware.sources import watttime
from airflow_provider_gridaware.sources.flow import SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import HttpResponse
from tests.conftest import api_shape

UTC = timezone.utc
NOW = datetime(2023, 6, 8, 0, 3, tzinfo=UTC)
SETTINGS = SourceSettings("wt_unit", "https://wt.example", login="user", password="pass-word")


def reply(body: object, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {}, json.dumps(body).encode(), "https://wt.example/...", "wt_unit")


@pytest.fixture(autouse=True)
def _fresh_tokens():
    watttime.TOKENS.clear()
    yield
    watttime.TOKENS.clear()


@pytest.mark.parametrize(
    ("end", "hours"),
    [
        (None, 24),
        (NOW + timedelta(minutes=1), 1),
        (NOW + timedelta(hours=5), 5),
        (NOW + timedelta(hours=5, seconds=1), 6),
        (NOW - timedelta(hours=1), 0),
        (NOW + timedelta(days=5), 72),
    ],
)
def test_horizon_hours(end, hours):
    assert watttime.horizon_hours(end, NOW) == hours


def test_chunks_cover_the_range_without_overlap():
    start = datetime(2023, 1, 1, tzinfo=UTC)
    pieces = watttime.chunks(start, start + timedelta(days=61), timedelta(days=30))
    assert [(b - a).days for a, b in pieces] == [30, 30, 1]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert watttime.chunks(start, start, timedelta(days=1)) == []


def test_parse_forecast_converts_by_meta_units():
    payload = api_shape("watttime_v3_forecast_response.json")
    series = watttime.parse_signal(
        payload,
        zone="CAISO_NORTH",
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.MARGINAL,
        series_type=SeriesType.FORECAST,
        signal_type="co2_moer",
    )
    assert series.values[-1] == pytest.approx(406.147 * LBS_PER_MWH_TO_G_PER_KWH)
    assert series.points[-1].end == datetime(2023, 6, 8, 0, 35, tzinfo=UTC)


def test_signal_index_cannot_be_read_as_an_intensity():
    with pytest.raises(UnknownUnitError, match="carbon_index"):
        watttime.parse_signal(
            api_shape("watttime_v3_signal-index_response.json"),
            zone="CAISO_NORTH",
            kind=SignalKind.CARBON_INTENSITY,
            metric=CarbonMetric.MARGINAL,
            series_type=SeriesType.ACTUAL,
        )


def test_token_cache_expiry_and_drop():
    now = [0.0]
    cache = watttime.TokenCache(ttl=100, clock=lambda: now[0])
    key = ("c", "u", "x")
    cache.put(key, "tok-1")
    now[0] = 99
    assert cache.get(key) == "tok-1"
    now[0] = 100
    assert cache.get(key) is None
    cache.put(key, "tok-2")
    cache.drop(key, "tok-1")  # a stale refusal must not evict the newer token
    assert cache.get(key) == "tok-2"
    cache.drop(key, "tok-2")
    assert cache.get(key) is None


def test_flow_relogs_in_once_on_401_without_any_io():
    seen: list[str] = []
    flow = watttime.signal_flow(SETTINGS, SignalQuery("CAISO_NORTH"), now=NOW, on_token=seen.append)
    login = next(flow)
    assert login.url == "https://wt.example/login" and login.basic_auth == ("user", "pass-word")
    first = flow.send(reply({"token": "tok-old"}))
    assert first.headers["Authorization"] == "Bearer tok-old" and 401 in first.accept_statuses
    relogin = flow.send(reply({"error": "expired"}, status=401))
    assert relogin.url.endswith("/login")
    second = flow.send(reply({"token": "tok-new"}))
    assert second.headers["Authorization"] == "Bearer tok-new" and not second.accept_statuses
    with pytest.raises(StopIteration) as done:
        flow.send(reply(api_shape("watttime_v3_forecast_response.json")))
    assert len(done.value.value) == 6
    assert seen == ["tok-old", "tok-new"]
    assert watttime.TOKENS.get(watttime.token_key(SETTINGS)) == "tok-new"
