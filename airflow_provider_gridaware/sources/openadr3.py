"""OpenADR 3 (REST/JSON): a VTN's programs, events and subscriptions, normalised to :class:`GridEvent`. Sans-I/O.

Both published shapes are read: 3.0.1 (targets as ``[{"type", "values"}]``) and 3.1 (targets as strings,
an event-level ``duration`` that clips or loops the intervals). What OpenADR 3 does not say, we derive:

- **status**: OpenADR 3 has no ``eventStatus``. It follows from the intervals at the time we received the
  event (far, near within ``near`` of the start, active, completed); a deleted event (DELETE notification,
  or gone from the VTN's list) is cancelled, and so is the User Guide's "start 0001-01-01, duration PT0S".
- **modification number**: neither 3.0.1 nor 3.1 defines one (objects carry ``modificationDateTime``
  only). A ``modificationNumber`` field is used if a VTN sends one; otherwise it is the whole seconds from
  2020-01-01T00:00Z to ``modificationDateTime`` (fits the store's 32-bit column until 2088), and
  :func:`sequence_modification` separates two modifications within one second.
- **durations**: ISO 8601 (``PT15M``, ``P1D``, ``P1Y2M``); ``P9999Y`` (and a missing or ``PT0S`` duration
  on the last interval) is open-ended, stored as :data:`OPEN_END`. Multi-valued payloads are sub-intervals
  (the interval's duration divided by the number of values), as the 3.1 User Guide says.
- **units**: PRICE per KWH/MWH/WH becomes ``<currency>/MWh``; capacity limits in W/KW/MW become kW.
"""

from __future__ import annotations

import calendar
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_gridaware.signals.errors import (
    GridSignalError,
    MalformedPayloadError,
    SourceConfigError,
)
from airflow_provider_gridaware.signals.grid_event import (
    EventSignalKind,
    EventStatus,
    GridEvent,
    build_event,
)
from airflow_provider_gridaware.sources.common import parse_number, parse_time
from airflow_provider_gridaware.sources.flow import Flow
from airflow_provider_gridaware.sources.rest import TOKEN_CACHE, OnSecret, client_credentials_flow
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.times import UTC
from airflow_provider_gridaware.transport.http import HttpRequest, HttpResponse

PROTOCOL = "openadr3"
#: the end of an open-ended ("P9999Y") interval: no datetime reaches 9999 years past 2026.
OPEN_END = datetime.max.replace(tzinfo=UTC)
#: derived modification numbers count seconds from here (a 32-bit column lasts until 2088).
MODIFICATION_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)
#: an event starting within this is "near" (OpenADR 3 has no notification window of its own).
DEFAULT_NEAR = timedelta(hours=1)
#: an event looping for ever (event.duration P9999Y) is spelled out this far past its receipt.
LOOP_HORIZON = timedelta(days=7)
#: more intervals than this in one event (after loops and sub-intervals) is refused, not materialised.
MAX_INTERVALS = 10_000
#: the spec's maximum ``limit`` for list endpoints.
PAGE_SIZE = 50
INFINITE_YEARS = 9999
# OpenADR 3's "beginning of time" start: 'now' for the first interval (3.0.1 wrote 0000-00-00, 3.1 0001-01-01).
_BEGINNING_OF_TIME = re.compile(r"^(0000-00-00|0001-01-01)(T00:00(:00(\.0+)?)?(Z|[+-]00:?00)?)?$")
_DURATION = re.compile(
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
# KWH prices are per kWh: x1000 per MWh.
_PRICE_PER_MWH = {"KWH": 1000.0, "MWH": 1.0, "WH": 1_000_000.0}
_POWER_TO_KW = {"W": 0.001, "KW": 1.0, "MW": 1000.0}
_LIMIT_KINDS = {
    "IMPORT_CAPACITY_LIMIT": EventSignalKind.IMPORT_CAPACITY_LIMIT,
    "EXPORT_CAPACITY_LIMIT": EventSignalKind.EXPORT_CAPACITY_LIMIT,
}
#: notification operations: 3.0.1 and the published examples use HTTP verbs, 3.1's schema CRUD names.
LIVE_OPERATIONS = frozenset({"POST", "PUT", "GET", "CREATE", "UPDATE", "READ"})
DELETE_OPERATIONS = frozenset({"DELETE"})


# -- durations -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration: calendar years and months, plus an exact part; ``infinite`` for ``P9999Y``."""

    years: int = 0
    months: int = 0
    exact: timedelta = timedelta(0)
    infinite: bool = False

    @property
    def is_zero(self) -> bool:
        return not self.infinite and not self.years and not self.months and not self.exact

    def after(self, start: datetime) -> datetime:
        """``start`` plus this duration (calendar months clamp to the month's last day); open end if infinite."""
        if self.infinite:
            return OPEN_END
        month_index = start.month - 1 + self.months
        year = start.year + self.years + month_index // 12
        month = month_index % 12 + 1
        if year > OPEN_END.year:
            return OPEN_END
        day = min(start.day, _days_in_month(year, month))
        try:
            return start.replace(year=year, month=month, day=day) + self.exact
        except OverflowError:
            return OPEN_END


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def parse_duration(value: Any, *, source: str, where: str) -> Duration:
    """An ISO 8601 duration (``PT15M``, ``P1DT2H``, ``P2W``); ``P9999Y`` or more is infinite; negative is refused."""
    if not isinstance(value, str):
        raise MalformedPayloadError(f"{where}: expected an ISO 8601 duration, got {value!r}", source=source)
    match = _DURATION.match(value.strip())
    if match is None:
        raise MalformedPayloadError(f"{where}: {value!r} is not an ISO 8601 duration (e.g. PT1H)", source=source)
    sign, years, months, days, unit, hours, minutes, seconds = match.groups()
    if sign:
        raise MalformedPayloadError(f"{where}: negative duration {value!r}", source=source)
    if int(years or 0) >= INFINITE_YEARS:
        return Duration(infinite=True)
    day_count = int(days or 0) * (7 if unit == "W" else 1)
    exact = timedelta(days=day_count, hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))
    return Duration(years=int(years or 0), months=int(months or 0), exact=exact)


