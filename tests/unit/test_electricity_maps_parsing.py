"""Pure Electricity Maps pieces: parsing, URLs and the flow driven without a server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.signals import MalformedPayloadError, SeriesType, SourceConfigError
from airflow_provider_gridaware.sources import electricity_maps as em
from airflow_provider_gridaware.sources.flow import SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import HttpResponse
from tests.conftest import api_shape

UTC = timezone.utc
SETTINGS = SourceSettings("em_unit", "https://em.example", password="tok-en-123")


def reply(body: object) -> HttpResponse:
    return HttpResponse(200, {}, json.dumps(body).encode(), "https://em.example/...", "em_unit")


def test_points_skip_nulls_but_keep_the_hour_length():
    entries = [
        {"carbonIntensity": 10, "datetime": "2022-01-01T00:00:00.000Z"},
        {"carbonIntensity": None, "datetime": "2022-01-01T01:00:00.000Z"},
        {"carbonIntensity": 12, "datetime": "2022-01-01T02:00:00.000Z"},
    ]
    points = em.parse_points(entries, where="data")
    assert [(s.hour, e.hour, v) for s, e, v in points] == [(0, 1, 10.0), (2, 3, 12.0)]


def test_parse_forecast_real_shape():
    series = em.parse_forecast(api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json"), zone="ES")
    assert series.series_type is SeriesType.FORECAST
    assert series.issued_at == datetime(2022, 1, 1, 23, 48, tzinfo=UTC)


def test_missing_datetime_is_named():
    with pytest.raises(MalformedPayloadError, match=r"history\[0\]: field 'datetime' is missing"):
        em.parse_actuals({"history": [{"carbonIntensity": 1}]}, zone="ES", field="history")


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.electricitymap.org", "https://api.electricitymap.org/v3/carbon-intensity/latest"),
        ("https://api.electricitymaps.com/v3", "https://api.electricitymaps.com/v3/carbon-intensity/latest"),
    ],
)
def test_api_url(base, url):
    assert em.api_url(SourceSettings("x", base), "carbon-intensity/latest") == url


def test_flow_with_start_uses_past_range_then_stops():
    start = datetime(2023, 1, 1, tzinfo=UTC)
    flow = em.signal_flow(SETTINGS, SignalQuery("DE", forecast=False, start=start, end=start + timedelta(hours=3)))
    request = next(flow)
    assert request.url == "https://em.example/v3/carbon-intensity/past-range"
    assert request.params == {"zone": "DE", "start": "2023-01-01T00:00:00Z", "end": "2023-01-01T03:00:00Z"}
    assert request.headers["auth-token"] == "tok-en-123"
    data = [{"carbonIntensity": 300 + h, "datetime": f"2023-01-01T0{h}:00:00Z"} for h in range(3)]
    with pytest.raises(StopIteration) as done:
        flow.send(reply({"zone": "DE", "data": data}))
    assert done.value.value.values == [300, 301, 302]


def test_empty_range_is_a_config_error():
    start = datetime(2023, 1, 1, tzinfo=UTC)
    with pytest.raises(SourceConfigError, match="range is empty"):
        next(em.signal_flow(SETTINGS, SignalQuery("DE", forecast=False, start=start, end=start)))
