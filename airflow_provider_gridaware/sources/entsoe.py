"""ENTSO-E Transparency Platform: day-ahead prices (documentType A44) per bidding zone.

One request is ``GET {base}/api?securityToken=..&documentType=A44&in_Domain=<EIC>&out_Domain=<EIC>
&periodStart=yyyyMMddHHmm&periodEnd=yyyyMMddHHmm`` (UTC). The answer is a ``Publication_MarketDocument``
with one ``TimeSeries`` per delivery day (and sometimes per resolution or per auction), or an
``Acknowledgement_MarketDocument`` explaining why there is nothing (often with HTTP 200).

Parsing rules (the platform's, as entsoe-py applies them):

- every ``Period`` has a ``timeInterval`` and a ``resolution`` (an ISO 8601 duration: PT15M, PT30M,
  PT60M ...); point ``position`` n starts at ``start + (n - 1) * resolution``;
- ``curveType`` A03 omits a position whose price equals the previous one, so omitted positions are
  forward-filled to the end of the period; A01 lists every position, and a missing one stays a gap;
- several ``TimeSeries`` for one day told apart by ``classificationSequence_AttributeInstanceComponent
  .position`` are different auctions: position 1 (the main day-ahead auction) is kept;
- when one day comes at two resolutions, the finer one is kept (it carries more information);
- prices are ``currency_Unit.name`` per ``price_Measure_Unit.name`` (``EUR`` per ``MWH``); negative
  prices are real and kept.

The XML is read with the standard library's expat parser with every DTD and entity declaration
refused, so no entity is ever expanded or fetched (``defusedxml`` is not a dependency).
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from xml.parsers import expat

from airflow_provider_gridaware.signals.errors import (
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SourceConfigError,
    SourceRequestError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.models import RawPoint, SignalSeries, build_series, format_time
from airflow_provider_gridaware.signals.units import SeriesType, SignalKind
from airflow_provider_gridaware.sources.common import floor_time, parse_number, parse_time, utcnow
from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.transport.http import BODY_EXCERPT_CHARS, HttpRequest, HttpResponse, redact_text

SOURCE = "entsoe"
DEFAULT_BASE_URL = "https://web-api.tp.entsoe.eu"
API_PATH = "api"
DAY = timedelta(days=1)
FORECAST_SPAN = timedelta(days=2)
ACTUALS_SPAN = timedelta(hours=24)
MAX_RANGE = timedelta(days=365)  # the platform refuses A44 queries longer than one year
MAX_POSITIONS = 200_000  # far beyond a year of 15-minute points: a bigger period is a broken document
PUBLICATION = "Publication_MarketDocument"
ACKNOWLEDGEMENT = "Acknowledgement_MarketDocument"
NO_DATA_REASON = "no matching data found"

# Bidding zones by short name -> EIC, from entsoe-py's ``mappings.Area`` (itself from the API guide).
BIDDING_ZONES: dict[str, str] = {
    "AL": "10YAL-KESH-----5",
    "AT": "10YAT-APG------L",
    "BA": "10YBA-JPCC-----D",
    "BE": "10YBE----------2",
    "BG": "10YCA-BULGARIA-R",
    "CH": "10YCH-SWISSGRIDZ",
    "CZ": "10YCZ-CEPS-----N",
    "DE-LU": "10Y1001A1001A82H",
    "DE-AT-LU": "10Y1001A1001A63L",  # the German price zone until 2018-09-30
    "DK1": "10YDK-1--------W",
    "DK2": "10YDK-2--------M",
    "EE": "10Y1001A1001A39I",
    "ES": "10YES-REE------0",
    "FI": "10YFI-1--------U",
    "FR": "10YFR-RTE------C",
    "GB": "10YGB----------A",
    "GR": "10YGR-HTSO-----Y",
    "HR": "10YHR-HEP------M",
    "HU": "10YHU-MAVIR----U",
    "IE-SEM": "10Y1001A1001A59C",
    "IT-North": "10Y1001A1001A73I",
    "IT-Centre-North": "10Y1001A1001A70O",
    "IT-Centre-South": "10Y1001A1001A71M",
    "IT-South": "10Y1001A1001A788",
    "IT-Calabria": "10Y1001C--00096J",
    "IT-Sicily": "10Y1001A1001A75E",
    "IT-Sardinia": "10Y1001A1001A74G",
    "LT": "10YLT-1001A0008Q",
    "LV": "10YLV-1001A00074",
    "ME": "10YCS-CG-TSO---S",
    "MK": "10YMK-MEPSO----8",
    "NL": "10YNL----------L",
    "NO1": "10YNO-1--------2",
    "NO2": "10YNO-2--------T",
    "NO3": "10YNO-3--------J",
    "NO4": "10YNO-4--------9",
    "NO5": "10Y1001A1001A48H",
    "PL": "10YPL-AREA-----S",
    "PT": "10YPT-REN------W",
    "RO": "10YRO-TEL------P",
    "RS": "10YCS-SERBIATSOV",
    "SE1": "10Y1001A1001A44P",
    "SE2": "10Y1001A1001A45N",
    "SE3": "10Y1001A1001A46L",
    "SE4": "10Y1001A1001A47J",
    "SI": "10YSI-ELES-----O",
    "SK": "10YSK-SEPS-----K",
}
# Other spellings people use: entsoe-py's member names (IT_NORD, DE_LU ...) and plain "DE".
_ALIASES: dict[str, str] = {
    "DE": "DE-LU",  # Germany's day-ahead price zone since 2018-10-01
    "IT-NORD": "IT-North",
    "IT-CNOR": "IT-Centre-North",
    "IT-CSUD": "IT-Centre-South",
    "IT-SUD": "IT-South",
    "IT-CALA": "IT-Calabria",
    "IT-SICI": "IT-Sicily",
    "IT-SARD": "IT-Sardinia",
}
# An EIC: 2-digit issuing office, object type letter (Y = area), 12 characters, 1 check character.
_EIC_RE = re.compile(r"^\d{2}[A-Z][A-Z0-9-]{13}$")


def _zone_key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name).upper()


_ZONE_INDEX: dict[str, str] = {
    **{_zone_key(name): eic for name, eic in BIDDING_ZONES.items()},
    **{_zone_key(alias): BIDDING_ZONES[target] for alias, target in _ALIASES.items()},
}


def zone_eic(zone: str) -> str:
    """The EIC code for ``zone``: an EIC as given, or a bidding-zone short name (``DE-LU``, ``dk_1``, ``NO5``).

    :param zone: an EIC code (``10YCZ-CEPS-----N``) or a name from :data:`BIDDING_ZONES`.
    """
    text = zone.strip().upper()
    if _EIC_RE.match(text):
        return text
    eic = _ZONE_INDEX.get(_zone_key(zone))
    if eic is None:
        raise SourceConfigError(
            f"zone {zone!r} is neither an EIC code (16 characters, e.g. '10YCZ-CEPS-----N') nor a known"
            f" bidding zone ({', '.join(BIDDING_ZONES)})",
            source=SOURCE,
        )
    return eic


# -- ISO 8601 durations ----------------------------------------------------------------------------
_DURATION_RE = re.compile(
    r"^P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


@dataclass(frozen=True)
class IsoDuration:
    """An ISO 8601 duration split into calendar months and an exact time span.

    :param months: whole calendar months (``P1M``, ``P1Y`` = 12).
    :param delta: the exact part (weeks, days, hours, minutes, seconds).
    """

    months: int
    delta: timedelta

    def after(self, start: datetime, steps: int = 1) -> datetime:
        """``start`` plus ``steps`` times this duration (months by the calendar, in ``start``'s zone)."""
        shifted = _add_months(start, self.months * steps) if self.months else start
        return shifted + self.delta * steps

    @property
    def nominal(self) -> timedelta:
        """A length for ordering resolutions (a month counts as 31 days)."""
        return timedelta(days=31 * self.months) + self.delta


def parse_duration(text: str) -> IsoDuration:
    """Parse ``PT15M``, ``PT1H``, ``P1D``, ``P1M``, ``PT0.5S`` ...; zero or garbled is a ``ValueError``."""
    match = _DURATION_RE.match(text.strip().upper())
    if not match or text.strip().upper() in {"P", "PT"} or text.strip().upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    if parts["years"] % 1 or parts["months"] % 1:
        raise ValueError(f"{text!r}: fractional years or months are not supported")
    months = int(parts["years"]) * 12 + int(parts["months"])
    delta = timedelta(
        weeks=parts["weeks"],
        days=parts["days"],
        hours=parts["hours"],
        minutes=parts["minutes"],
        seconds=parts["seconds"],
    )
    if months == 0 and delta <= timedelta(0):
        raise ValueError(f"{text!r} is a zero duration")
    return IsoDuration(months, delta)


def _add_months(value: datetime, months: int) -> datetime:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


# -- XML without entities --------------------------------------------------------------------------
@dataclass
class XmlNode:
    """An element by local name (namespace dropped), with its text, children and a readable path.

    :param name: the local name (``TimeSeries``).
    :param path: where it sits, e.g. ``Publication_MarketDocument/TimeSeries[2]/Period[1]``.
    """

    name: str
    path: str
    parts: list[str] = field(default_factory=list)
    children: list[XmlNode] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def all(self, name: str) -> list[XmlNode]:
        return [child for child in self.children if child.name == name]

    def first(self, name: str) -> XmlNode | None:
        return next((child for child in self.children if child.name == name), None)

    def find(self, path: str) -> XmlNode | None:
        """The first descendant along ``a/b/c`` (local names), or ``None``."""
        node: XmlNode | None = self
        for name in path.split("/"):
            node = node.first(name) if node is not None else None
        return node

    def find_text(self, path: str) -> str | None:
        node = self.find(path)
        return node.text if node is not None else None

    def iter(self, name: str) -> Iterator[XmlNode]:
        """Every descendant called ``name``, in document order."""
        for child in self.children:
            if child.name == name:
                yield child
            yield from child.iter(name)


# Elements that repeat in these documents: numbered in paths, so a message points at the right one.
_REPEATED = frozenset({"TimeSeries", "Period", "Point", "Reason"})


class _Refused(Exception):
    """Internal: the document declares a DTD or entity, which we never process."""


def parse_xml(body: bytes, *, where: str, source: str = SOURCE, secrets: Iterable[str] = ()) -> XmlNode:
    """Parse ``body`` into :class:`XmlNode` objects; DTDs and entities are refused, never expanded.

    A truncated or garbled document raises :class:`MalformedPayloadError` naming the line, column and
    the element that was open when parsing stopped.

    :param body: the raw response body.
    :param where: the request, for error messages (secrets already redacted).
    :param source: the source name for errors.
    :param secrets: strings never to repeat in a message (an error page may echo the request URL).
    """
    if not body.strip():
        raise MalformedPayloadError(f"{where}: the body is empty, expected XML", source=source)
    parser = expat.ParserCreate(namespace_separator="}")
    stack: list[XmlNode] = []
    counts: list[dict[str, int]] = [{}]
    root: list[XmlNode] = []

    def start(name: str, _attributes: dict[str, str]) -> None:
        local = name.rsplit("}", 1)[-1]
        siblings = counts[-1]
        siblings[local] = siblings.get(local, 0) + 1
        parent = stack[-1] if stack else None
        index = f"[{siblings[local]}]" if local in _REPEATED else ""
        node = XmlNode(local, f"{parent.path}/{local}{index}" if parent else local)
        if parent is not None:
            parent.children.append(node)
        else:
            root.append(node)
        stack.append(node)
        counts.append({})

    def end(_name: str) -> None:
        stack.pop()
        counts.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].parts.append(data)

    def refuse(*_args: Any) -> None:
        raise _Refused

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except _Refused:
        raise MalformedPayloadError(
            f"{where}: the XML declares a DTD or entities, which are refused", source=source
        ) from None
    except expat.ExpatError as exc:
        inside = f" inside {stack[-1].path}" if stack else ""
        raise MalformedPayloadError(
            f"{where}: the XML is truncated or malformed ({expat.ErrorString(exc.code)} at line {exc.lineno},"
            f" column {exc.offset}){inside}; first bytes: {redact_text(repr(body[:80]), secrets)}",
            source=source,
        ) from None
    return root[0]