def format_duration_iso(value: timedelta) -> str:
    """``PT15M``-style text for a timedelta (the emulator and subscriptions write durations)."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return f"P{f'{days}D' if days else ''}{f'T{clock}' if clock else ('' if days else 'T0S')}"


def is_beginning_of_time(value: Any) -> bool:
    """The spec's "0001-01-01" (3.0.1 wrote "0000-00-00"): 'now' as an interval start."""
    return isinstance(value, str) and _BEGINNING_OF_TIME.match(value.strip()) is not None


# -- program names ---------------------------------------------------------------------------------
class ProgramNames:
    """Program id -> name, learned from ``GET /programs`` in this process, so webhook notifications (which
    carry only ``programID``) name the program as polling does. Thread-safe."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, names: Mapping[str, str]) -> None:
        with self._lock:
            self._names.update(names)

    def get(self, program_id: str) -> str | None:
        with self._lock:
            return self._names.get(program_id)

    def clear(self) -> None:
        with self._lock:
            self._names.clear()


PROGRAM_NAMES = ProgramNames()


# -- one event -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Span:
    start: datetime
    end: datetime
    payloads: Sequence[Any]
    where: str


def _object(value: Any, *, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedPayloadError(f"{where}: expected a JSON object, got {type(value).__name__}", source=source)
    return value


def _start_of(raw: Any, *, source: str, where: str) -> datetime | None:
    """A start time, or ``None`` for the spec's beginning of time ('now' or 'right after the previous')."""
    if is_beginning_of_time(raw):
        return None
    return parse_time(raw, source=source, where=where)


def _spans(event: Mapping[str, Any], *, source: str, where: str, received_at: datetime) -> tuple[list[_Span], bool]:
    """Every interval's ``[start, end)`` with its payloads, and whether the event is cancelled by convention."""
    default = event.get("intervalPeriod")
    default_start: datetime | None = None
    default_duration: Duration | None = None
    cancelled = False
    if default is not None:
        default = _object(default, source=source, where=f"{where}.intervalPeriod")
        if "start" in default and default["start"] is not None:
            default_start = _start_of(default["start"], source=source, where=f"{where}.intervalPeriod.start")
        if default.get("duration") is not None:
            default_duration = parse_duration(
                default["duration"], source=source, where=f"{where}.intervalPeriod.duration"
            )
        # User Guide 7.9: start "0001-01-01" with duration "PT0S" is how a VTN cancels without deleting.
        cancelled = (
            is_beginning_of_time(default.get("start")) and default_duration is not None and default_duration.is_zero
        )
    intervals = event.get("intervals")
    if not isinstance(intervals, list):
        raise MalformedPayloadError(f"{where}: field 'intervals' is missing or not a list", source=source)
    spans: list[_Span] = []
    previous_end: datetime | None = None
    for index, interval in enumerate(intervals):
        at = f"{where}.intervals[{index}]"
        interval = _object(interval, source=source, where=at)
        period = interval.get("intervalPeriod")
        start: datetime | None = None
        duration = default_duration
        if period is not None:
            period = _object(period, source=source, where=f"{at}.intervalPeriod")
            if period.get("start") is not None:
                start = _start_of(period["start"], source=source, where=f"{at}.intervalPeriod.start")
            if period.get("duration") is not None:
                duration = parse_duration(period["duration"], source=source, where=f"{at}.intervalPeriod.duration")
        if start is None:
            start = previous_end or default_start or received_at  # 'do it now' when nothing says otherwise
        if previous_end == OPEN_END:
            raise MalformedPayloadError(
                f"{where}.intervals[{index - 1}]: an open-ended interval (P9999Y or no duration) must be the last",
                source=source,
            )
        # No duration (the spec's default PT0S) or P9999Y: until further notice.
        end = OPEN_END if duration is None or duration.is_zero else duration.after(start)
        payloads = interval.get("payloads")
        if not isinstance(payloads, list):
            raise MalformedPayloadError(f"{at}: field 'payloads' is missing or not a list", source=source)
        spans.append(_Span(start, end, payloads, at))
        previous_end = end
    return spans, cancelled


