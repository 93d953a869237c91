"""A custom REST/JSON source (a utility's own price or carbon API), described entirely by its connection.

The connection says where the data are (``forecast_path`` / ``actual_path`` relative to Host, with
``{zone}``, ``{start}``, ``{end}`` placeholders), how to authenticate (``auth_type``), where the list
of points sits in the JSON (``records_path``), which fields hold time, end and value, and what the
values mean (``kind``, ``metric``, ``unit`` or ``unit_field``, ``currency``). See
:class:`RestSourceConfig` for every extra field.

Times may be ISO 8601 strings with an offset, or epoch numbers (seconds, or milliseconds when the
magnitude says so). Naive local times are read only with the ``timezone`` extra; a repeated local
hour at a fall-back is resolved by order (first occurrence before the change, second after) and a
local time that does not exist (the spring-forward gap) is an error.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from string import Formatter
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_gridaware.signals.errors import (
    GridSignalError,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SourceAuthError,
    SourceConfigError,
    SourceRequestError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.models import SignalSeries, build_series, format_time
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.sources.common import ends_from_spacing, parse_number, utcnow
from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import HttpRequest, HttpResponse, redact_text

SOURCE = "rest"
UTC = timezone.utc
AUTH_TYPES = ("none", "api_key", "bearer", "oauth2_client_credentials")
CLIENT_AUTH = ("basic", "form")
PLACEHOLDERS = frozenset({"zone", "start", "end"})
FORECAST_SPAN = timedelta(hours=48)
ACTUALS_SPAN = timedelta(hours=24)
# Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 1e11
# Tokens without expires_in are kept this long (a 401 still forces a refresh).
DEFAULT_TOKEN_SECONDS = 300.0
TOKEN_MARGIN_SECONDS = 60.0
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

OnSecret = Callable[[str], None]


# -- configuration ---------------------------------------------------------------------------------
def _config_error(settings: SourceSettings, key: str, problem: str) -> SourceConfigError:
    return SourceConfigError(f"extra field {key!r} {problem}", source=settings.conn_id)


def _choice(settings: SourceSettings, key: str, allowed: Sequence[str], default: str) -> str:
    value = (settings.get_str(key, default) or default).strip().lower()
    if value not in allowed:
        raise _config_error(settings, key, f"must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _dotted(settings: SourceSettings, key: str, default: str | None) -> tuple[str, ...] | None:
    text = settings.get_str(key, default)
    if text is None:
        return None
    text = text.strip()
    if not text:
        return ()
    parts = tuple(part.strip() for part in text.split("."))
    if any(not part for part in parts):
        raise _config_error(settings, key, f"is not a dotted path: {text!r}")
    return parts


@dataclass(frozen=True)
class RestSourceConfig:
    """The connection's extra fields, checked once before any request.

    :param auth_type: ``none``, ``api_key`` (header ``key_header`` = Password), ``bearer``
        (``Authorization: Bearer <Password>``) or ``oauth2_client_credentials``.
    :param key_header: the header carrying the API key (default ``X-API-Key``).
    :param oauth2_url: OAuth2 token endpoint, absolute or relative to Host.
    :param scope: OAuth2 scope, optional.
    :param client_auth: how the OAuth2 client authenticates: ``basic`` (RFC 6749 2.3.1, default) or
        ``form`` (``client_id``/``client_secret`` in the body, for servers without Basic support).
    :param kind: ``carbon_intensity``, ``carbon_index`` or ``price``.
    :param metric: ``average`` or ``marginal`` for carbon kinds; ``None`` for prices.
    :param unit: the fixed unit of the values, or ``None`` when ``unit_field`` names it.
    :param unit_field: dotted path to the unit in the response body.
    :param currency: ISO 4217 code for prices.
    :param forecast_path: relative URL for forecasts, with placeholders.
    :param actual_path: relative URL for actuals, with placeholders.
    :param records_path: dotted path to the list of points; digits index lists; empty = the body.
    :param time_field: dotted path, inside a record, to its start time.
    :param end_field: dotted path to its end time, or ``None`` to use the spacing of points.
    :param value_field: dotted path to its value.
    :param issued_at_field: dotted path to a forecast's issue time in the body; else the fetch time.
    :param timezone: the zone naive times are in; ``None`` refuses naive times.
    :param period: the length of one point when there is no ``end_field`` (``period_minutes``).
    """

    auth_type: str
    key_header: str
    oauth2_url: str | None
    scope: str | None
    client_auth: str
    kind: SignalKind
    metric: CarbonMetric | None
    unit: str | None
    unit_field: tuple[str, ...] | None
    currency: str | None
    forecast_path: str | None
    actual_path: str | None
    records_path: tuple[str, ...]
    time_field: tuple[str, ...]
    end_field: tuple[str, ...] | None
    value_field: tuple[str, ...]
    issued_at_field: tuple[str, ...] | None
    timezone: ZoneInfo | None
    period: timedelta | None

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> RestSourceConfig:
        """Read and check every extra field; a missing or ill-typed one is a :class:`SourceConfigError`.

        :param settings: the connection's settings.
        """
        if not settings.base_url:
            raise SourceConfigError("the connection has no Host (the API's base URL)", source=settings.conn_id)
        auth_type = _choice(settings, "auth_type", AUTH_TYPES, "none")
        header = (settings.get_str("key_header", "X-API-Key") or "X-API-Key").strip()
        if not _HEADER_NAME_RE.match(header):
            raise _config_error(settings, "key_header", f"is not a valid HTTP header name: {header!r}")
        token_url = settings.get_str("oauth2_url")
        if auth_type in ("api_key", "bearer"):
            settings.require_password("API key or token")
        if auth_type == "oauth2_client_credentials":
            if not token_url:
                raise _config_error(settings, "oauth2_url", "is required for auth_type oauth2_client_credentials")
            if not settings.login:
                raise SourceConfigError(
                    "oauth2_client_credentials needs the client id in the Login field", source=settings.conn_id
                )
            settings.require_password("OAuth2 client secret")
        kind_name = _choice(settings, "kind", [k.value for k in SignalKind], SignalKind.CARBON_INTENSITY.value)
        kind = SignalKind(kind_name)
        metric = None
        if kind is not SignalKind.PRICE:
            metric = CarbonMetric(_choice(settings, "metric", [m.value for m in CarbonMetric], "average"))
        unit = settings.get_str("unit")
        unit_field = _dotted(settings, "unit_field", None)
        if unit and unit_field:
            raise _config_error(settings, "unit_field", "and 'unit' are both set: keep one")
        if not unit and not unit_field:
            raise _config_error(settings, "unit", "is not set (nor 'unit_field'): the values' unit must be stated")
        currency = settings.get_str("currency")
        if currency is not None and not re.fullmatch(r"[A-Za-z]{3}", currency.strip()):
            raise _config_error(settings, "currency", f"must be an ISO 4217 code such as EUR, not {currency!r}")
        tz_name = settings.get_str("timezone")
        tz = None
        if tz_name:
            try:
                tz = ZoneInfo(tz_name.strip())
            except (ZoneInfoNotFoundError, ValueError):
                raise _config_error(settings, "timezone", f"is not an IANA time zone: {tz_name!r}") from None
        period = None
        if settings.get_str("period_minutes") is not None:
            period = timedelta(minutes=settings.get_float("period_minutes", 60.0))
        forecast_path, actual_path = settings.get_str("forecast_path"), settings.get_str("actual_path")
        for key, path in (("forecast_path", forecast_path), ("actual_path", actual_path)):
            if path is not None:
                _check_template(settings, key, path)
        if forecast_path is None and actual_path is None:
            raise _config_error(settings, "forecast_path", "is not set (nor 'actual_path'): nothing to read")
        return cls(
            auth_type=auth_type,
            key_header=header,
            oauth2_url=token_url.strip() if token_url else None,
            scope=settings.get_str("scope"),
            client_auth=_choice(settings, "client_auth", CLIENT_AUTH, "basic"),
            kind=kind,
            metric=metric,
            unit=unit,
            unit_field=unit_field,
            currency=currency.strip().upper() if currency else None,
            forecast_path=forecast_path,
            actual_path=actual_path,
            records_path=_dotted(settings, "records_path", "") or (),
            time_field=_dotted(settings, "time_field", "time") or ("time",),
            end_field=_dotted(settings, "end_field", None) or None,
            value_field=_dotted(settings, "value_field", "value") or ("value",),
            issued_at_field=_dotted(settings, "issued_at_field", None) or None,
            timezone=tz,
            period=period,
        )


def _check_template(settings: SourceSettings, key: str, template: str) -> set[str]:
    """The placeholders of a path template; absolute URLs and unknown placeholders are refused."""
    parts = urlsplit(template.strip())
    if parts.scheme or template.strip().startswith("//"):
        # The credentials go to Host only: a path must not redirect them to another server.
        raise _config_error(settings, key, f"must be relative to the connection's Host, not {template!r}")
    try:
        fields = list(Formatter().parse(template))
    except ValueError as exc:
        raise _config_error(settings, key, f"has unbalanced braces ({exc}): {template!r}") from None
    names: set[str] = set()
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise _config_error(
                settings,
                key,
                f"uses {{{written}}}; the only placeholders are {{zone}}, {{start}} and {{end}},"
                " without conversions or formats",
            )
        names.add(name)
    return names


def render_path(settings: SourceSettings, key: str, template: str, *, zone: str, start: datetime, end: datetime) -> str:
    """``template`` with ``{zone}``, ``{start}``, ``{end}`` filled in and URL-encoded.

    :param settings: the connection (for error messages).
    :param key: the extra field the template came from.
    :param template: e.g. ``v1/prices/{zone}?from={start}&to={end}``.
    :param zone: the zone asked for.
    :param start: range start, written ``2024-03-31T00:00:00Z``.
    :param end: range end, same form.
    """
    names = _check_template(settings, key, template)
    if "zone" in names and not zone.strip():
        raise SourceConfigError(
            f"extra field {key!r} uses {{zone}} but no zone was given (the Test button reads extra 'test_zone')",
            source=settings.conn_id,
        )
    values = {"zone": zone.strip(), "start": _iso_z(start), "end": _iso_z(end)}
    return template.strip().format(**{name: quote(values[name], safe=":") for name in names})


def _caller_time(value: datetime | None, what: str, source: str) -> datetime | None:
    """A query bound in UTC; a naive one is a config error (its zone would be a guess)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise SourceConfigError(
            f"query {what} {value.isoformat()} has no timezone: pass an aware datetime (UTC)", source=source
        )
    return value.astimezone(UTC)


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- OAuth2 token cache ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _CachedToken:
    fingerprint: str
    token: str
    expires_at: float


