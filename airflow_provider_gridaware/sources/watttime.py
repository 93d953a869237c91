"""WattTime v3: marginal (MOER) or average (AOER) emissions per region, and its relative 0-100 signal index.

Zones are WattTime regions (``CAISO_NORTH``, ``PJM_DC`` ...). Every ``/v3`` call carries a bearer token
obtained from ``GET /login`` with HTTP Basic auth. Tokens live about 30 minutes, so they are cached
process-wide per (connection, base URL, user) and reused for 25 minutes; a ``401`` on a ``/v3`` call
logs in again once and retries that call once.

Values come in the unit named by ``meta.units`` (``lbs_co2_per_mwh`` for MOER/AOER) and are converted
to gCO2eq/kWh; ``/v3/signal-index`` values are percentiles and become a ``carbon_index`` series.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gridaware.signals.errors import (
    MalformedPayloadError,
    NoSignalDataError,
    SourceConfigError,
)
from airflow_provider_gridaware.signals.models import RawPoint, SignalSeries, build_series, format_time
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.sources.common import (
    UTC,
    aware,
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

log = logging.getLogger(__name__)

SOURCE = "watttime"
DEFAULT_BASE_URL = "https://api.watttime.org"
DEFAULT_SIGNAL_TYPE = "co2_moer"
#: which carbon question each supported ``signal_type`` answers.
SIGNAL_METRICS: Mapping[str, CarbonMetric] = {
    "co2_moer": CarbonMetric.MARGINAL,
    "co2_aoer": CarbonMetric.AVERAGE,
}
TOKEN_REUSE_SECONDS = 25 * 60  # tokens live ~30 min; leave a margin for clock skew and long flows
DEFAULT_HORIZON_HOURS = 24
MAX_HORIZON_HOURS = 72
HISTORICAL_CHUNK = timedelta(days=30)  # the API caps /v3/historical at ~32 days; the official client uses 30
FORECAST_HISTORY_CHUNK = timedelta(days=1)  # as the official client: vintages are large (288 points each)
_ACCEPT = {"Accept": "application/json"}

#: called with every token a flow is about to send, so the caller can redact and mask it.
TokenCallback = Callable[[str], None]


def _ignore_token(token: str) -> None:
    """Default token callback: nothing to register."""


# -- process-wide token cache --------------------------------------------------------------------------
TokenKey = tuple[str, str, str]


@dataclass(frozen=True)
class _CachedToken:
    value: str
    obtained_at: float


class TokenCache:
    """WattTime bearer tokens shared by every hook in the process, so each task does not log in again.

    The login endpoint allows only 100 requests per 5 minutes, and a triggerer polls many zones: one
    token per (connection id, base URL, user name) is reused until it is ``ttl`` seconds old.

    :param ttl: seconds a token is reused after it was obtained.
    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(self, ttl: float = TOKEN_REUSE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, _CachedToken] = {}

    def get(self, key: TokenKey) -> str | None:
        """The cached token for ``key`` if it is still fresh, else ``None``."""
        with self._lock:
            cached = self._tokens.get(key)
            if cached is None or self.clock() - cached.obtained_at >= self.ttl:
                return None
            return cached.value

    def put(self, key: TokenKey, token: str) -> None:
        with self._lock:
            self._tokens[key] = _CachedToken(token, self.clock())

    def drop(self, key: TokenKey, token: str) -> None:
        """Forget ``token`` after the API refused it, unless another flow already replaced it."""
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value == token:
                del self._tokens[key]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKENS = TokenCache()


def token_key(settings: SourceSettings) -> TokenKey:
    """Cache key: the same user on the public API and on a simulator must not share a token."""
    return (settings.conn_id, settings.base_url, settings.login or "")


# -- configuration ---------------------------------------------------------------------------------------
def signal_type_of(settings: SourceSettings) -> str:
    """The connection's ``signal_type`` extra (default ``co2_moer``); only carbon signals are accepted."""
    signal_type = (settings.get_str("signal_type", DEFAULT_SIGNAL_TYPE) or DEFAULT_SIGNAL_TYPE).strip().lower()
    if signal_type not in SIGNAL_METRICS:
        raise SourceConfigError(
            f"signal_type {signal_type!r} is not a carbon intensity this provider can use; set the connection's"
            f" 'signal_type' extra to one of: {', '.join(SIGNAL_METRICS)} (co2_moer = marginal, co2_aoer = average)",
            source=settings.conn_id,
        )
    return signal_type


def _check_zone(zone: str, settings: SourceSettings) -> str:
    region = zone.strip()
    if not region:
        raise SourceConfigError("zone must be a WattTime region such as 'CAISO_NORTH'", source=settings.conn_id)
    return region


