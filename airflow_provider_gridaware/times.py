"""Time in one place: UTC, ISO 8601 in and out, and the clock every wait reads.

Inside the package every time is a timezone-aware UTC ``datetime``. Text becomes one through
:func:`parse_time` (one rule for naive times, chosen by the caller and said in the error) and goes back
out through :func:`format_time`.

Waiting code (the grid-window trigger, the worker's first plan) asks :func:`current_clock` for "now"
and for its sleeps instead of the system clock, so tests can run it on the grid simulator's accelerated
time: ``GRIDAWARE_CLOCK=scaled:<sim epoch s>@<wall epoch s>x<speed>`` makes simulated time run
``speed`` times faster than the wall clock from that anchor, exactly as the simulator's own clock does.
Unset, it is the system clock. Standard library only: DAG files import this on every parse.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Protocol

UTC = timezone.utc
CLOCK_ENV = "GRIDAWARE_CLOCK"

Naive = Literal["refuse", "utc"]


def parse_time(value: datetime | str, *, what: str, naive: Naive = "refuse") -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text (``Z`` or an offset).

    :param value: the datetime or its ISO 8601 text.
    :param what: what the value is (a field name, or file and line), for the error message.
    :param naive: ``refuse`` (the default: a time without zone is ambiguous) or ``utc`` (for formats whose
        documentation says their times are UTC, such as the backtest's CSV files).
    :raises ValueError: text that is not ISO 8601, or a naive time with ``naive="refuse"``.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not an ISO 8601 time, e.g. 2026-12-01T06:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{what}: expected a datetime or ISO 8601 text, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        if naive == "utc":
            return value.replace(tzinfo=UTC)
        raise ValueError(f"{what}: {value.isoformat()} has no timezone; add Z or an offset")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, the form every log message and JSON output uses."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime ``seconds`` after the Unix epoch."""
    return datetime.fromtimestamp(seconds, UTC)


def format_duration(seconds: float) -> str:
    """``3 h 10 min``, ``45 min``, ``20 s``: durations in log lines and reasons."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class Clock(Protocol):
    """What waiting code needs of time."""

    def now(self) -> datetime:
        """The current time (aware UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of this clock's time."""
        ...

    def wall_seconds(self, seconds: float) -> float:
        """How many wall-clock seconds ``seconds`` of this clock's time take."""
        ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def wall_seconds(self, seconds: float) -> float:
        return seconds


@dataclass(frozen=True)
class ScaledClock:
    """Simulated time: ``sim_epoch_s`` at wall time ``wall_epoch_s``, running ``speed`` times faster.

    :param sim_epoch_s: simulated epoch seconds at the anchor.
    :param wall_epoch_s: wall-clock epoch seconds of the anchor.
    :param speed: simulated seconds per wall second (positive).
    """

    sim_epoch_s: float
    wall_epoch_s: float
    speed: float

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"clock speed must be positive, got {self.speed}")

    def now(self) -> datetime:
        return from_epoch(self.sim_epoch_s + (time.time() - self.wall_epoch_s) * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.wall_seconds(seconds))

    def wall_seconds(self, seconds: float) -> float:
        return max(0.0, seconds) / self.speed

    def from_wall(self, instant: datetime) -> datetime:
        """This clock's time at the wall-clock ``instant`` (aware)."""
        return from_epoch(self.sim_epoch_s + (instant.timestamp() - self.wall_epoch_s) * self.speed)

    def spec(self) -> str:
        """The ``GRIDAWARE_CLOCK`` value that recreates this clock in another process."""
        return f"scaled:{self.sim_epoch_s!r}@{self.wall_epoch_s!r}x{self.speed!r}"


def clock_from_spec(spec: str | None) -> Clock:
    """The clock a ``GRIDAWARE_CLOCK`` value names (empty or ``system``: the system clock).

    :param spec: ``system`` or ``scaled:<sim epoch s>@<wall epoch s>x<speed>``.
    :raises ValueError: an unreadable value (named in the message).
    """
    text = (spec or "").strip()
    if text in ("", "system"):
        return SystemClock()
    kind, _, rest = text.partition(":")
    if kind == "scaled":
        try:
            sim, _, tail = rest.partition("@")
            wall, _, speed = tail.partition("x")
            return ScaledClock(float(sim), float(wall), float(speed))
        except ValueError as exc:
            raise ValueError(
                f"{CLOCK_ENV}={spec!r}: expected scaled:<sim epoch s>@<wall epoch s>x<speed> ({exc})"
            ) from None
    raise ValueError(f"{CLOCK_ENV}={spec!r}: unknown clock {kind!r}; expected 'system' or 'scaled:...'")


_CLOCKS: dict[str, Clock] = {}


def clock_time_of(instant: datetime) -> datetime:
    """The current clock's time at a wall-clock ``instant`` that Airflow recorded (a DAG run's start).

    Airflow stamps its records on the wall clock; a job's deadline counts from the run's start on the clock
    waiting code reads, so under a :class:`ScaledClock` the start is mapped, and it is kept as is otherwise.
    """
    clock = current_clock()
    return clock.from_wall(instant) if isinstance(clock, ScaledClock) else instant


def current_clock() -> Clock:
    """The clock named by ``GRIDAWARE_CLOCK`` in this process (the system clock when unset)."""
    spec = os.environ.get(CLOCK_ENV, "")
    clock = _CLOCKS.get(spec)
    if clock is None:
        clock = _CLOCKS[spec] = clock_from_spec(spec)
    return clock
