"""One record for a demand-response (DR) event, whatever protocol called it.

OpenADR 2.0b, OpenADR 3, IEEE 2030.5 and the signed webhook relay all normalise to :class:`GridEvent`.
An event's identity is ``(source, event_id, modification_number)``: the same identity seen twice is a
duplicate, a higher modification number is a modification of the event. Status updates (far, near,
active ...) that a protocol sends without a new modification number are new *states* of the same
identity; the store keeps each.

Pure: imports nothing from Airflow, so adapters, the relay, the planner and tests share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_gridaware.signals.errors import InvalidSignalError
from airflow_provider_gridaware.signals.models import SignalSeries, build_series, describe_validation_error
from airflow_provider_gridaware.signals.units import SeriesType, SignalKind
from airflow_provider_gridaware.times import UTC, format_time


class EventStatus(str, Enum):
    """Where an event is in its life (OpenADR's eventStatus; 2030.5 and OpenADR 3 map onto it)."""

    FAR = "far"  # announced, not starting soon
    NEAR = "near"  # starting soon (the protocol's ramp-up or notification window)
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (EventStatus.COMPLETED, EventStatus.CANCELLED)


class EventSignalKind(str, Enum):
    """What an event's signal asks for."""

    SIMPLE = "simple"  # OpenADR SIMPLE: level 0 (normal) to 3 (high); the fleet sheds more as it rises
    PRICE = "price"  # a price over each interval (currency per MWh once normalised)
    IMPORT_CAPACITY_LIMIT = "import_capacity_limit"  # kW the site may draw
    EXPORT_CAPACITY_LIMIT = "export_capacity_limit"  # kW the site may feed in
    DER_SETPOINT = "der_setpoint"  # a DER's active power setpoint or limit, in percent or kW
    OTHER = "other"  # a signal we carry but do not act on (its name says what it was)


#: the unit each kind's values are normalised to (the adapter converts at the edge).
EVENT_SIGNAL_UNITS: dict[EventSignalKind, tuple[str, ...]] = {
    EventSignalKind.SIMPLE: ("level",),
    EventSignalKind.PRICE: (),  # "<currency>/MWh": checked with the signal's currency
    EventSignalKind.IMPORT_CAPACITY_LIMIT: ("kW",),
    EventSignalKind.EXPORT_CAPACITY_LIMIT: ("kW",),
    EventSignalKind.DER_SETPOINT: ("kW", "percent"),
    EventSignalKind.OTHER: (),
}


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class EventInterval(BaseModel):
    """One value of a signal over ``[start, end)`` in UTC."""

    model_config = ConfigDict(frozen=True)

    start: AwareDatetime
    end: AwareDatetime
    value: float

    _to_utc = field_validator("start", "end")(_utc)

    @model_validator(mode="after")
    def _check(self) -> EventInterval:
        if self.end <= self.start:
            raise ValueError(f"interval at {format_time(self.start)} ends at or before it starts")
        if self.value != self.value or self.value in (float("inf"), float("-inf")):
            raise ValueError(f"interval at {format_time(self.start)} has value {self.value}")
        return self

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


class EventSignal(BaseModel):
    """One signal of an event: its kind, unit and intervals.

    :param kind: what it asks for.
    :param name: the protocol's own name (``SIMPLE``, ``ELECTRICITY_PRICE``, ``opModMaxLimW`` ...).
    :param unit: the normalised unit (``level``, ``kW``, ``percent``, ``EUR/MWh``...).
    :param currency: ISO 4217 code for prices.
    :param intervals: ordered, non-overlapping.
    """

    model_config = ConfigDict(frozen=True)

    kind: EventSignalKind
    name: str
    unit: str | None = None
    currency: str | None = None
    intervals: tuple[EventInterval, ...]

    @model_validator(mode="after")
    def _check(self) -> EventSignal:
        where = f"signal {self.name!r} ({self.kind.value})"
        if self.kind is EventSignalKind.PRICE:
            if not self.currency or len(self.currency) != 3 or not self.currency.isalpha():
                raise ValueError(f"{where}: a price needs its ISO 4217 currency, not {self.currency!r}")
            if self.unit != f"{self.currency.upper()}/MWh":
                raise ValueError(f"{where}: unit {self.unit!r} is not {self.currency.upper()}/MWh")
        elif EVENT_SIGNAL_UNITS[self.kind] and self.unit not in EVENT_SIGNAL_UNITS[self.kind]:
            allowed = " or ".join(EVENT_SIGNAL_UNITS[self.kind])
            raise ValueError(f"{where}: unit {self.unit!r} is not {allowed}")
        if self.kind is EventSignalKind.SIMPLE:
            for interval in self.intervals:
                if interval.value not in (0, 1, 2, 3):
                    raise ValueError(f"{where}: level {interval.value} at {format_time(interval.start)} is not 0-3")
        for before, after in zip(self.intervals, self.intervals[1:], strict=False):
            if after.start < before.end:
                raise ValueError(f"{where}: interval at {format_time(after.start)} overlaps the one before")
        return self


class EventTarget(BaseModel):
    """Who an event is for: ``kind`` as the protocol names it (``ven_id``, ``resource_name``, ``group_id``,
    ``end_device``, ``zone`` ...) and its value."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(min_length=1)
    value: str = Field(min_length=1)


EventIdentity = tuple[str, str, int]


class GridEvent(BaseModel):
    """A demand-response event, normalised.

    :param source: where it came from: ``<protocol>:<connection id>`` (``openadr2b:vtn_main``), so the same
        event id from two parties never collides.
    :param protocol: ``openadr2b``, ``openadr3``, ``ieee2030_5`` or ``webhook``.
    :param event_id: the party's id of the event.
    :param modification_number: increases with every change of the event.
    :param program: the DR program it belongs to (``None`` if the protocol has none).
    :param status: where the event is in its life, as the party said.
    :param signals: what it asks for, interval by interval.
    :param targets: who it is for; empty means everyone the connection speaks for.
    :param test_event: the party marked it as a test (acted on only if the DAG says so).
    :param priority: the party's priority (lower is more important in OpenADR; ``None`` if not given).
    :param created_at: when the party created or last modified it, if stated.
    :param received_at: when we received this state of it.
    :param response_required: the party expects an opt-in/opt-out answer.
    """

    model_config = ConfigDict(frozen=True)

    source: str = Field(min_length=1, max_length=128)
    protocol: str = Field(pattern=r"^(openadr2b|openadr3|ieee2030_5|webhook)$")
    event_id: str = Field(min_length=1, max_length=256)
    modification_number: int = Field(ge=0)
    program: str | None = None
    status: EventStatus
    signals: tuple[EventSignal, ...]
    targets: tuple[EventTarget, ...] = ()
    test_event: bool = False
    priority: int | None = None
    created_at: AwareDatetime | None = None
    received_at: AwareDatetime
    response_required: bool = False

    _to_utc = field_validator("created_at", "received_at")(lambda v: v.astimezone(UTC) if v else v)

    @model_validator(mode="after")
    def _check(self) -> GridEvent:
        if not self.signals and self.status is not EventStatus.CANCELLED:
            raise ValueError(f"event {self.event_id!r}: no signal (only a cancellation may carry none)")
        return self

    # -- reading -----------------------------------------------------------------------------------
    @property
    def identity(self) -> EventIdentity:
        return (self.source, self.event_id, self.modification_number)

    @property
    def start(self) -> datetime | None:
        starts = [s.intervals[0].start for s in self.signals if s.intervals]
        return min(starts) if starts else None

    @property
    def end(self) -> datetime | None:
        ends = [s.intervals[-1].end for s in self.signals if s.intervals]
        return max(ends) if ends else None

    def signal(self, kind: EventSignalKind) -> EventSignal | None:
        """The first signal of ``kind``, or ``None``."""
        return next((s for s in self.signals if s.kind is kind), None)

    def level_at(self, when: datetime) -> int:
        """The SIMPLE level in force at ``when`` (0 outside the event, when cancelled or with no SIMPLE signal)."""
        if self.status is EventStatus.CANCELLED:
            return 0
        simple = self.signal(EventSignalKind.SIMPLE)
        if simple is None:
            return 0
        when = _utc(when)
        return next((int(i.value) for i in simple.intervals if i.start <= when < i.end), 0)

    def status_at(self, when: datetime) -> EventStatus:
        """The status at ``when`` from the intervals (a party's FAR/NEAR/ACTIVE can lag); cancelled stays cancelled.

        Before the start the party's own far/near is kept.
        """
        if self.status is EventStatus.CANCELLED:
            return EventStatus.CANCELLED
        start, end = self.start, self.end
        when = _utc(when)
        if start is None or end is None:
            return self.status
        if when >= end:
            return EventStatus.COMPLETED
        if when >= start:
            return EventStatus.ACTIVE
        return self.status if self.status in (EventStatus.FAR, EventStatus.NEAR) else EventStatus.NEAR

    def describe(self) -> str:
        """One line for logs and the CLI."""
        span = f"{format_time(self.start)} to {format_time(self.end)}" if self.start and self.end else "no intervals"
        kinds = ", ".join(s.kind.value for s in self.signals) or "no signal"
        test = " TEST" if self.test_event else ""
        program = f" program {self.program}" if self.program else ""
        return (
            f"{self.source} event {self.event_id} mod {self.modification_number}{program}: "
            f"{self.status.value}{test}, {span} ({kinds})"
        )

    def price_series(self, *, zone: str) -> SignalSeries | None:
        """The event's price signal as an ordinary price forecast for ``zone``, so a window can avoid a called peak.

        ``None`` when the event carries no price or is cancelled. Issued when the party created it (or when
        we received it, if it did not say).
        """
        price = self.signal(EventSignalKind.PRICE)
        if price is None or not price.intervals or self.status is EventStatus.CANCELLED:
            return None
        assert price.currency is not None and price.unit is not None  # validated
        return build_series(
            kind=SignalKind.PRICE,
            zone=zone,
            source=self.source,
            series_type=SeriesType.FORECAST,
            unit=price.unit,
            currency=price.currency,
            issued_at=self.created_at or self.received_at,
            points=[(i.start, i.end, i.value) for i in price.intervals],
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> GridEvent:
        return cls.model_validate_json(text)


def build_event(**fields: Any) -> GridEvent:
    """Validate ``fields`` into a :class:`GridEvent`; errors come out as :class:`InvalidSignalError` naming the field.

    Adapters end here, so every protocol's event is checked the same way.
    """
    try:
        return GridEvent.model_validate(fields)
    except ValidationError as exc:
        source = str(fields.get("source") or "grid event")
        message = f"event {fields.get('event_id')!r}: {describe_validation_error(exc)}"
        raise InvalidSignalError(message, source=source) from None


def latest_states(events: Iterable[GridEvent]) -> dict[tuple[str, str], GridEvent]:
    """The latest state of each event ``(source, event_id)``: highest modification number, then latest received."""
    latest: dict[tuple[str, str], GridEvent] = {}
    for event in events:
        key = (event.source, event.event_id)
        known = latest.get(key)
        if known is None or (event.modification_number, event.received_at) >= (
            known.modification_number,
            known.received_at,
        ):
            latest[key] = event
    return latest