def _apply_event_duration(
    spans: list[_Span], raw: Any, *, source: str, where: str, received_at: datetime
) -> list[_Span]:
    """3.1's event.duration: shorter than the intervals clips them, longer repeats them (P9999Y: for ever)."""
    if raw is None or not spans:
        return spans
    duration = parse_duration(raw, source=source, where=f"{where}.duration")
    first = min(s.start for s in spans)
    last = max(s.end for s in spans)
    if duration.is_zero or (duration.infinite and last == OPEN_END):
        return spans  # nothing to clip, or an open-ended pattern that cannot repeat
    window_end = received_at + LOOP_HORIZON if duration.infinite else duration.after(first)
    period = last - first
    out: list[_Span] = []
    shift = timedelta(0)
    while True:
        for span in spans:
            start = span.start + shift
            if start >= window_end:
                return out
            out.append(_Span(start, min(span.end + shift, window_end), span.payloads, span.where))
            if len(out) > MAX_INTERVALS:
                raise MalformedPayloadError(
                    f"{where}.duration: {raw!r} repeats the intervals more than {MAX_INTERVALS} times", source=source
                )
        if last == OPEN_END or period <= timedelta(0):
            return out
        shift += period


@dataclass(frozen=True)
class _Descriptor:
    units: str | None
    currency: str | None


def _descriptors(event: Mapping[str, Any], *, source: str, where: str) -> dict[str, _Descriptor]:
    raw = event.get("payloadDescriptors") or []
    if not isinstance(raw, list):
        raise MalformedPayloadError(f"{where}.payloadDescriptors: expected a list", source=source)
    found: dict[str, _Descriptor] = {}
    for index, item in enumerate(raw):
        at = f"{where}.payloadDescriptors[{index}]"
        item = _object(item, source=source, where=at)
        kind = item.get("payloadType")
        if not isinstance(kind, str) or not kind:
            raise MalformedPayloadError(f"{at}: field 'payloadType' is missing", source=source)
        units, currency = item.get("units"), item.get("currency")
        found[kind] = _Descriptor(
            str(units).strip().upper() if units else None, str(currency).strip().upper() if currency else None
        )
    return found