def _credentials(settings: SourceSettings) -> tuple[str, str]:
    if not settings.login:
        raise SourceConfigError("the connection has no WattTime user name (Login field)", source=settings.conn_id)
    return settings.login, settings.require_password("WattTime password")


def horizon_hours(end: datetime | None, now: datetime) -> int:
    """``horizon_hours`` for ``/v3/forecast``: enough to reach ``end``, within the API's 0..72."""
    if end is None:
        return DEFAULT_HORIZON_HOURS
    hours = math.ceil((end - now).total_seconds() / 3600)
    return max(0, min(MAX_HORIZON_HOURS, hours))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive pieces of at most ``size``."""
    pieces = []
    cursor = start
    while cursor < end:
        piece_end = min(end, cursor + size)
        pieces.append((cursor, piece_end))
        cursor = piece_end
    return pieces


# -- parsing -----------------------------------------------------------------------------------------------
def _meta(payload: Any, *, signal_type: str | None) -> tuple[dict[str, Any], str, timedelta]:
    """The ``meta`` block, its ``units`` and the point period; nothing is assumed when they are absent."""
    meta = require(payload, "meta", source=SOURCE, where="response", kind=dict)
    units = require(meta, "units", source=SOURCE, where="meta", kind=str)
    seconds = parse_number(
        require(meta, "data_point_period_seconds", source=SOURCE, where="meta"),
        source=SOURCE,
        where="meta.data_point_period_seconds",
    )
    if not math.isfinite(seconds) or seconds <= 0:
        raise MalformedPayloadError(
            f"meta.data_point_period_seconds is {seconds}, not a positive number", source=SOURCE
        )
    answered = meta.get("signal_type")
    if signal_type is not None and answered is not None and answered != signal_type:
        # The metric (marginal or average) follows from the signal type: a mismatch would mislabel every value.
        raise MalformedPayloadError(f"asked for signal_type {signal_type!r}, got {answered!r}", source=SOURCE)
    for warning in meta.get("warnings") or ():
        log.warning("WattTime warning: %s", warning)
    return meta, units, timedelta(seconds=seconds)


def _points(data: Any, *, period: timedelta, where: str, skip_nulls: bool) -> list[RawPoint]:
    if not isinstance(data, list):
        raise MalformedPayloadError(f"{where}: expected a list of points, got {type(data).__name__}", source=SOURCE)
    points: list[RawPoint] = []
    for index, entry in enumerate(data):
        at = f"{where}[{index}]"
        start = parse_time(
            require(entry, "point_time", source=SOURCE, where=at), source=SOURCE, where=f"{at}.point_time"
        )
        raw = require(entry, "value", source=SOURCE, where=at)
        if raw is None and skip_nulls:
            continue  # a missing measurement stays a visible gap
        points.append((start, start + period, parse_number(raw, source=SOURCE, where=f"{at}.value")))
    return points


def parse_signal(
    payload: Any,
    *,
    zone: str,
    kind: SignalKind,
    metric: CarbonMetric,
    series_type: SeriesType,
    signal_type: str | None = None,
) -> SignalSeries:
    """A ``/v3/forecast``, ``/v3/historical`` or ``/v3/signal-index`` body into a validated series.

    :param payload: the parsed JSON body ``{data: [{point_time, value}], meta: {...}}``.
    :param zone: the WattTime region asked for.
    :param kind: ``carbon_intensity`` (units must be an intensity) or ``carbon_index`` (units must be a percentile).
    :param metric: marginal for ``co2_moer``, average for ``co2_aoer``.
    :param series_type: forecasts take their issue time from ``meta.generated_at``.
    :param signal_type: the signal type asked for; a response for another one is refused.
    """
    meta, units, period = _meta(payload, signal_type=signal_type)
    issued_at = None
    if series_type is SeriesType.FORECAST:
        issued_at = parse_time(
            require(meta, "generated_at", source=SOURCE, where="meta"), source=SOURCE, where="meta.generated_at"
        )
    data = require(payload, "data", source=SOURCE, where="response")
    points = _points(data, period=period, where="data", skip_nulls=series_type is SeriesType.ACTUAL)
    if not points:
        raise NoSignalDataError(f"no {kind.value} values for {zone} in the response", source=SOURCE)
    return build_series(
        kind=kind,
        metric=metric,
        zone=zone,
        source=SOURCE,
        series_type=series_type,
        unit=units,
        issued_at=issued_at,
        points=points,
    )


def parse_forecast_history(
    payload: Any, *, zone: str, metric: CarbonMetric, signal_type: str | None = None
) -> list[SignalSeries]:
    """``/v3/forecast/historical``: ``data: [{generated_at, forecast: [points]}]`` into one series per vintage."""
    _, units, period = _meta(payload, signal_type=signal_type)
    data = require(payload, "data", source=SOURCE, where="response", kind=list)
    vintages = []
    for index, entry in enumerate(data):
        at = f"data[{index}]"
        issued_at = parse_time(
            require(entry, "generated_at", source=SOURCE, where=at), source=SOURCE, where=f"{at}.generated_at"
        )
        forecast = require(entry, "forecast", source=SOURCE, where=at)
        points = _points(forecast, period=period, where=f"{at}.forecast", skip_nulls=False)
        if not points:
            continue
        vintages.append(
            build_series(
                kind=SignalKind.CARBON_INTENSITY,
                metric=metric,
                zone=zone,
                source=SOURCE,
                series_type=SeriesType.FORECAST,
                unit=units,
                issued_at=issued_at,
                points=points,
            )
        )
    return vintages


def parse_region(payload: Any, *, latitude: float, longitude: float) -> str:
    """``/v3/region-from-loc``: ``{region, region_full_name, signal_type}`` into the region code."""
    region = require(payload, "region", source=SOURCE, where="response", kind=str)
    if not region:
        raise NoSignalDataError(f"no WattTime region covers ({latitude}, {longitude})", source=SOURCE)
    return region


# -- the exchanges ---------------------------------------------------------------------------------------------
def _login(settings: SourceSettings, key: TokenKey) -> Flow[str]:
    """``GET /login`` with HTTP Basic auth; cache and return the token."""
    response = yield HttpRequest("GET", settings.url("login"), headers=_ACCEPT, basic_auth=_credentials(settings))
    token = require(response.json(), "token", source=SOURCE, where="login response", kind=str)
    if not token:
        raise MalformedPayloadError("login response has an empty token", source=SOURCE)
    TOKENS.put(key, token)
    return token


def _bearer(settings: SourceSettings, path: str, params: Mapping[str, str], token: str, retry_401: bool) -> HttpRequest:
    return HttpRequest(
        "GET",
        settings.url(path),
        params=params,
        headers={**_ACCEPT, "Authorization": f"Bearer {token}"},
        # The first 401 comes back to the flow (token expired early or revoked); a second one is an error.
        accept_statuses=frozenset({401}) if retry_401 else frozenset(),
    )


def authorized_get(
    settings: SourceSettings, path: str, params: Mapping[str, str], on_token: TokenCallback = _ignore_token
) -> Flow[Any]:
    """GET a ``/v3`` path with a bearer token and return the JSON body.

    Logs in when no fresh token is cached; on a ``401`` logs in again once and retries once.

    :param settings: the connection settings (user name and password are required).
    :param path: e.g. ``v3/forecast``.
    :param params: the query parameters.
    :param on_token: told each token before it is sent, so it can be redacted from every message.
    """
    _credentials(settings)  # fail on a missing user or password before any request
    key = token_key(settings)
    token = TOKENS.get(key)
    if token is None:
        token = yield from _login(settings, key)
    on_token(token)
    response = yield _bearer(settings, path, params, token, retry_401=True)
    if response.status == 401:
        log.info("WattTime refused the cached token for %s; logging in again", settings.conn_id)
        TOKENS.drop(key, token)
        token = yield from _login(settings, key)
        on_token(token)
        response = yield _bearer(settings, path, params, token, retry_401=False)
    return response.json()


def signal_flow(
    settings: SourceSettings,
    query: SignalQuery,
    now: datetime | None = None,
    on_token: TokenCallback = _ignore_token,
) -> Flow[SignalSeries]:
    """Answer ``query``: ``/v3/forecast``, ``/v3/historical`` (30-day chunks) or ``/v3/signal-index``.

    :param settings: the connection settings.
    :param query: zone (region), kind, forecast or actuals, and the wanted range.
    :param now: the current time (tests); defaults to the clock.
    :param on_token: told each token before it is sent.
    """
    now = now or utcnow()
    signal_type = signal_type_of(settings)
    metric = SIGNAL_METRICS[signal_type]
    region = _check_zone(query.zone, settings)
    kind = query.kind or SignalKind.CARBON_INTENSITY
    query = replace(
        query,
        start=aware(query.start, what="start", source=settings.conn_id) if query.start else None,
        end=aware(query.end, what="end", source=settings.conn_id) if query.end else None,
    )
    base = {"region": region, "signal_type": signal_type}
    if kind is SignalKind.CARBON_INDEX:
        if query.forecast:
            raise SourceConfigError(
                "WattTime offers no forecast of its signal index, only the current value: ask for actuals of"
                " kind 'carbon_index', or for a 'carbon_intensity' forecast",
                source=settings.conn_id,
            )
        body = yield from authorized_get(settings, "v3/signal-index", base, on_token)
        series = parse_signal(
            body, zone=region, kind=kind, metric=metric, series_type=SeriesType.ACTUAL, signal_type=signal_type
        )
        return within_range(
            series, query.start, query.end, what="signal index (only the current interval is offered)", source=SOURCE
        )
    if kind is not SignalKind.CARBON_INTENSITY:
        raise SourceConfigError(f"WattTime serves no {kind.value} signal", source=settings.conn_id)
    if query.forecast:
        params = {**base, "horizon_hours": str(horizon_hours(query.end, now))}
        body = yield from authorized_get(settings, "v3/forecast", params, on_token)
        series = parse_signal(
            body, zone=region, kind=kind, metric=metric, series_type=SeriesType.FORECAST, signal_type=signal_type
        )
        return within_range(series, query.start, query.end, what="forecast", source=SOURCE)
    end = query.end or now
    start = query.start or end - timedelta(hours=24)
    if end <= start:
        raise SourceConfigError(f"range is empty: {format_time(start)} .. {format_time(end)}", source=settings.conn_id)
    pieces: list[SignalSeries] = []
    for piece_start, piece_end in chunks(start, end, HISTORICAL_CHUNK):
        params = {**base, "start": _iso(piece_start), "end": _iso(piece_end)}
        body = yield from authorized_get(settings, "v3/historical", params, on_token)
        try:
            pieces.append(
                parse_signal(
                    body, zone=region, kind=kind, metric=metric, series_type=SeriesType.ACTUAL, signal_type=signal_type
                )
            )
        except NoSignalDataError:
            continue  # an empty chunk is a gap in the record, not a failure of the whole range
    if not pieces:
        raise NoSignalDataError(
            f"no actual values for {region} between {format_time(start)} and {format_time(end)}", source=SOURCE
        )
    return within_range(merge_series(pieces), start, end, what="actual values", source=SOURCE)


def forecast_history_flow(
    settings: SourceSettings,
    zone: str,
    start: datetime,
    end: datetime,
    *,
    horizon: int = DEFAULT_HORIZON_HOURS,
    on_token: TokenCallback = _ignore_token,
) -> Flow[list[SignalSeries]]:
    """Past forecast vintages issued in ``[start, end)`` from ``/v3/forecast/historical``, oldest first.

    :param settings: the connection settings.
    :param zone: the WattTime region.
    :param start: earliest issue time wanted (UTC).
    :param end: issue times before this are kept (UTC).
    :param horizon: ``horizon_hours`` of each vintage (0..72).
    :param on_token: told each token before it is sent.
    """
    signal_type = signal_type_of(settings)
    metric = SIGNAL_METRICS[signal_type]
    region = _check_zone(zone, settings)
    start = aware(start, what="start", source=settings.conn_id)
    end = aware(end, what="end", source=settings.conn_id)
    if end <= start:
        raise SourceConfigError(
            f"forecast history range is empty: {format_time(start)} .. {format_time(end)}", source=settings.conn_id
        )
    if not 0 <= horizon <= MAX_HORIZON_HOURS:
        raise SourceConfigError(f"horizon must be 0..{MAX_HORIZON_HOURS} hours, not {horizon}", source=settings.conn_id)
    vintages: dict[datetime, SignalSeries] = {}
    for piece_start, piece_end in chunks(start, end, FORECAST_HISTORY_CHUNK):
        params = {
            "region": region,
            "signal_type": signal_type,
            "start": _iso(piece_start),
            "end": _iso(piece_end),
            "horizon_hours": str(horizon),
        }
        body = yield from authorized_get(settings, "v3/forecast/historical", params, on_token)
        for series in parse_forecast_history(body, zone=region, metric=metric, signal_type=signal_type):
            assert series.issued_at is not None  # forecasts always carry it (model validation)
            if start <= series.issued_at < end:
                vintages.setdefault(series.issued_at, series)  # the API's inclusive ends repeat edge vintages
    if not vintages:
        raise NoSignalDataError(
            f"no forecast vintages for {region} issued between {format_time(start)} and {format_time(end)}",
            source=SOURCE,
        )
    return [vintages[issued] for issued in sorted(vintages)]


def region_flow(
    settings: SourceSettings, latitude: float, longitude: float, on_token: TokenCallback = _ignore_token
) -> Flow[str]:
    """The WattTime region at a location, from ``/v3/region-from-loc``.

    :param settings: the connection settings (its ``signal_type`` is sent, as regions differ per signal).
    :param latitude: degrees north, -90..90.
    :param longitude: degrees east, -180..180.
    :param on_token: told each token before it is sent.
    """
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise SourceConfigError(
            f"({latitude}, {longitude}) is not a latitude/longitude in degrees", source=settings.conn_id
        )
    params = {"latitude": str(latitude), "longitude": str(longitude), "signal_type": signal_type_of(settings)}
    body = yield from authorized_get(settings, "v3/region-from-loc", params, on_token)
    return parse_region(body, latitude=latitude, longitude=longitude)
