"""Grid events for tests: a valid event in one call, with any field overridden."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gridaware.signals.grid_event import (
    EventInterval,
    EventSignal,
    EventSignalKind,
    EventStatus,
    GridEvent,
    build_event,
)
from airflow_provider_gridaware.times import UTC

T0 = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


def simple_signal(
    start: datetime = T0, levels: tuple[int, ...] = (2,), step: timedelta = timedelta(hours=1)
) -> EventSignal:
    """A SIMPLE signal with one interval of ``step`` per level."""
    return EventSignal(
        kind=EventSignalKind.SIMPLE,
        name="SIMPLE",
        unit="level",
        intervals=tuple(
            EventInterval(start=start + i * step, end=start + (i + 1) * step, value=level)
            for i, level in enumerate(levels)
        ),
    )


def price_signal(
    start: datetime = T0,
    prices: tuple[float, ...] = (250.0,),
    currency: str = "EUR",
    step: timedelta = timedelta(hours=1),
) -> EventSignal:
    """A price signal in ``currency``/MWh with one interval of ``step`` per price."""
    return EventSignal(
        kind=EventSignalKind.PRICE,
        name="ELECTRICITY_PRICE",
        unit=f"{currency}/MWh",
        currency=currency,
        intervals=tuple(
            EventInterval(start=start + i * step, end=start + (i + 1) * step, value=price)
            for i, price in enumerate(prices)
        ),
    )


def make_event(**overrides: Any) -> GridEvent:
    """A valid OpenADR 2.0b-like event from ``openadr2b:vtn``; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "source": "openadr2b:vtn",
        "protocol": "openadr2b",
        "event_id": "event-1",
        "modification_number": 0,
        "program": "peak",
        "status": EventStatus.FAR,
        "signals": (simple_signal(),),
        "received_at": T0 - timedelta(hours=2),
    }
    fields.update(overrides)
    return build_event(**fields)