def _conversion(
    payload_type: str, descriptor: _Descriptor | None, *, source: str, where: str
) -> tuple[EventSignalKind, str | None, str | None, float]:
    """(kind, unit, currency, factor) for one payload type, or a clear error naming the descriptor field."""
    at = f"{where}.payloadDescriptors[payloadType={payload_type}]"
    if payload_type == "SIMPLE":
        return EventSignalKind.SIMPLE, "level", None, 1.0
    if payload_type == "PRICE":
        if descriptor is None:
            raise MalformedPayloadError(f"{at}: missing: a PRICE needs its units and currency", source=source)
        if not descriptor.currency or len(descriptor.currency) != 3 or not descriptor.currency.isalpha():
            raise MalformedPayloadError(
                f"{at}.currency: {descriptor.currency!r} is not an ISO 4217 code", source=source
            )
        factor = _PRICE_PER_MWH.get(descriptor.units or "")
        if factor is None:
            known = ", ".join(_PRICE_PER_MWH)
            raise MalformedPayloadError(
                f"{at}.units: a price per {descriptor.units!r} cannot become per MWh (one of {known})", source=source
            )
        return EventSignalKind.PRICE, f"{descriptor.currency}/MWh", descriptor.currency, factor
    if payload_type in _LIMIT_KINDS:
        units = descriptor.units if descriptor else None
        factor = _POWER_TO_KW.get(units or "")
        if factor is None:
            known = ", ".join(_POWER_TO_KW)
            raise MalformedPayloadError(f"{at}.units: {units!r} is not a power unit ({known})", source=source)
        return _LIMIT_KINDS[payload_type], "kW", None, factor
    return EventSignalKind.OTHER, descriptor.units if descriptor else None, None, 1.0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _signals(
    spans: list[_Span], descriptors: Mapping[str, _Descriptor], *, source: str, where: str
) -> list[dict[str, Any]]:
    """One signal per payload type, in order of first appearance; multi-valued payloads are sub-intervals."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    skipped: set[str] = set()
    for span in spans:
        for index, payload in enumerate(span.payloads):
            at = f"{span.where}.payloads[{index}]"
            payload = _object(payload, source=source, where=at)
            payload_type = payload.get("type")
            if not isinstance(payload_type, str) or not payload_type:
                raise MalformedPayloadError(f"{at}: field 'type' is missing", source=source)
            values = payload.get("values")
            if not isinstance(values, list) or not values:
                raise MalformedPayloadError(f"{at}.values: expected a non-empty list, got {values!r}", source=source)
            kind, *_ = _conversion(payload_type, descriptors.get(payload_type), source=source, where=where)
            if kind is EventSignalKind.OTHER and not all(_is_number(v) for v in values):
                skipped.add(payload_type)  # text, booleans and points: carried by no GridEvent signal
                continue
            numbers = [parse_number(v, source=source, where=f"{at}.values[{i}]") for i, v in enumerate(values)]
            if len(numbers) > 1 and span.end == OPEN_END:
                raise MalformedPayloadError(
                    f"{at}.values: {len(numbers)} values cannot share an open-ended interval", source=source
                )
            step = (span.end - span.start) / len(numbers) if len(numbers) > 1 else None
            rows = by_type.setdefault(payload_type, [])
            for i, number in enumerate(numbers):
                start = span.start + i * step if step else span.start
                end = span.start + (i + 1) * step if step else span.end
                rows.append({"start": start, "end": end, "value": number})
            if len(rows) > MAX_INTERVALS:
                raise MalformedPayloadError(f"{at}: more than {MAX_INTERVALS} {payload_type} intervals", source=source)
    signals = []
    for payload_type, rows in by_type.items():
        kind, unit, currency, factor = _conversion(
            payload_type, descriptors.get(payload_type), source=source, where=where
        )
        intervals = sorted(({**r, "value": r["value"] * factor} for r in rows), key=lambda r: r["start"])
        signals.append({"kind": kind, "name": payload_type, "unit": unit, "currency": currency, "intervals": intervals})
    if not signals and skipped:
        raise MalformedPayloadError(
            f"{where}.intervals: no numeric payload to carry (only {', '.join(sorted(skipped))})", source=source
        )
    return signals


def _targets(raw: Any, *, source: str, where: str) -> list[dict[str, str]]:
    """3.0.1 ``[{"type": "GROUP", "values": [...]}]`` or 3.1 ``["group-airflow"]``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise MalformedPayloadError(f"{where}.targets: expected a list, got {type(raw).__name__}", source=source)
    targets = []
    for index, item in enumerate(raw):
        at = f"{where}.targets[{index}]"
        if isinstance(item, str):
            targets.append({"kind": "target", "value": item})
            continue
        item = _object(item, source=source, where=at)
        kind, values = item.get("type"), item.get("values")
        if not isinstance(kind, str) or not kind or not isinstance(values, list):
            raise MalformedPayloadError(f"{at}: expected {{'type': ..., 'values': [...]}}", source=source)
        targets.extend({"kind": kind.lower(), "value": str(v)} for v in values)
    return targets


def modification_number_of(event: Mapping[str, Any], *, source: str, where: str) -> int:
    """A VTN's own ``modificationNumber`` if it sends one, else whole seconds from 2020 to the last modification."""
    explicit = event.get("modificationNumber")
    if explicit is not None:
        if not isinstance(explicit, int) or isinstance(explicit, bool) or explicit < 0:
            raise MalformedPayloadError(
                f"{where}.modificationNumber: expected a non-negative integer, got {explicit!r}", source=source
            )
        return explicit
    modified = _modified_at(event, source=source, where=where)
    if modified is None:
        return 0
    return max(0, int((modified - MODIFICATION_EPOCH).total_seconds()))


def _modified_at(event: Mapping[str, Any], *, source: str, where: str) -> datetime | None:
    for key in ("modificationDateTime", "createdDateTime"):
        if event.get(key) is not None:
            return parse_time(event[key], source=source, where=f"{where}.{key}")
    return None


def status_at(start: datetime | None, end: datetime | None, when: datetime, near: timedelta) -> EventStatus:
    """Far, near, active or completed at ``when`` from the event's span (OpenADR 3 has no eventStatus)."""
    if start is None or end is None:
        return EventStatus.ACTIVE
    if when >= end:
        return EventStatus.COMPLETED
    if when >= start:
        return EventStatus.ACTIVE
    return EventStatus.NEAR if start - when <= near else EventStatus.FAR


