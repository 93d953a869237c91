"""Small parsing helpers shared by the source adapters."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from airflow_provider_gridaware import times
from airflow_provider_gridaware.signals.errors import MalformedPayloadError, NoSignalDataError, SourceConfigError
from airflow_provider_gridaware.signals.models import SignalPoint, SignalSeries, format_time

UTC = timezone.utc
T = TypeVar("T")


def parse_time(value: Any, *, source: str, where: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string (``Z`` or offset); naive or garbled is an error."""
    if not isinstance(value, str) or not value:
        raise MalformedPayloadError(f"{where}: expected an ISO 8601 time, got {value!r}", source=source)
    try:
        return times.parse_time(value, what=where)
    except ValueError as exc:
        if "has no timezone" in str(exc):
            raise MalformedPayloadError(f"{where}: time {value!r} has no timezone", source=source) from None
    try:  # what fromisoformat does not read (e.g. a comma before the fraction): pendulum's wider ISO parser
        import pendulum

        parsed = pendulum.parse(value)
    except Exception:
        raise MalformedPayloadError(f"{where}: {value!r} is not an ISO 8601 time", source=source) from None
    if not isinstance(parsed, datetime):
        raise MalformedPayloadError(f"{where}: {value!r} is not a date and time", source=source)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise MalformedPayloadError(f"{where}: time {value!r} has no timezone", source=source)
    return parsed.astimezone(UTC)


def parse_number(value: Any, *, source: str, where: str) -> float:
    """A float from a JSON number or numeric string; ``None``, booleans and text are errors."""
    if isinstance(value, bool) or value is None:
        raise MalformedPayloadError(f"{where}: expected a number, got {value!r}", source=source)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MalformedPayloadError(f"{where}: expected a number, got {value!r}", source=source) from None
    return number  # NaN/inf are kept: the series validation names them with their time


def require(mapping: Any, key: str, *, source: str, where: str, kind: type[T] | None = None) -> Any:
    """``mapping[key]``, or a :class:`MalformedPayloadError` naming the missing field and its place."""
    if not isinstance(mapping, Mapping):
        raise MalformedPayloadError(
            f"{where}: expected an object with {key!r}, got {type(mapping).__name__}", source=source
        )
    if key not in mapping:
        raise MalformedPayloadError(f"{where}: field {key!r} is missing", source=source)
    value = mapping[key]
    if kind is not None and not isinstance(value, kind):
        raise MalformedPayloadError(
            f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}", source=source
        )
    return value


def ends_from_spacing(starts: list[datetime], *, default: timedelta, period: timedelta | None = None) -> list[datetime]:
    """End times for point-stamped data: the source's period if known, else the typical spacing.

    Each point ends at the next point's start when that comes within one period (so a gap stays a
    gap), and the last point gets the period.
    """
    if period is None:
        spacings = [(b - a) for a, b in itertools.pairwise(starts) if b > a]
        period = sorted(spacings)[len(spacings) // 2] if spacings else default
    ends = []
    for index, start in enumerate(starts):
        nxt = starts[index + 1] if index + 1 < len(starts) else None
        ends.append(nxt if nxt is not None and start < nxt <= start + period else start + period)
    return ends


def iso_minute(value: datetime) -> str:
    """``2023-03-14T03:31Z``: the time format of path parameters in the UK Carbon Intensity API."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def floor_time(value: datetime, step: timedelta) -> datetime:
    """``value`` rounded down to a multiple of ``step`` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = math.floor((value - epoch) / step)
    return epoch + steps * step


def utcnow() -> datetime:
    """Now on the process's clock (``GRIDAWARE_CLOCK``): a query without a start asks from the time the
    planner decides at, also when tests and the demo run on the simulator's accelerated time."""
    return times.current_clock().now()


Clock = Callable[[], datetime]


def aware(value: datetime, *, what: str, source: str) -> datetime:
    """A caller's time in UTC; a naive one is a :class:`SourceConfigError`, as its zone would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise SourceConfigError(f"{what} {value.isoformat()} has no timezone", source=source)
    return value.astimezone(UTC)


def merge_series(chunks: list[SignalSeries]) -> SignalSeries:
    """One series from chunked responses of the same meaning: sorted, and points repeated at chunk edges kept once.

    :param chunks: at least one series; all must share kind, unit, zone, source and type.
    """
    seen: dict[datetime, SignalPoint] = {}
    for chunk in chunks:
        for point in chunk.points:
            seen.setdefault(point.start, point)  # APIs with inclusive ends repeat the edge point
    merged = chunks[0].model_copy(update={"points": tuple(seen[k] for k in sorted(seen))})
    # Re-validate: chunks that overlap without sharing starts must still be refused.
    return SignalSeries.model_validate(merged.model_dump())


def within_range(
    series: SignalSeries, start: datetime | None, end: datetime | None, *, what: str, source: str
) -> SignalSeries:
    """``series`` cut to ``[start, end)`` (open sides keep everything); an empty cut is an error, never returned.

    :param series: a non-empty parsed series.
    :param what: what the series is (``forecast``, ``last 24 hours``), for the message.
    :param source: the source name for the error.
    """
    if start is None and end is None:
        return series
    first, last = series.start, series.end
    if first is None or last is None:
        raise NoSignalDataError(f"{series.zone}: the {what} is empty", source=source)
    kept = series.between(start or first, end or last)
    if not kept.points:
        raise NoSignalDataError(
            f"{series.zone}: the {what} covers {format_time(first)} .. {format_time(last)}, nothing in the wanted range",
            source=source,
        )
    return kept