# -- documents -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PricePeriod:
    """The points of one ``Period`` of one ``TimeSeries``.

    :param start: the period's start (UTC).
    :param end: the period's end (UTC).
    :param resolution: the spacing of positions.
    :param sequence: the ``classificationSequence`` position of its TimeSeries, if given.
    :param currency: ``currency_Unit.name`` of its TimeSeries.
    :param energy_unit: ``price_Measure_Unit.name`` of its TimeSeries.
    :param points: ``(start, end, price)`` after the curve type is applied.
    :param where: the Period's path, for messages.
    """

    start: datetime
    end: datetime
    resolution: IsoDuration
    sequence: int | None
    currency: str
    energy_unit: str
    points: tuple[RawPoint, ...]
    where: str


@dataclass(frozen=True)
class PriceDocument:
    """A parsed ``Publication_MarketDocument``.

    :param created: ``createdDateTime``: when the platform built this answer.
    :param periods: every Period of every TimeSeries, in document order.
    """

    created: datetime | None
    periods: tuple[PricePeriod, ...]


def _required_text(node: XmlNode, path: str) -> str:
    text = node.find_text(path)
    if not text:
        raise MalformedPayloadError(f"{node.path}: element {path!r} is missing or empty", source=SOURCE)
    return text


def _curve_points(period: XmlNode, start: datetime, end: datetime, step: IsoDuration, curve: str) -> list[RawPoint]:
    """Positions -> times; A03 forward-fills omitted positions to the end of the period."""
    count = 0
    boundary = start
    while boundary < end:
        count += 1
        if count > MAX_POSITIONS:
            raise MalformedPayloadError(f"{period.path}: more than {MAX_POSITIONS} positions", source=SOURCE)
        boundary = step.after(start, count)
    if boundary != end:
        raise MalformedPayloadError(
            f"{period.path}: timeInterval {format_time(start)}/{format_time(end)} is not a whole number of"
            " resolution steps",
            source=SOURCE,
        )
    prices: dict[int, float] = {}
    for point in period.all("Point"):
        raw_position = _required_text(point, "position")
        try:
            position = int(raw_position)
        except ValueError:
            raise MalformedPayloadError(
                f"{point.path}/position: {raw_position!r} is not an integer", source=SOURCE
            ) from None
        if not 1 <= position <= count:
            raise MalformedPayloadError(
                f"{point.path}/position: {position} is outside 1..{count} for this period", source=SOURCE
            )
        if position in prices:
            raise MalformedPayloadError(f"{point.path}/position: {position} appears twice", source=SOURCE)
        prices[position] = parse_number(
            _required_text(point, "price.amount"), source=SOURCE, where=f"{point.path}/price.amount"
        )
    points: list[RawPoint] = []
    previous: float | None = None
    for position in range(1, count + 1):
        value = prices.get(position)
        if value is None and curve == "A03":
            value = previous
        if value is None:
            continue  # A01 with a missing position (or A03 before its first point): a visible gap
        points.append((step.after(start, position - 1), step.after(start, position), value))
        previous = value
    return points


