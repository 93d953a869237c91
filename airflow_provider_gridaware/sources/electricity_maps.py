"""Electricity Maps v3: location-based (average) carbon intensity of consumption per zone, in gCO2eq/kWh.

Zones are Electricity Maps zone keys (``DE``, ``ES``, ``US-CAL-CISO`` ...). Every request carries the
API token in the ``auth-token`` header. Values are consumption-based averages, lifecycle emission
factors unless the connection's ``emission_factor_type`` extra says ``direct``.

Endpoints: ``/v3/carbon-intensity/forecast`` (paid plans), ``/history`` (the last 24 hours),
``/past-range`` (any past range, at most 10 days of hourly data per request) and ``/latest``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gridaware.signals.errors import (
    MalformedPayloadError,
    NoSignalDataError,
    SourceConfigError,
)
from airflow_provider_gridaware.signals.models import RawPoint, SignalSeries, build_series, format_time
from airflow_provider_gridaware.signals.units import G_PER_KWH, CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.sources.common import (
    UTC,
    aware,
    ends_from_spacing,
    merge_series,
    parse_number,
    parse_time,
    require,
    utcnow,
    within_range,
)
from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import HttpRequest

SOURCE = "electricity_maps"
DEFAULT_BASE_URL = "https://api.electricitymap.org"
HOURLY = timedelta(hours=1)
# Documented limit of /past-range for hourly data (Electricity Maps' own IF plugin: "at most 10 days").
PAST_RANGE_MAX = timedelta(days=10)
EMISSION_FACTOR_TYPES = ("lifecycle", "direct")
#: ``temporalGranularity`` values of newer API versions, as point lengths.
GRANULARITIES: Mapping[str, timedelta] = {
    "5_minutes": timedelta(minutes=5),
    "15_minutes": timedelta(minutes=15),
    "hourly": HOURLY,
}


# -- configuration ---------------------------------------------------------------------------------------
def headers_for(settings: SourceSettings) -> dict[str, str]:
    """``auth-token`` from the connection's Password; without one no request is sent."""
    token = settings.require_password("Electricity Maps API token (auth-token)")
    return {"auth-token": token, "Accept": "application/json"}


def emission_factor_type(settings: SourceSettings) -> str | None:
    """The ``emission_factor_type`` extra (``lifecycle`` or ``direct``), or ``None`` for the API's default."""
    value = settings.get_str("emission_factor_type")
    if value is None:
        return None
    value = value.strip().lower()
    if value not in EMISSION_FACTOR_TYPES:
        raise SourceConfigError(
            f"emission_factor_type must be one of {', '.join(EMISSION_FACTOR_TYPES)}, not {value!r}",
            source=settings.conn_id,
        )
    return value


def api_url(settings: SourceSettings, path: str) -> str:
    """``path`` under ``/v3``; a Host that already ends in ``/v3`` (as the newer docs write it) is kept."""
    if settings.base_url.rstrip("/").endswith("/v3"):
        return settings.url(path)
    return settings.url(f"v3/{path}")


def _check_zone(zone: str, settings: SourceSettings) -> str:
    key = zone.strip()
    if not key:
        raise SourceConfigError("zone must be an Electricity Maps zone key such as 'DE'", source=settings.conn_id)
    return key


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _request(settings: SourceSettings, path: str, params: Mapping[str, str]) -> HttpRequest:
    wanted = emission_factor_type(settings)
    query = {**params, "emissionFactorType": wanted} if wanted else dict(params)
    return HttpRequest("GET", api_url(settings, path), params=query, headers=headers_for(settings))


# -- parsing -----------------------------------------------------------------------------------------------
def _period_of(entries: list[Any]) -> timedelta | None:
    """The point length stated by newer API versions (``temporalGranularity``), if any."""
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("temporalGranularity") in GRANULARITIES:
            return GRANULARITIES[entry["temporalGranularity"]]
    return None


def parse_points(
    entries: Any, *, where: str, expected_factor_type: str | None = None, period: timedelta | None = None
) -> list[RawPoint]:
    """``[{carbonIntensity, datetime, ...}]`` into ``(start, end, value)``; null intensities become gaps.

    Ends come from the point spacing (hourly when it cannot be seen), computed over every timestamp,
    including those of null values, so a missing hour stays a hole instead of stretching its neighbour.

    :param entries: the list of entries.
    :param where: the entries' place in the payload, for error messages.
    :param expected_factor_type: the ``emissionFactorType`` asked for; entries stating another are refused.
    :param period: the point length, when the response states it.
    """
    if not isinstance(entries, list):
        raise MalformedPayloadError(f"{where}: expected a list, got {type(entries).__name__}", source=SOURCE)
    starts: list[datetime] = []
    raws: list[Any] = []
    for index, entry in enumerate(entries):
        at = f"{where}[{index}]"
        starts.append(
            parse_time(require(entry, "datetime", source=SOURCE, where=at), source=SOURCE, where=f"{at}.datetime")
        )
        raws.append(require(entry, "carbonIntensity", source=SOURCE, where=at))
        stated = entry.get("emissionFactorType")
        if expected_factor_type and stated and stated != expected_factor_type:
            # lifecycle and direct differ by 10-30 %: mixing them would bias every comparison
            raise MalformedPayloadError(
                f"{at}.emissionFactorType is {stated!r}, but {expected_factor_type!r} was asked for", source=SOURCE
            )
    ends = ends_from_spacing(starts, default=HOURLY, period=period or _period_of(entries))
    points: list[RawPoint] = []
    for index, (start, end, raw) in enumerate(zip(starts, ends, raws, strict=True)):
        if raw is None:
            continue  # Electricity Maps has no value for this hour: keep the gap visible
        points.append((start, end, parse_number(raw, source=SOURCE, where=f"{where}[{index}].carbonIntensity")))
    return points