def parse_event(
    event: Any,
    *,
    source: str,
    received_at: datetime,
    programs: Mapping[str, str] | None = None,
    deleted: bool = False,
    near: timedelta = DEFAULT_NEAR,
) -> GridEvent:
    """One OpenADR 3.0.1 or 3.1 event object as a :class:`GridEvent`.

    :param event: the event object (parsed JSON).
    :param source: ``openadr3:<connection id>``.
    :param received_at: when we received it; statuses are relative to it.
    :param programs: program id -> name; unknown ids fall back to names learned in this process, then the id.
    :param deleted: the VTN deleted it (a DELETE notification, or gone from its list): cancelled.
    :param near: an event starting within this of ``received_at`` is near, not far.
    :raises MalformedPayloadError: a field is missing or of the wrong shape (the message names it).
    :raises InvalidSignalError: the values break a rule of :class:`GridEvent` (a SIMPLE level of 7 ...).
    """
    received_at = received_at.astimezone(UTC)
    event_id = event.get("id") if isinstance(event, Mapping) else None
    where = f"event {event_id!r}" if isinstance(event_id, str) else "event"
    event = _object(event, source=source, where=where)
    if not isinstance(event_id, str) or not event_id:
        raise MalformedPayloadError(f"{where}: field 'id' is missing or not a string", source=source)
    program_id = event.get("programID")
    if not isinstance(program_id, str) or not program_id:
        raise MalformedPayloadError(f"{where}: field 'programID' is missing or not a string", source=source)
    priority = event.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise MalformedPayloadError(f"{where}.priority: expected an integer, got {priority!r}", source=source)
    spans, cancelled = _spans(event, source=source, where=where, received_at=received_at)
    spans = _apply_event_duration(spans, event.get("duration"), source=source, where=where, received_at=received_at)
    signals = (
        []
        if cancelled
        else _signals(spans, _descriptors(event, source=source, where=where), source=source, where=where)
    )
    if deleted or cancelled:
        status = EventStatus.CANCELLED
    else:
        starts = [row["start"] for s in signals for row in s["intervals"]]
        ends = [row["end"] for s in signals for row in s["intervals"]]
        status = status_at(min(starts, default=None), max(ends, default=None), received_at, near)
    return build_event(
        source=source,
        protocol=PROTOCOL,
        event_id=event_id,
        modification_number=modification_number_of(event, source=source, where=where),
        program=(programs or {}).get(program_id) or PROGRAM_NAMES.get(program_id) or program_id,
        status=status,
        signals=signals,
        targets=_targets(event.get("targets"), source=source, where=where),
        priority=priority,
        created_at=_modified_at(event, source=source, where=where),
        received_at=received_at,
    )


def cancelled_copy(event: GridEvent, *, received_at: datetime) -> GridEvent:
    """``event`` as cancelled (the VTN deleted it), same modification number: the store records a new status."""
    return event.model_copy(update={"status": EventStatus.CANCELLED, "received_at": received_at.astimezone(UTC)})


def sequence_modification(event: GridEvent, previous: GridEvent | None) -> GridEvent:
    """Place ``event`` after the stored ``previous`` state when a derived modification number cannot.

    Derived numbers have one-second resolution: two modifications within a second get the same number, and
    the store would take the second for a duplicate. When the numbers tie (or ``previous`` was already moved
    up by this rule) but ``event`` is a newer modification (later ``created_at``, which holds the VTN's
    ``modificationDateTime``) with other content, it gets ``previous + 1``. Unchanged content keeps the
    stored number, so a status change is recorded as one. An older modification is left alone (stale).
    """
    if previous is None or event.modification_number > previous.modification_number:
        return event
    if _content(event) == _content(previous):
        return event.model_copy(update={"modification_number": previous.modification_number})
    if event.created_at is not None and previous.created_at is not None and event.created_at > previous.created_at:
        return event.model_copy(update={"modification_number": previous.modification_number + 1})
    return event


def _content(event: GridEvent) -> tuple[Any, ...]:
    return (event.program, event.signals, event.targets, event.priority, event.test_event)