def _sequence(series: XmlNode) -> int | None:
    raw = series.find_text("classificationSequence_AttributeInstanceComponent.position")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MalformedPayloadError(
            f"{series.path}: classificationSequence position {raw!r} is not an integer", source=SOURCE
        ) from None


def parse_publication(root: XmlNode) -> PriceDocument:
    """Every Period of a ``Publication_MarketDocument``, with positions turned into UTC times.

    :param root: the document element.
    """
    created_text = root.find_text("createdDateTime")
    created = parse_time(created_text, source=SOURCE, where=f"{root.path}/createdDateTime") if created_text else None
    periods: list[PricePeriod] = []
    for series in root.all("TimeSeries"):
        curve = series.find_text("curveType") or "A01"  # the guide's default when absent
        if curve not in {"A01", "A03"}:
            raise MalformedPayloadError(
                f"{series.path}/curveType: {curve!r} is not supported (A01 or A03)", source=SOURCE
            )
        currency = _required_text(series, "currency_Unit.name")
        energy_unit = _required_text(series, "price_Measure_Unit.name")
        sequence = _sequence(series)
        for period in series.all("Period"):
            start = parse_time(
                _required_text(period, "timeInterval/start"), source=SOURCE, where=f"{period.path}/timeInterval/start"
            )
            end = parse_time(
                _required_text(period, "timeInterval/end"), source=SOURCE, where=f"{period.path}/timeInterval/end"
            )
            if end <= start:
                raise MalformedPayloadError(f"{period.path}/timeInterval: end is not after start", source=SOURCE)
            resolution_text = _required_text(period, "resolution")
            try:
                step = parse_duration(resolution_text)
            except ValueError as exc:
                raise MalformedPayloadError(f"{period.path}/resolution: {exc}", source=SOURCE) from None
            points = _curve_points(period, start, end, step, curve)
            periods.append(PricePeriod(start, end, step, sequence, currency, energy_unit, tuple(points), period.path))
    return PriceDocument(created, tuple(periods))


