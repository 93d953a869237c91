"""Typed, validated grid signal series: every point with its UTC interval, every series with its meaning.

A :class:`SignalSeries` is what every hook returns and what the planner consumes. It is immutable,
serialises to JSON (for XCom and trigger events) and refuses what would mislead a decision: NaN,
negative carbon, naive times, points out of order or overlapping, a forecast without issue time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from airflow_provider_gridaware.signals.errors import InvalidSignalError
from airflow_provider_gridaware.signals.units import (
    CarbonMetric,
    SeriesType,
    SignalKind,
    canonical_unit,
)
from airflow_provider_gridaware.times import UTC, format_time


def ensure_utc(value: datetime, *, what: str = "time") -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error, never silently assumed to be UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSignalError(f"{what} {value.isoformat()} has no timezone")
    return value.astimezone(UTC)


class SignalPoint(BaseModel):
    """One value valid over ``[start, end)`` in UTC."""

    model_config = ConfigDict(frozen=True)

    start: AwareDatetime
    end: AwareDatetime
    value: float

    @field_validator("start", "end")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


class SignalSeries(BaseModel):
    """A time series of one grid signal for one zone from one source.

    :param kind: carbon intensity, carbon index (percentile) or price.
    :param metric: ``average`` or ``marginal``; required for carbon, absent for price.
    :param unit: the canonical unit (``gCO2eq/kWh``, ``percentile``, ``EUR/MWh``).
    :param currency: ISO 4217 code for prices.
    :param zone: the grid zone as the source names it (``DE``, ``CAISO_NORTH``, ``10YCZ-CEPS-----N``).
    :param source: which API or trace the values came from.
    :param series_type: ``actual`` (measured/settled) or ``forecast``.
    :param issued_at: when a forecast was issued (required for forecasts).
    :param points: ordered, non-overlapping points; gaps are allowed and kept visible.
    """

    model_config = ConfigDict(frozen=True)

    kind: SignalKind
    metric: CarbonMetric | None = None
    unit: str
    currency: str | None = None
    zone: str
    source: str
    series_type: SeriesType
    issued_at: AwareDatetime | None = None
    points: tuple[SignalPoint, ...]

    @model_validator(mode="after")
    def _check(self) -> SignalSeries:
        where = f"{self.source} {self.zone} {self.kind.value}"
        if self.kind is SignalKind.PRICE:
            if self.metric is not None:
                raise ValueError(f"{where}: a price series has no carbon metric")
            if not self.currency:
                raise ValueError(f"{where}: a price series needs its currency")
        elif self.metric is None:
            raise ValueError(f"{where}: say whether the carbon signal is 'average' or 'marginal'")
        if self.series_type is SeriesType.FORECAST and self.issued_at is None:
            raise ValueError(f"{where}: a forecast needs issued_at")
        previous_end: datetime | None = None
        for index, point in enumerate(self.points):
            at = f"{where}: points[{index}] ({format_time(point.start)})"
            if not math.isfinite(point.value):
                raise ValueError(f"{at}: value is {point.value}")
            if point.end <= point.start:
                raise ValueError(f"{at}: end {format_time(point.end)} is not after start")
            if self.kind is not SignalKind.PRICE and point.value < 0:
                raise ValueError(f"{at}: carbon value {point.value} is negative")
            if self.kind is SignalKind.CARBON_INDEX and point.value > 100:
                raise ValueError(f"{at}: percentile {point.value} is above 100")
            if previous_end is not None and point.start < previous_end:
                raise ValueError(
                    f"{at}: starts before the previous point ends ({format_time(previous_end)}):"
                    " points out of order or overlapping"
                )
            previous_end = point.end
        return self

    # -- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.points)

    @property
    def start(self) -> datetime | None:
        return self.points[0].start if self.points else None

    @property
    def end(self) -> datetime | None:
        return self.points[-1].end if self.points else None

    @property
    def values(self) -> list[float]:
        return [p.value for p in self.points]

    def value_at(self, when: datetime) -> float | None:
        """The value whose interval contains ``when``, or ``None`` (gap or outside the series)."""
        from bisect import bisect_right

        when = ensure_utc(when)
        index = bisect_right([p.start for p in self.points], when) - 1
        if index >= 0 and self.points[index].end > when:
            return self.points[index].value
        return None

    def between(self, start: datetime, end: datetime) -> SignalSeries:
        """The points that overlap ``[start, end)``, in a series of the same meaning."""
        start, end = ensure_utc(start), ensure_utc(end)
        kept = tuple(p for p in self.points if p.end > start and p.start < end)
        return self.model_copy(update={"points": kept})

    def gaps(self) -> list[tuple[datetime, datetime]]:
        """Holes between consecutive points, as ``(gap_start, gap_end)``."""
        return [(a.end, b.start) for a, b in zip(self.points, self.points[1:], strict=False) if b.start > a.end]

    def to_records(self) -> list[dict[str, Any]]:
        """Flat JSON-ready records (``time``, ``end``, ``value``, ``unit``, ``kind``, ``issued_at`` ...)."""
        issued = format_time(self.issued_at) if self.issued_at else None
        common = {
            "unit": self.unit,
            "kind": self.kind.value,
            "metric": self.metric.value if self.metric else None,
            "series_type": self.series_type.value,
            "issued_at": issued,
            "zone": self.zone,
            "source": self.source,
        }
        return [
            {"time": format_time(p.start), "end": format_time(p.end), "value": p.value, **common} for p in self.points
        ]


RawPoint = tuple[datetime, datetime, float]


def build_series(
    *,
    kind: SignalKind,
    zone: str,
    source: str,
    series_type: SeriesType,
    unit: str,
    points: Iterable[RawPoint],
    metric: CarbonMetric | None = None,
    currency: str | None = None,
    issued_at: datetime | None = None,
) -> SignalSeries:
    """Convert raw ``(start, end, value)`` points in the source's ``unit`` into a validated series.

    Every parser ends here, so unit conversion and validation happen once, the same way for every
    source. Errors come out as :class:`InvalidSignalError` naming the source, zone and point.
    """
    resolved = canonical_unit(kind, unit, currency)
    try:
        converted: Sequence[SignalPoint] = [
            SignalPoint(
                start=ensure_utc(start, what="point start"),
                end=ensure_utc(end, what="point end"),
                value=value * resolved.factor,
            )
            for start, end, value in points
        ]
        return SignalSeries(
            kind=kind,
            metric=metric,
            unit=resolved.unit,
            currency=resolved.currency,
            zone=zone,
            source=source,
            series_type=series_type,
            issued_at=issued_at,
            points=tuple(converted),
        )
    except ValidationError as exc:
        raise InvalidSignalError(describe_validation_error(exc), source=source) from None
    except InvalidSignalError as exc:
        raise InvalidSignalError(str(exc), source=source) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