def _series(points: list[RawPoint], *, zone: str, series_type: SeriesType, issued_at: datetime | None) -> SignalSeries:
    if not points:
        raise NoSignalDataError(f"no carbon intensity values for {zone} in the response", source=SOURCE)
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source=SOURCE,
        series_type=series_type,
        unit=G_PER_KWH,
        issued_at=issued_at,
        points=points,
    )


def parse_forecast(payload: Any, *, zone: str, expected_factor_type: str | None = None) -> SignalSeries:
    """``/carbon-intensity/forecast``: ``{zone, forecast: [...], updatedAt}``, issued at ``updatedAt``.

    :param payload: the parsed JSON body.
    :param zone: the zone asked for.
    :param expected_factor_type: the ``emissionFactorType`` asked for, if any.
    """
    issued_at = parse_time(
        require(payload, "updatedAt", source=SOURCE, where="response"), source=SOURCE, where="updatedAt"
    )
    entries = require(payload, "forecast", source=SOURCE, where="response")
    points = parse_points(entries, where="forecast", expected_factor_type=expected_factor_type)
    return _series(points, zone=zone, series_type=SeriesType.FORECAST, issued_at=issued_at)


def parse_actuals(payload: Any, *, zone: str, field: str, expected_factor_type: str | None = None) -> SignalSeries:
    """``/history`` (``{zone, history: [...]}``) or ``/past-range`` (``{data: [...]}``) into actuals.

    :param payload: the parsed JSON body.
    :param zone: the zone asked for.
    :param field: ``history`` or ``data``.
    :param expected_factor_type: the ``emissionFactorType`` asked for, if any.
    """
    entries = require(payload, field, source=SOURCE, where="response")
    points = parse_points(entries, where=field, expected_factor_type=expected_factor_type)
    return _series(points, zone=zone, series_type=SeriesType.ACTUAL, issued_at=None)


def parse_latest(payload: Any, *, zone: str, expected_factor_type: str | None = None) -> SignalSeries:
    """``/carbon-intensity/latest``: one entry, as a one-point actual series of its hour.

    :param payload: the parsed JSON body.
    :param zone: the zone asked for.
    :param expected_factor_type: the ``emissionFactorType`` asked for, if any.
    """
    if not isinstance(payload, Mapping):
        raise MalformedPayloadError(f"response: expected an object, got {type(payload).__name__}", source=SOURCE)
    points = parse_points([payload], where="response", expected_factor_type=expected_factor_type)
    if not points:
        raise NoSignalDataError(f"Electricity Maps has no latest carbon intensity for {zone}", source=SOURCE)
    return _series(points, zone=zone, series_type=SeriesType.ACTUAL, issued_at=None)


# -- the exchanges ---------------------------------------------------------------------------------------------
def signal_flow(settings: SourceSettings, query: SignalQuery, now: datetime | None = None) -> Flow[SignalSeries]:
    """Answer ``query``: the forecast, the last 24 hours, or a past range in 10-day chunks.

    :param settings: the connection settings (Password is the API token).
    :param query: zone, forecast or actuals, and the wanted range.
    :param now: the current time (tests); defaults to the clock.
    """
    now = now or utcnow()
    zone = _check_zone(query.zone, settings)
    factor_type = emission_factor_type(settings)
    headers_for(settings)  # a missing token is a configuration error, found before any request
    if query.kind not in (None, SignalKind.CARBON_INTENSITY):
        raise SourceConfigError(f"Electricity Maps serves no {query.kind.value} signal", source=settings.conn_id)
    start = aware(query.start, what="start", source=settings.conn_id) if query.start else None
    end = aware(query.end, what="end", source=settings.conn_id) if query.end else None
    if query.forecast:
        response = yield _request(settings, "carbon-intensity/forecast", {"zone": zone})
        series = parse_forecast(response.json(), zone=zone, expected_factor_type=factor_type)
        return within_range(series, start, end, what="forecast", source=SOURCE)
    if start is None:
        response = yield _request(settings, "carbon-intensity/history", {"zone": zone})
        series = parse_actuals(response.json(), zone=zone, field="history", expected_factor_type=factor_type)
        return within_range(series, None, end, what="last 24 hours", source=SOURCE)
    end = end or now
    if end <= start:
        raise SourceConfigError(f"range is empty: {format_time(start)} .. {format_time(end)}", source=settings.conn_id)
    pieces: list[SignalSeries] = []
    cursor = start
    while cursor < end:
        piece_end = min(end, cursor + PAST_RANGE_MAX)
        response = yield _request(
            settings, "carbon-intensity/past-range", {"zone": zone, "start": _iso(cursor), "end": _iso(piece_end)}
        )
        # An empty chunk is a gap in the record, not a failure of the whole range.
        with contextlib.suppress(NoSignalDataError):
            pieces.append(parse_actuals(response.json(), zone=zone, field="data", expected_factor_type=factor_type))
        cursor = piece_end
    if not pieces:
        raise NoSignalDataError(
            f"no actual values for {zone} between {format_time(start)} and {format_time(end)}", source=SOURCE
        )
    return within_range(merge_series(pieces), start, end, what="past range", source=SOURCE)


def latest_flow(settings: SourceSettings, zone: str) -> Flow[SignalSeries]:
    """The last known value for ``zone``, from ``/carbon-intensity/latest``.

    :param settings: the connection settings (Password is the API token).
    :param zone: the zone key.
    """
    zone = _check_zone(zone, settings)
    factor_type = emission_factor_type(settings)
    response = yield _request(settings, "carbon-intensity/latest", {"zone": zone})
    return parse_latest(response.json(), zone=zone, expected_factor_type=factor_type)