def acknowledgement_error(
    root: XmlNode, *, where: str, zone: str, status: int, secrets: Iterable[str] = ()
) -> NoSignalDataError | SourceRequestError:
    """The error an ``Acknowledgement_MarketDocument`` stands for: no data, or a refused request.

    :param root: the acknowledgement document.
    :param where: the request, secrets redacted.
    :param zone: the zone asked for.
    :param status: the HTTP status it came with (200 or 400, usually).
    :param secrets: strings to redact from the reason text.
    """
    reasons = []
    for reason in root.iter("Reason"):
        code, text = reason.find_text("code"), reason.find_text("text")
        reasons.append(" ".join(part for part in (f"[{code}]" if code else "", text or "") if part))
    reason_text = redact_text("; ".join(reasons) or "no reason given", secrets)
    if NO_DATA_REASON in reason_text.lower():
        return NoSignalDataError(f"no day-ahead prices for {zone}: {reason_text}", source=SOURCE)
    return SourceRequestError(
        f"{where} -> HTTP {status}: the platform refused the request: {reason_text}", source=SOURCE, status=status
    )


def read_response(response: HttpResponse, *, zone: str, secrets: Iterable[str] = ()) -> PriceDocument:
    """A price document from ``response``, or the typed error its acknowledgement or status stands for.

    :param response: the answer to an A44 request (HTTP 400 included: it carries the reason).
    :param zone: the zone asked for, for messages.
    :param secrets: strings never to repeat in a message.
    """
    where = f"GET {response.display_url}"
    if response.status >= 400:
        try:
            root: XmlNode | None = parse_xml(response.body, where=where, secrets=secrets)
        except MalformedPayloadError:
            root = None
        if root is not None and root.name == ACKNOWLEDGEMENT:
            raise acknowledgement_error(root, where=where, zone=zone, status=response.status, secrets=secrets)
        excerpt = redact_text(response.text[:BODY_EXCERPT_CHARS], secrets).strip()
        raise SourceRequestError(
            f"{where} -> HTTP {response.status}" + (f": {excerpt}" if excerpt else ""),
            source=SOURCE,
            status=response.status,
        )
    root = parse_xml(response.body, where=where, secrets=secrets)
    if root.name == ACKNOWLEDGEMENT:
        raise acknowledgement_error(root, where=where, zone=zone, status=response.status, secrets=secrets)
    if root.name != PUBLICATION:
        raise MalformedPayloadError(f"{where}: expected a {PUBLICATION}, got <{root.name}>", source=SOURCE)
    return parse_publication(root)