# -- webhook notifications -------------------------------------------------------------------------
def parse_openadr3_notification(body: bytes | dict, *, source: str, received_at: datetime) -> list[GridEvent]:
    """The events of one OpenADR 3 webhook notification (what a VTN POSTs to a subscription's callbackUrl).

    ``objectType`` EVENT with ``operation`` POST/PUT (3.1: CREATE/UPDATE) gives the event's new state,
    DELETE gives it cancelled; notifications about other objects (programs, reports ...) carry no event
    and give ``[]``.

    :param body: the request body, raw or parsed.
    :param source: ``openadr3:<connection id>`` of the subscription, so states join the polled ones.
    :param received_at: when the relay received it.
    :raises MalformedPayloadError: not JSON, or a field missing or of the wrong shape (named).
    """
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(f"notification: body is not JSON ({exc})", source=source) from None
    note = _object(body, source=source, where="notification")
    object_type = note.get("objectType")
    if not isinstance(object_type, str):
        raise MalformedPayloadError("notification: field 'objectType' is missing", source=source)
    operation = note.get("operation")
    if not isinstance(operation, str) or operation.upper() not in LIVE_OPERATIONS | DELETE_OPERATIONS:
        known = ", ".join(sorted(LIVE_OPERATIONS | DELETE_OPERATIONS))
        raise MalformedPayloadError(f"notification.operation: {operation!r} is not one of {known}", source=source)
    if object_type.upper() != "EVENT":
        return []
    if "object" not in note:
        raise MalformedPayloadError("notification: field 'object' is missing", source=source)
    deleted = operation.upper() in DELETE_OPERATIONS
    return [parse_event(note["object"], source=source, received_at=received_at, deleted=deleted)]


# -- connection -> requests ------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenADR3Config:
    """The connection's OpenADR 3 settings, checked before any request.

    :param token_url: the OAuth2 token endpoint; ``None`` asks the VTN (``GET /auth/server``).
    :param scope: OAuth2 scope, optional.
    :param client_auth: ``form`` (the spec's /auth/token body, default) or ``basic``.
    :param programs: program names or ids to follow; empty follows every program the VTN lists.
    :param client_name: the ``clientName`` of our subscriptions (how we find them again).
    :param near: an event starting within this is near.
    :param page_size: ``limit`` for list requests (the spec allows at most 50).
    :param operations: the operations a subscription asks to be told of.
    """

    token_url: str | None
    scope: str | None
    client_auth: str
    programs: tuple[str, ...]
    client_name: str
    near: timedelta
    page_size: int
    operations: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> OpenADR3Config:
        if not settings.base_url:
            raise SourceConfigError("the connection has no VTN base URL (Host field)", source=settings.conn_id)
        if not settings.login:
            raise SourceConfigError("the connection has no OAuth2 client id (Login field)", source=settings.conn_id)
        settings.require_password("OAuth2 client secret")
        client_auth = (settings.get_str("client_auth", "form") or "form").strip().lower()
        if client_auth not in ("form", "basic"):
            raise SourceConfigError(
                f"extra field 'client_auth' must be form or basic, not {client_auth!r}", source=settings.conn_id
            )
        page_size = int(settings.get_float("page_size", PAGE_SIZE))
        if page_size > PAGE_SIZE:
            raise SourceConfigError(
                f"extra field 'page_size' must be at most {PAGE_SIZE} (the spec's limit), not {page_size}",
                source=settings.conn_id,
            )
        programs = tuple(p.strip() for p in (settings.get_str("programs", "") or "").split(",") if p.strip())
        operations = tuple(
            o.strip().upper()
            for o in (settings.get_str("subscription_operations", "POST,PUT,DELETE") or "").split(",")
            if o.strip()
        )
        return cls(
            token_url=(settings.get_str("oauth2_url") or "").strip() or None,
            scope=settings.get_str("scope"),
            client_auth=client_auth,
            programs=programs,
            client_name=settings.get_str("client_name", "gridaware") or "gridaware",
            near=timedelta(minutes=settings.get_float("near_minutes", DEFAULT_NEAR.total_seconds() / 60)),
            page_size=page_size,
            operations=operations,
        )


_DISCOVERED_TOKEN_URLS: dict[str, str] = {}


def token_url_flow(settings: SourceSettings, config: OpenADR3Config) -> Flow[str]:
    """The token endpoint: the connection's ``oauth2_url``, else the VTN's ``GET /auth/server`` (3.1), else
    ``<base>/auth/token`` (3.0.1 has no discovery)."""
    if config.token_url:
        return config.token_url if "://" in config.token_url else settings.url(config.token_url)
    known = _DISCOVERED_TOKEN_URLS.get(settings.base_url)
    if known:
        return known
    response = yield HttpRequest(
        "GET",
        settings.url("auth/server"),
        headers={"Accept": "application/json"},
        accept_statuses=frozenset({404, 405}),
    )
    url = settings.url("auth/token")
    if response.status == 200:
        body = response.json()
        found = body.get("tokenURL") if isinstance(body, Mapping) else None
        if not isinstance(found, str) or not urlsplit(found).scheme:
            raise MalformedPayloadError(
                f"GET {response.display_url}: field 'tokenURL' is missing or not a URL", source=settings.conn_id
            )
        url = found
    _DISCOVERED_TOKEN_URLS[settings.base_url] = url
    return url