class TokenCache:
    """Access tokens shared by every hook in the process, one per connection id.

    A token is kept until ``expires_in`` minus a margin (10 %, at most a minute), so a call never
    starts with a token about to expire. Changing the connection's credentials invalidates it.

    :param clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[str, _CachedToken] = {}
        self._lock = threading.Lock()

    def get(self, conn_id: str, fingerprint: str) -> str | None:
        """The cached token for ``conn_id`` if it was obtained with the same credentials and is fresh."""
        with self._lock:
            cached = self._tokens.get(conn_id)
            if cached is None or cached.fingerprint != fingerprint or self.clock() >= cached.expires_at:
                return None
            return cached.token

    def put(self, conn_id: str, fingerprint: str, token: str, expires_in: float | None) -> None:
        """Keep ``token`` for ``expires_in`` seconds minus the margin.

        :param conn_id: the connection the token belongs to.
        :param fingerprint: a digest of the credentials that obtained it.
        :param token: the access token.
        :param expires_in: its lifetime as the server stated it, or ``None``.
        """
        lifetime = DEFAULT_TOKEN_SECONDS if expires_in is None else expires_in
        lifetime -= min(TOKEN_MARGIN_SECONDS, lifetime * 0.1)
        with self._lock:
            self._tokens[conn_id] = _CachedToken(fingerprint, token, self.clock() + lifetime)

    def invalidate(self, conn_id: str, token: str) -> None:
        """Forget ``token`` (the server refused it); a newer token from another call is kept."""
        with self._lock:
            cached = self._tokens.get(conn_id)
            if cached is not None and cached.token == token:
                del self._tokens[conn_id]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = TokenCache()


def reset_token_cache() -> None:
    """Forget every cached access token (tests, and after rotating a client secret)."""
    TOKEN_CACHE.clear()


def _fingerprint(settings: SourceSettings, token_url: str, scope: str | None, client_auth: str) -> str:
    material = "\0".join((token_url, settings.login or "", settings.password or "", scope or "", client_auth))
    return hashlib.sha256(material.encode()).hexdigest()


def _strip_source(exc: GridSignalError) -> str:
    text = str(exc)
    prefix = f"[{exc.source}] " if exc.source else ""
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def access_token_flow(
    settings: SourceSettings, config: RestSourceConfig, on_secret: OnSecret | None = None
) -> Flow[str]:
    """A cached OAuth2 access token, or a client-credentials grant (RFC 6749 4.4) to get a new one.

    :param settings: the connection (Login = client id, Password = client secret).
    :param config: the checked extras (``oauth2_url``, ``scope``, ``client_auth``).
    :param on_secret: called with a new token before it is used, so the transport redacts it.
    """
    assert config.oauth2_url is not None
    token_url = config.oauth2_url if "://" in config.oauth2_url else settings.url(config.oauth2_url)
    return (
        yield from client_credentials_flow(
            settings, token_url, scope=config.scope, client_auth=config.client_auth, on_secret=on_secret
        )
    )


def client_credentials_flow(
    settings: SourceSettings,
    token_url: str,
    *,
    scope: str | None = None,
    client_auth: str = "basic",
    on_secret: OnSecret | None = None,
) -> Flow[str]:
    """A cached access token for the connection, or a client-credentials grant (RFC 6749 4.4) for a new one.

    Shared by the custom REST source and OpenADR 3, whose ``/auth/token`` is this grant.

    :param settings: the connection (Login = client id, Password = client secret).
    :param token_url: the absolute token endpoint.
    :param scope: OAuth2 scope, optional.
    :param client_auth: ``basic`` (HTTP Basic, RFC 6749 2.3.1) or ``form`` (id and secret in the body).
    :param on_secret: called with a new token before it is used, so the transport redacts it.
    """
    client_id, secret = settings.login or "", settings.password or ""
    fingerprint = _fingerprint(settings, token_url, scope, client_auth)
    cached = TOKEN_CACHE.get(settings.conn_id, fingerprint)
    if cached is not None:
        return cached
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    basic: tuple[str, str] | None = None
    if client_auth == "basic":
        # RFC 6749 2.3.1: id and secret are form-urlencoded before they go into the Basic header.
        basic = (quote_plus(client_id), quote_plus(secret))
    else:
        form.update(client_id=client_id, client_secret=secret)
    try:
        response = yield HttpRequest(
            "POST", token_url, headers={"Accept": "application/json"}, basic_auth=basic, form=form
        )
    except SourceRequestError as exc:
        if exc.status == 400:  # RFC 6749 5.2: invalid_client, invalid_grant, invalid_scope ... come as 400
            raise SourceAuthError(
                f"the token endpoint refused the client credentials: {_strip_source(exc)}", source=settings.conn_id
            ) from None
        raise
    body = response.json()
    where = f"POST {response.display_url} (token response)"
    if not isinstance(body, Mapping):
        raise MalformedPayloadError(f"{where}: expected a JSON object", source=settings.conn_id)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise MalformedPayloadError(f"{where}: field 'access_token' is missing or empty", source=settings.conn_id)
    if on_secret is not None:
        on_secret(token)
    token_type = body.get("token_type")
    if token_type is not None and str(token_type).lower() != "bearer":
        raise SourceAuthError(
            f"{where}: token_type {token_type!r} is not supported (only Bearer)", source=settings.conn_id
        )
    expires_in: float | None = None
    if body.get("expires_in") is not None:
        expires_in = parse_number(body["expires_in"], source=settings.conn_id, where=f"{where}.expires_in")
        if not math.isfinite(expires_in) or expires_in < 0:
            raise MalformedPayloadError(f"{where}: expires_in {expires_in} is not a lifetime", source=settings.conn_id)
    TOKEN_CACHE.put(settings.conn_id, fingerprint, token, expires_in)
    return token


# -- payload mapping -------------------------------------------------------------------------------
def resolve_path(data: Any, path: Sequence[str], *, source: str, what: str, root: str = "body") -> Any:
    """Follow a dotted path: names index objects, digits index lists.

    :param data: the JSON value to start from.
    :param path: the path's parts.
    :param source: for errors.
    :param what: the extra field the path came from, for errors.
    :param root: what ``data`` is called in messages.
    """
    where = root
    for part in path:
        if isinstance(data, Mapping):
            if part not in data:
                raise MalformedPayloadError(
                    f"{what} {'.'.join(path)!r}: field {part!r} is missing at {where}", source=source
                )
            data = data[part]
        elif isinstance(data, list) and part.isdigit():
            index = int(part)
            if index >= len(data):
                raise MalformedPayloadError(
                    f"{what} {'.'.join(path)!r}: {where} has {len(data)} items, no [{index}]", source=source
                )
            data = data[index]
        else:
            raise MalformedPayloadError(
                f"{what} {'.'.join(path)!r}: {where} is {type(data).__name__}, cannot take {part!r}", source=source
            )
        where = f"{where}.{part}" if not part.isdigit() else f"{where}[{part}]"
    return data


class LocalTimeReader:
    """Reads times from records: aware ISO strings, epoch numbers, or naive times in a configured zone.

    Naive start times seen twice in an ambiguous hour (a DST fall-back) take the first and then the
    second occurrence; an end time takes the earliest reading after its start.

    :param tz: the zone naive times are in, or ``None`` to refuse them.
    :param source: for errors.
    """

    def __init__(self, tz: ZoneInfo | None, source: str) -> None:
        self.tz = tz
        self.source = source
        self._seen: Counter[datetime] = Counter()

    def _read(self, raw: Any, where: str) -> datetime:
        """An aware datetime, or a naive one still to be placed in ``tz``."""
        if isinstance(raw, bool) or raw is None:
            raise MalformedPayloadError(f"{where}: expected a time, got {raw!r}", source=self.source)
        if isinstance(raw, int | float):
            seconds = float(raw)
            if not math.isfinite(seconds):
                raise MalformedPayloadError(f"{where}: {raw!r} is not a time", source=self.source)
            if abs(seconds) >= EPOCH_MS_THRESHOLD:
                seconds /= 1000.0
            try:
                return datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, OSError, ValueError):
                raise MalformedPayloadError(
                    f"{where}: {raw!r} is out of range as epoch time", source=self.source
                ) from None
        if not isinstance(raw, str) or not raw.strip():
            raise MalformedPayloadError(f"{where}: expected a time, got {raw!r}", source=self.source)
        text = raw.strip()
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise MalformedPayloadError(f"{where}: {raw!r} is not an ISO 8601 time", source=self.source) from None

    def _candidates(self, naive: datetime, raw: Any, where: str) -> list[datetime]:
        """The UTC readings of a naive local time: one, two (fall-back) or none (gap, an error)."""
        if self.tz is None:
            raise SourceConfigError(
                f"{where}: time {raw!r} has no UTC offset; set the connection's extra field 'timezone'"
                " (IANA name, e.g. Europe/Berlin) to say which local time it is",
                source=self.source,
            )
        first = naive.replace(tzinfo=self.tz, fold=0)
        if first.astimezone(UTC).astimezone(self.tz).replace(tzinfo=None) != naive:
            raise MalformedPayloadError(
                f"{where}: local time {raw!r} does not exist in {self.tz.key} (skipped when the clocks went forward)",
                source=self.source,
            )
        second = naive.replace(tzinfo=self.tz, fold=1)
        readings = {first.astimezone(UTC), second.astimezone(UTC)}
        return sorted(readings)

    def start(self, raw: Any, where: str) -> datetime:
        """A record's start in UTC.

        :param raw: the JSON value.
        :param where: the record field, for errors.
        """
        value = self._read(raw, where)
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        readings = self._candidates(value, raw, where)
        occurrence = self._seen[value]
        self._seen[value] += 1
        if occurrence >= len(readings):
            raise MalformedPayloadError(
                f"{where}: local time {raw!r} appears {occurrence + 1} times; it exists {len(readings)} time(s)"
                f" in {self.tz.key if self.tz else 'UTC'}",
                source=self.source,
            )
        return readings[occurrence]

    def end(self, raw: Any, where: str, start: datetime) -> datetime:
        """A record's end in UTC: at a fall-back, the earliest reading after ``start``.

        :param raw: the JSON value.
        :param where: the record field, for errors.
        :param start: the record's start (UTC).
        """
        value = self._read(raw, where)
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        readings = self._candidates(value, raw, where)
        return next((r for r in readings if r > start), readings[-1])

    def point_time(self, raw: Any, where: str) -> datetime:
        """A single time (e.g. an issue time): at a fall-back, the earlier reading."""
        value = self._read(raw, where)
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        return self._candidates(value, raw, where)[0]


def parse_records(
    payload: Any,
    config: RestSourceConfig,
    *,
    zone: str,
    source: str,
    series_type: SeriesType,
    issued_at: datetime | None,
) -> SignalSeries:
    """Map a JSON body onto a validated series as the connection describes.

    Records whose value is ``null`` are left out (a visible gap); no value at all is
    :class:`NoSignalDataError`.

    :param payload: the parsed JSON body.
    :param config: the connection's mapping.
    :param zone: the zone asked for.
    :param source: names the series and errors (the connection id).
    :param series_type: actual or forecast.
    :param issued_at: the forecast's issue time when the body does not state it.
    """
    records = resolve_path(payload, config.records_path, source=source, what="records_path")
    if not isinstance(records, list):
        raise MalformedPayloadError(
            f"records_path {'.'.join(config.records_path)!r}: expected a list of records, got {type(records).__name__}",
            source=source,
        )
    if not records:
        raise NoSignalDataError(f"no records for {zone or 'the request'} in the response", source=source)
    unit = config.unit
    if config.unit_field is not None:
        raw_unit = resolve_path(payload, config.unit_field, source=source, what="unit_field")
        if not isinstance(raw_unit, str) or not raw_unit.strip():
            raise MalformedPayloadError(
                f"unit_field {'.'.join(config.unit_field)!r}: expected a unit string, got {raw_unit!r}", source=source
            )
        unit = raw_unit
    assert unit is not None
    if series_type is SeriesType.FORECAST and config.issued_at_field is not None:
        raw_issued = resolve_path(payload, config.issued_at_field, source=source, what="issued_at_field")
        issued_at = LocalTimeReader(config.timezone, source).point_time(
            raw_issued, f"issued_at_field {'.'.join(config.issued_at_field)!r}"
        )
    times = LocalTimeReader(config.timezone, source)
    starts: list[datetime] = []
    explicit_ends: list[datetime] = []
    values: list[float | None] = []
    time_name, value_name = ".".join(config.time_field), ".".join(config.value_field)
    for index, record in enumerate(records):
        at = f"records[{index}]"
        start = times.start(
            resolve_path(record, config.time_field, source=source, what="time_field", root=at), f"{at}.{time_name}"
        )
        starts.append(start)
        if config.end_field is not None:
            end_name = ".".join(config.end_field)
            raw_end = resolve_path(record, config.end_field, source=source, what="end_field", root=at)
            explicit_ends.append(times.end(raw_end, f"{at}.{end_name}", start))
        raw_value = resolve_path(record, config.value_field, source=source, what="value_field", root=at)
        values.append(None if raw_value is None else parse_number(raw_value, source=source, where=f"{at}.{value_name}"))
    if config.end_field is not None:
        ends: Sequence[datetime] = explicit_ends
    else:
        if len(starts) < 2 and config.period is None:
            raise SourceConfigError(
                "one record and neither 'end_field' nor 'period_minutes' set: cannot tell how long it lasts",
                source=source,
            )
        order = sorted(range(len(starts)), key=starts.__getitem__)
        sorted_ends = ends_from_spacing([starts[i] for i in order], default=timedelta(hours=1), period=config.period)
        by_index = dict(zip(order, sorted_ends, strict=True))
        ends = [by_index[i] for i in range(len(starts))]
    points = sorted(
        ((start, end, value) for start, end, value in zip(starts, ends, values, strict=True) if value is not None),
        key=lambda point: point[0],
    )
    if not points:
        raise NoSignalDataError(f"every record for {zone or 'the request'} has a null value", source=source)
    try:
        return build_series(
            kind=config.kind,
            metric=config.metric,
            zone=zone,
            source=source,
            series_type=series_type,
            unit=unit,
            currency=config.currency,
            issued_at=issued_at,
            points=points,
        )
    except UnknownUnitError as exc:
        if exc.source:
            raise
        where = f"unit_field {'.'.join(config.unit_field)!r}" if config.unit_field else "extra field 'unit'"
        raise UnknownUnitError(f"{where}: {exc}", source=source) from None


def _redacted(exc: GridSignalError, secrets: Sequence[str]) -> GridSignalError:
    """``exc`` again with ``secrets`` masked (payload excerpts may echo a key or a token)."""
    message = _strip_source(exc)
    clean = redact_text(message, secrets)
    if clean == message:
        return exc
    if isinstance(exc, SourceRequestError):
        return SourceRequestError(clean, source=exc.source, status=exc.status)
    if isinstance(exc, MalformedPayloadError | InvalidSignalError | NoSignalDataError | SourceConfigError):
        return type(exc)(clean, source=exc.source)
    return exc


# -- the exchange ----------------------------------------------------------------------------------
def _auth_headers(settings: SourceSettings, config: RestSourceConfig, token: str | None) -> dict[str, str]:
    if config.auth_type == "api_key":
        return {config.key_header: settings.password or ""}
    if config.auth_type == "bearer":
        return {"Authorization": f"Bearer {settings.password or ''}"}
    if config.auth_type == "oauth2_client_credentials" and token:
        return {"Authorization": f"Bearer {token}"}
    return {}


def signal_flow(
    settings: SourceSettings,
    query: SignalQuery,
    *,
    now: datetime | None = None,
    on_secret: OnSecret | None = None,
) -> Flow[SignalSeries]:
    """Read one series from the configured API.

    Forecasts ask for ``[query.start or now, query.end or start + 48 h)`` and are cut only to the
    bounds the caller gave (an API may well answer its whole horizon); actuals ask for
    ``[query.start or end - 24 h, query.end or now)`` and are always cut to it. With OAuth2 a cached
    token is used, and a 401 gets one new token and one retry.

    :param settings: the connection.
    :param query: zone, range, forecast or not; ``query.kind`` must match the connection's kind.
    :param now: the current time (tests).
    :param on_secret: told every access token obtained, so the transport redacts it.
    """
    config = RestSourceConfig.from_settings(settings)
    source = settings.conn_id
    if query.kind is not None and query.kind is not config.kind:
        raise SourceConfigError(
            f"this connection serves {config.kind.value} (extra field 'kind'), not {query.kind.value}", source=source
        )
    now = now or utcnow()
    wanted_start, wanted_end = _caller_time(query.start, "start", source), _caller_time(query.end, "end", source)
    if query.forecast:
        key, template = "forecast_path", config.forecast_path
        start = wanted_start or now.replace(microsecond=0)
        end = wanted_end or start + FORECAST_SPAN
        series_type = SeriesType.FORECAST
    else:
        key, template = "actual_path", config.actual_path
        end = wanted_end or now.replace(microsecond=0)
        start = wanted_start or end - ACTUALS_SPAN
        series_type = SeriesType.ACTUAL
    if template is None:
        wanted = "forecasts" if query.forecast else "actuals"
        raise SourceConfigError(f"extra field {key!r} is not set: this connection cannot serve {wanted}", source=source)
    if end <= start:
        raise SourceConfigError(
            f"the range {format_time(start)} .. {format_time(end)} is empty: end must be after start", source=source
        )
    url = settings.url(render_path(settings, key, template, zone=query.zone, start=start, end=end))
    oauth = config.auth_type == "oauth2_client_credentials"
    token = (yield from access_token_flow(settings, config, on_secret)) if oauth else None
    headers = {"Accept": "application/json", **_auth_headers(settings, config, token)}
    # With OAuth2 a 401 may only mean the cached token was revoked early: read it here, refresh once.
    response: HttpResponse = yield HttpRequest(
        "GET", url, headers=headers, accept_statuses=frozenset({401}) if oauth else frozenset()
    )
    if oauth and response.status == 401:
        assert token is not None
        TOKEN_CACHE.invalidate(settings.conn_id, token)
        token = yield from access_token_flow(settings, config, on_secret)
        headers = {"Accept": "application/json", **_auth_headers(settings, config, token)}
        response = yield HttpRequest("GET", url, headers=headers)
    secrets = [s for s in (settings.password, token) if s]
    issued_at = now if query.forecast else None  # fetch time: the latest the forecast can have been issued
    try:
        series = parse_records(
            response.json(), config, zone=query.zone, source=source, series_type=series_type, issued_at=issued_at
        )
    except GridSignalError as exc:
        raise _redacted(exc, secrets) from None
    low, high = (wanted_start, wanted_end) if query.forecast else (start, end)
    if low is None and high is None:
        return series
    assert series.start is not None and series.end is not None  # parse_records never returns an empty series
    trimmed = series.between(low or series.start, high or series.end)
    if not trimmed.points:
        raise NoSignalDataError(
            f"no values for {query.zone or 'the request'} between {format_time(start)} and {format_time(end)}",
            source=source,
        )
    return trimmed