# -- periods -> one series -------------------------------------------------------------------------
_ENERGY_UNITS = {"MWH": "MWh", "KWH": "kWh"}


def select_periods(periods: Iterable[PricePeriod]) -> list[PricePeriod]:
    """Keep one auction: TimeSeries without a classificationSequence or at position 1.

    When no kept TimeSeries has position 1 or none, the lowest position present is kept instead,
    so the choice never depends on document order.
    """
    periods = list(periods)
    kept = [p for p in periods if p.sequence in (None, 1)]
    if kept or not periods:
        return kept
    lowest = min(p.sequence for p in periods if p.sequence is not None)
    return [p for p in periods if p.sequence == lowest]


def merge_points(periods: Iterable[PricePeriod]) -> list[RawPoint]:
    """One non-overlapping, ordered list of points: finer resolutions first, then first come first kept.

    Repeated days (chunk edges) and a day published at two resolutions both collapse to one.
    """
    ordered = sorted(periods, key=lambda p: (p.resolution.nominal, p.start))
    starts: list[datetime] = []
    kept: list[RawPoint] = []
    for period in ordered:
        for point in period.points:
            start, end, _ = point
            index = bisect.bisect_right(starts, start)
            if index > 0 and kept[index - 1][1] > start:
                continue
            if index < len(kept) and kept[index][0] < end:
                continue
            starts.insert(index, start)
            kept.insert(index, point)
    return kept