def reset_discovery() -> None:
    """Forget discovered token URLs and learned program names (tests)."""
    _DISCOVERED_TOKEN_URLS.clear()
    PROGRAM_NAMES.clear()


class Session:
    """A bearer token for one flow: fetched (or taken from the cache) once, refreshed once on a 401.

    :param settings: the connection.
    :param config: its OpenADR 3 settings.
    :param on_secret: told every token, so the transport redacts it.
    """

    def __init__(self, settings: SourceSettings, config: OpenADR3Config, on_secret: OnSecret | None) -> None:
        self.settings = settings
        self.config = config
        self.on_secret = on_secret
        self.token: str | None = None

    def _fetch(self) -> Flow[str]:
        token_url = yield from token_url_flow(self.settings, self.config)
        return (
            yield from client_credentials_flow(
                self.settings,
                token_url,
                scope=self.config.scope,
                client_auth=self.config.client_auth,
                on_secret=self.on_secret,
            )
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        accept: frozenset[int] = frozenset(),
    ) -> Flow[HttpResponse]:
        """One authorised request; a 401 (token expired or revoked early) gets one new token and one retry."""
        if self.token is None:
            self.token = yield from self._fetch()

        def request(token: str, statuses: frozenset[int]) -> HttpRequest:
            headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
            return HttpRequest(
                method,
                self.settings.url(path),
                params=params or {},
                headers=headers,
                json_body=json_body,
                accept_statuses=statuses,
            )

        response: HttpResponse = yield request(self.token, accept | {401})
        if response.status == 401:
            TOKEN_CACHE.invalidate(self.settings.conn_id, self.token)
            self.token = yield from self._fetch()
            response = yield request(self.token, accept)
        return response

    def list_all(self, path: str, params: Mapping[str, str] | None = None) -> Flow[list[Any]]:
        """Every item of a list endpoint, page by page (``skip``/``limit``) until a short page."""
        items: list[Any] = []
        while True:
            page_params = {**(params or {}), "skip": str(len(items)), "limit": str(self.config.page_size)}
            response = yield from self.call("GET", path, params=page_params)
            page = response.json()
            if not isinstance(page, list):
                raise MalformedPayloadError(
                    f"GET {response.display_url}: expected a JSON list, got {type(page).__name__}",
                    source=self.settings.conn_id,
                )
            items.extend(page)
            if len(page) < self.config.page_size:
                return items


def programs_flow(session: Session) -> Flow[dict[str, str]]:
    """Program id -> name of every program the VTN lists to us (learned for notifications too)."""
    names: dict[str, str] = {}
    for index, program in enumerate((yield from session.list_all("programs"))):
        where = f"programs[{index}]"
        if not isinstance(program, Mapping) or not isinstance(program.get("id"), str):
            raise MalformedPayloadError(f"{where}: field 'id' is missing", source=session.settings.conn_id)
        name = program.get("programName")
        names[program["id"]] = name if isinstance(name, str) and name else program["id"]
    PROGRAM_NAMES.remember(names)
    return names


def followed_programs(names: Mapping[str, str], wanted: Iterable[str], *, source: str) -> list[str]:
    """The ids of the programs to follow: each wanted entry is an id or a name; an unknown one is an error."""
    wanted = list(wanted)
    if not wanted:
        return list(names)
    by_name = {name: program_id for program_id, name in names.items()}
    ids = []
    for entry in wanted:
        program_id = entry if entry in names else by_name.get(entry)
        if program_id is None:
            listed = ", ".join(f"{n} ({i})" for i, n in names.items()) or "none"
            raise SourceConfigError(
                f"extra field 'programs': the VTN lists no program {entry!r} (it lists: {listed})", source=source
            )
        ids.append(program_id)
    return ids


@dataclass(frozen=True)
class Poll:
    """One poll: the events that parsed, the errors of those that did not, and the programs followed."""

    events: list[GridEvent]
    errors: list[GridSignalError]
    #: ids of the events that did not parse (not to be taken for deleted).
    refused_ids: frozenset[str]
    #: the followed programs, as ids and names (how a stored event names its program).
    programs: frozenset[str]
    received_at: datetime


