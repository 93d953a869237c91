"""GB Carbon Intensity API (National Grid ESO): national and regional average intensity, half-hourly.

Zones: ``GB`` is national; ``GB-<id>`` (1-17) is a region (1-14 DNO regions, 15 England,
16 Scotland, 17 Wales). Regional data are forecast-only. Values are gCO2/kWh, average.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gridaware.signals.errors import (
    MalformedPayloadError,
    NoSignalDataError,
    SourceConfigError,
    StaleSignalError,
)
from airflow_provider_gridaware.signals.models import SignalSeries, build_series
from airflow_provider_gridaware.signals.units import G_PER_KWH, CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.sources.common import (
    floor_time,
    iso_minute,
    merge_series,
    parse_number,
    parse_time,
    require,
    utcnow,
)
from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import HttpRequest

SOURCE = "ukci"
DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
HALF_HOUR = timedelta(minutes=30)
MAX_RANGE = timedelta(days=14)  # the API refuses longer /intensity/{from}/{to} ranges
MINUTE = timedelta(minutes=1)
_REGION_RE = re.compile(r"^GB-(\d{1,2})$", re.IGNORECASE)


def region_id(zone: str) -> int | None:
    """``None`` for national ``GB``, the region id for ``GB-<id>``; anything else is a config error."""
    if zone.upper() == "GB":
        return None
    match = _REGION_RE.match(zone.strip())
    if not match or not 1 <= int(match.group(1)) <= 17:
        raise SourceConfigError(
            f"zone {zone!r} is not a GB Carbon Intensity zone: use 'GB' (national) or 'GB-1' .. 'GB-17'",
            source=SOURCE,
        )
    return int(match.group(1))


def _period(entry: Any, index: int, where: str) -> tuple[datetime, datetime, Any]:
    at = f"{where}[{index}]"
    start = parse_time(require(entry, "from", source=SOURCE, where=at), source=SOURCE, where=f"{at}.from")
    end = parse_time(require(entry, "to", source=SOURCE, where=at), source=SOURCE, where=f"{at}.to")
    intensity = require(entry, "intensity", source=SOURCE, where=at, kind=dict)
    return start, end, intensity


def parse_periods(
    periods: Any,
    *,
    zone: str,
    series_type: SeriesType,
    issued_at: datetime | None,
    where: str = "data",
) -> SignalSeries:
    """Periods ``[{from, to, intensity: {forecast, actual}}]`` into a series of forecasts or actuals.

    For actuals, periods not yet settled (``actual: null``) are left out, so they show as a gap.
    """
    if not isinstance(periods, list):
        raise MalformedPayloadError(f"{where}: expected a list of periods, got {type(periods).__name__}", source=SOURCE)
    field = "forecast" if series_type is SeriesType.FORECAST else "actual"
    points = []
    for index, entry in enumerate(periods):
        start, end, intensity = _period(entry, index, where)
        raw = intensity.get(field)
        if raw is None:
            if series_type is SeriesType.FORECAST:
                raise MalformedPayloadError(f"{where}[{index}].intensity.forecast is missing", source=SOURCE)
            continue
        points.append((start, end, parse_number(raw, source=SOURCE, where=f"{where}[{index}].intensity.{field}")))
    if not points:
        raise NoSignalDataError(f"no {field} values for {zone} in the response", source=SOURCE)
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


def parse_national(payload: Any, *, zone: str, series_type: SeriesType, issued_at: datetime | None) -> SignalSeries:
    """``/intensity...`` responses: ``{data: [periods]}``."""
    data = require(payload, "data", source=SOURCE, where="response")
    return parse_periods(data, zone=zone, series_type=series_type, issued_at=issued_at)


def parse_regional(payload: Any, *, zone: str, region: int, issued_at: datetime | None) -> SignalSeries:
    """Regional forecasts, in either documented shape.

    ``/regional/intensity/{from}/fw48h/regionid/{id}`` wraps the periods once per region
    (``data: {regionid, data: [periods]}``, a list of one such object in some versions), while
    ``/regional/intensity/{from}/fw48h`` lists every region inside each period
    (``data: [{from, to, regions: [{regionid, intensity}]}]``).
    """
    data = require(payload, "data", source=SOURCE, where="response")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise NoSignalDataError(f"no regional data for {zone}", source=SOURCE)
    if isinstance(data[0], dict) and "regionid" in data[0]:
        for index, block in enumerate(data):
            if block.get("regionid") == region:
                periods = require(block, "data", source=SOURCE, where=f"data[{index}]")
                return parse_periods(
                    periods,
                    zone=zone,
                    series_type=SeriesType.FORECAST,
                    issued_at=issued_at,
                    where=f"data[{index}].data",
                )
        raise NoSignalDataError(f"region {region} is not in the response", source=SOURCE)
    periods = []
    for index, entry in enumerate(data):
        regions = require(entry, "regions", source=SOURCE, where=f"data[{index}]", kind=list)
        match = next((r for r in regions if isinstance(r, dict) and r.get("regionid") == region), None)
        if match is None:
            raise MalformedPayloadError(f"data[{index}].regions has no region {region}", source=SOURCE)
        periods.append({"from": entry.get("from"), "to": entry.get("to"), "intensity": match.get("intensity")})
    return parse_periods(periods, zone=zone, series_type=SeriesType.FORECAST, issued_at=issued_at)


def forecast_from(start: datetime) -> str:
    """The ``{from}`` that makes ``fw48h`` begin with the half-hour under way at ``start``.

    The API answers with the period that ends at or after ``from``, to the minute: asked from 12:00 it
    begins with 11:30-12:00, already over. So a ``start`` in the minute of a half-hour boundary (12:00:00,
    12:00:30) asks from the next minute (12:01); any other minute lies inside the half-hour it names.

    :param start: when the forecast should begin.
    """
    minute = floor_time(start, MINUTE)
    return iso_minute(minute + MINUTE if minute == floor_time(minute, HALF_HOUR) else minute)


def signal_flow(settings: SourceSettings, query: SignalQuery, now: datetime | None = None) -> Flow[SignalSeries]:
    """Forecast: ``fw48h`` from the current half-hour. Actuals: ``/intensity/{from}/{to}`` in 14-day chunks."""
    now = now or utcnow()
    region = region_id(query.zone)
    if query.forecast:
        start = query.start or now
        path = f"intensity/{forecast_from(start)}/fw48h"
        if region is not None:
            path = f"regional/intensity/{forecast_from(start)}/fw48h/regionid/{region}"
        response = yield HttpRequest("GET", settings.url(path), headers={"Accept": "application/json"})
        issued = floor_time(now, HALF_HOUR)  # the API re-issues every half hour and states no issue time
        if region is not None:
            series = parse_regional(response.json(), zone=query.zone, region=region, issued_at=issued)
        else:
            series = parse_national(response.json(), zone=query.zone, series_type=SeriesType.FORECAST, issued_at=issued)
        last_end = series.end
        if last_end is None or last_end <= start:
            # A frozen feed: every period it sends is over before the forecast we asked for begins.
            raise StaleSignalError(
                f"the newest forecast period ends at {iso_minute(last_end or start)}, before the requested start"
                f" {iso_minute(start)}: the source is not updating",
                source=SOURCE,
            )
        # Periods over by ``start`` are not forecast (an API that still sends one must not make it "now").
        return series.between(start, query.end or last_end)
    if region is not None:
        raise SourceConfigError(
            f"regional GB data are forecast-only; ask for actuals of 'GB', not {query.zone!r}", source=SOURCE
        )
    end = query.end or now
    start = query.start or end - timedelta(hours=24)
    chunks: list[SignalSeries] = []
    cursor = start
    while cursor < end:
        chunk_end = min(end, cursor + MAX_RANGE)
        response = yield HttpRequest(
            "GET",
            settings.url(f"intensity/{iso_minute(cursor)}/{iso_minute(chunk_end)}"),
            headers={"Accept": "application/json"},
        )
        # A chunk with nothing settled yet is a gap, not a failure.
        with contextlib.suppress(NoSignalDataError):
            chunks.append(
                parse_national(response.json(), zone=query.zone, series_type=SeriesType.ACTUAL, issued_at=None)
            )
        cursor = chunk_end
    return _concat(chunks, zone=query.zone, start=start, end=end)


def _concat(chunks: list[SignalSeries], *, zone: str, start: datetime, end: datetime) -> SignalSeries:
    if not chunks:
        raise NoSignalDataError(
            f"no actual values for {zone} between {iso_minute(start)} and {iso_minute(end)}", source=SOURCE
        )
    return merge_series(chunks).between(start, end)  # chunk edges repeat one half-hour