def build_price_series(
    documents: Iterable[PriceDocument],
    *,
    zone: str,
    issued_at: datetime | None,
) -> SignalSeries:
    """A validated EUR/MWh (or other currency) series from parsed documents.

    :param documents: the documents of every chunk.
    :param zone: the zone as the caller named it.
    :param issued_at: stamped on the series (``None`` for settled history).
    """
    periods = select_periods(p for doc in documents for p in doc.periods)
    if not periods or not any(p.points for p in periods):
        raise NoSignalDataError(f"no day-ahead prices for {zone} in the response", source=SOURCE)
    currencies = {p.currency for p in periods}
    energy_units = {p.energy_unit.strip().upper() for p in periods}
    if len(currencies) > 1 or len(energy_units) > 1:
        raise InvalidSignalError(
            f"the TimeSeries for {zone} mix units: currencies {sorted(currencies)}, energy units {sorted(energy_units)}",
            source=SOURCE,
        )
    currency, energy_unit = currencies.pop(), energy_units.pop()
    energy = _ENERGY_UNITS.get(energy_unit)
    if energy is None:
        raise UnknownUnitError(
            f"{periods[0].where.rsplit('/', 1)[0]}/price_Measure_Unit.name: {energy_unit!r} is not an energy unit"
            f" ({', '.join(_ENERGY_UNITS)})",
            source=SOURCE,
        )
    try:
        return build_series(
            kind=SignalKind.PRICE,
            zone=zone,
            source=SOURCE,
            series_type=SeriesType.ACTUAL,
            unit=f"{currency}/{energy}",
            currency=currency,
            issued_at=issued_at,
            points=merge_points(periods),
        )
    except UnknownUnitError as exc:
        if exc.source:
            raise
        raise UnknownUnitError(f"currency_Unit.name {currency!r}: {exc}", source=SOURCE) from None