def poll_flow(settings: SourceSettings, *, received_at: datetime, on_secret: OnSecret | None = None) -> Flow[Poll]:
    """Token, ``GET /programs``, then ``GET /events?programID=`` for each followed program, every page.

    A malformed event is kept as an error beside the others, so one bad event does not hide the rest.
    """
    config = OpenADR3Config.from_settings(settings)
    source = f"{PROTOCOL}:{settings.conn_id}"
    session = Session(settings, config, on_secret)
    names = yield from programs_flow(session)
    program_ids = followed_programs(names, config.programs, source=settings.conn_id)
    events: list[GridEvent] = []
    errors: list[GridSignalError] = []
    refused: set[str] = set()
    for program_id in program_ids:
        for raw in (yield from session.list_all("events", {"programID": program_id})):
            try:
                events.append(
                    parse_event(raw, source=source, received_at=received_at, programs=names, near=config.near)
                )
            except GridSignalError as exc:
                errors.append(exc)
                if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
                    refused.add(raw["id"])
    labels = frozenset(program_ids) | frozenset(names[p] for p in program_ids)
    return Poll(events, errors, frozenset(refused), labels, received_at)


# -- subscriptions ---------------------------------------------------------------------------------
def subscription_body(
    config: OpenADR3Config, program_id: str, callback_url: str, bearer_token: str | None
) -> dict[str, Any]:
    """The subscription we want for one program (the shape of the spec's subscription object)."""
    operation: dict[str, Any] = {
        "objects": ["EVENT"],
        "operations": list(config.operations),
        "callbackUrl": callback_url,
    }
    if bearer_token:
        operation["bearerToken"] = bearer_token
    return {"clientName": config.client_name, "programID": program_id, "objectOperations": [operation], "targets": None}


def _ours(subscription: Any, client_name: str, callback_url: str | None) -> bool:
    if not isinstance(subscription, Mapping) or subscription.get("clientName") != client_name:
        return False
    if callback_url is None:
        return True
    operations = subscription.get("objectOperations") or []
    return any(isinstance(o, Mapping) and o.get("callbackUrl") == callback_url for o in operations)


def _same(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return existing.get("programID") == wanted["programID"] and [
        {k: o.get(k) for k in ("objects", "operations", "callbackUrl", "bearerToken")}
        for o in existing.get("objectOperations") or []
        if isinstance(o, Mapping)
    ] == [
        {k: o.get(k) for k in ("objects", "operations", "callbackUrl", "bearerToken")}
        for o in wanted["objectOperations"]
    ]


def subscribe_flow(
    settings: SourceSettings,
    callback_url: str,
    *,
    bearer_token: str | None = None,
    on_secret: OnSecret | None = None,
) -> Flow[list[dict[str, Any]]]:
    """One subscription per followed program pointing at ``callback_url``: reused if ours already exists and
    matches, updated (PUT) if ours differs, created (POST) otherwise. Ours = same clientName and callback."""
    if not urlsplit(callback_url).scheme or not urlsplit(callback_url).netloc:
        raise SourceConfigError(f"callback URL {callback_url!r} is not an absolute URL", source=settings.conn_id)
    config = OpenADR3Config.from_settings(settings)
    session = Session(settings, config, on_secret)
    names = yield from programs_flow(session)
    program_ids = followed_programs(names, config.programs, source=settings.conn_id)
    existing = [
        s
        for s in (yield from session.list_all("subscriptions", {"clientName": config.client_name}))
        if _ours(s, config.client_name, callback_url)
    ]
    result = []
    for program_id in program_ids:
        wanted = subscription_body(config, program_id, callback_url, bearer_token)
        mine = next((s for s in existing if s.get("programID") == program_id), None)
        if mine is not None and _same(mine, wanted):
            result.append(dict(mine))
            continue
        if mine is not None:
            response = yield from session.call("PUT", f"subscriptions/{mine['id']}", json_body=wanted)
        else:
            response = yield from session.call("POST", "subscriptions", json_body=wanted)
        created = response.json()
        if not isinstance(created, Mapping) or not isinstance(created.get("id"), str):
            raise MalformedPayloadError(
                f"{response.display_url}: the VTN's subscription has no 'id'", source=settings.conn_id
            )
        result.append(dict(created))
    return result


def unsubscribe_flow(
    settings: SourceSettings, callback_url: str | None = None, *, on_secret: OnSecret | None = None
) -> Flow[list[str]]:
    """Delete our subscriptions (same clientName, and same callback if given); the ids deleted."""
    config = OpenADR3Config.from_settings(settings)
    session = Session(settings, config, on_secret)
    mine = [
        s
        for s in (yield from session.list_all("subscriptions", {"clientName": config.client_name}))
        if _ours(s, config.client_name, callback_url)
    ]
    deleted = []
    for subscription in mine:
        # 404: deleted meanwhile (by another worker, or the VTN expired it): the outcome we wanted.
        yield from session.call("DELETE", f"subscriptions/{subscription['id']}", accept=frozenset({404}))
        deleted.append(str(subscription["id"]))
    return deleted