def caller_time(value: datetime | None, what: str, source: str = SOURCE) -> datetime | None:
    """A query bound in UTC; a naive one is a :class:`SourceConfigError` (its zone would be a guess).

    :param value: the caller's bound, or ``None``.
    :param what: ``start`` or ``end``, for the message.
    :param source: the source name for the error.
    """
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise SourceConfigError(
            f"query {what} {value.isoformat()} has no timezone: pass an aware datetime (UTC)", source=source
        )
    return value.astimezone(timezone.utc)


def _period_param(value: datetime, *, up: bool = False) -> str:
    """``yyyyMMddHHmm`` in UTC; the end is rounded up so the whole range is asked for."""
    minute = timedelta(minutes=1)
    floored = floor_time(value, minute)
    if up and floored < value:
        floored += minute
    return floored.strftime("%Y%m%d%H%M")


def signal_flow(settings: SourceSettings, query: SignalQuery, now: datetime | None = None) -> Flow[SignalSeries]:
    """Day-ahead prices for ``query.zone`` as one validated series.

    Forecast queries ask from the start of the current UTC day (or ``query.start``) to two days later
    (or ``query.end``). Day-ahead prices are not a forecast: the auction fixes them for the next day
    and they never change, so they come back as :attr:`SeriesType.ACTUAL`. They are still values
    ahead of now, so ``issued_at`` is set: to the document's ``createdDateTime``, the time the
    platform built the answer. That is a safe upper bound on when the prices were known (a backtest
    never sees them earlier than they were), though the auction result is usually hours older.

    Actual queries ask for ``[query.start, query.end)`` (default: the last 24 hours) in requests of at
    most one year; ``issued_at`` is ``None``. A chunk the platform has no data for is a gap; no data
    at all is :class:`NoSignalDataError`.

    :param settings: the connection; its password is the security token.
    :param query: zone (EIC or short name), range, forecast or not.
    :param now: the current time (tests).
    """
    token = settings.require_password("ENTSO-E security token")
    eic = zone_eic(query.zone)
    now = now or utcnow()
    wanted_start, wanted_end = caller_time(query.start, "start"), caller_time(query.end, "end")
    if query.forecast:
        start = wanted_start or floor_time(now, DAY)
        end = wanted_end or start + FORECAST_SPAN
    else:
        end = wanted_end or now
        start = wanted_start or end - ACTUALS_SPAN
    if end <= start:
        raise SourceConfigError(
            f"the range {format_time(start)} .. {format_time(end)} is empty: end must be after start", source=SOURCE
        )
    documents: list[PriceDocument] = []
    no_data: list[NoSignalDataError] = []
    cursor = start
    while cursor < end:
        chunk_end = min(end, cursor + MAX_RANGE)
        response = yield HttpRequest(
            "GET",
            settings.url(API_PATH),
            params={
                "securityToken": token,
                "documentType": "A44",
                "in_Domain": eic,
                "out_Domain": eic,
                "periodStart": _period_param(cursor),
                "periodEnd": _period_param(chunk_end, up=True),
            },
            headers={"Accept": "application/xml"},
            # The platform explains a refused query in an acknowledgement document sent with HTTP 400.
            accept_statuses=frozenset({400}),
        )
        try:
            documents.append(read_response(response, zone=query.zone, secrets=(token,)))
        except NoSignalDataError as exc:
            no_data.append(exc)
        cursor = chunk_end
    if not documents:
        raise no_data[-1]
    issued_at: datetime | None = None
    if query.forecast:
        created = [doc.created for doc in documents if doc.created is not None]
        if not created:
            raise MalformedPayloadError(f"{PUBLICATION}/createdDateTime is missing", source=SOURCE)
        issued_at = max(created)
    series = build_price_series(documents, zone=query.zone, issued_at=issued_at).between(start, end)
    if not series.points:
        raise NoSignalDataError(
            f"no day-ahead prices for {query.zone} between {format_time(start)} and {format_time(end)}",
            source=SOURCE,
        )
    return series
