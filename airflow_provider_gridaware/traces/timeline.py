"""Replaying a trace on the simulated timeline: where a moment of "now" falls in the trace, and resampling.

With ``anchor="now"`` the trace is shifted by a whole number of days so it lines up with the present,
and loops: presented time ``t`` reads the trace at ``start + ((t - start) mod period)``. The loop period
is the trace's length rounded down to whole weeks (whole days for traces shorter than four weeks), so
both the time of day and, for long traces, the day of the week stay where they were recorded. A
30-day trace therefore serves any date. With ``anchor="fixed"`` the trace keeps its own times and
there is no data outside them.

A :class:`CleanWindow` (optional) lowers every value a replay serves inside it, so a demo or a test can
have a clean window a few minutes ahead instead of waiting for the trace's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from functools import cached_property
from typing import Protocol

from airflow_provider_gridaware.signals.errors import SourceConfigError
from airflow_provider_gridaware.traces.trace import (
    SOURCE,
    RawPoint,
    ZoneTrace,
    from_epoch,
    to_epoch,
)

UTC = timezone.utc
DAY = 86_400.0
WEEK = 7 * DAY
DEFAULT_CLEAN_WINDOW_DEPTH = 0.5
#: A clean window's values recover in steps this long (finer than any simulated API's resolution).
CLEAN_WINDOW_RAMP = timedelta(minutes=1)


class Anchor(str, Enum):
    """How trace time maps to presented (simulated) time."""

    NOW = "now"  # shifted by whole days to the present, looping
    FIXED = "fixed"  # the trace's own times

    @classmethod
    def parse(cls, value: str | Anchor) -> Anchor:
        """``now`` or ``fixed``; anything else is a configuration error naming both choices.

        :param value: the anchor name (case-insensitive) or an :class:`Anchor`.
        """
        if isinstance(value, Anchor):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise SourceConfigError(f"anchor must be 'now' or 'fixed', not {value!r}", source=SOURCE) from None


def loop_period(trace: ZoneTrace) -> float:
    """Seconds after which an ``anchor="now"`` replay repeats: whole weeks, else whole days, else the span.

    :param trace: the trace to loop.
    """
    span = trace.ends[-1] - trace.starts[0]
    if span >= 4 * WEEK:
        return math.floor(span / WEEK) * WEEK
    if span >= DAY:
        return math.floor(span / DAY) * DAY
    return span


@dataclass(frozen=True)
class CleanWindow:
    """A clean (and cheap) window on demand: inside ``[start, end)`` every replayed value is lowered.

    The values drop by ``depth`` at the opening and recover linearly, in :data:`CLEAN_WINDOW_RAMP` steps,
    to the lowest recorded value in the window by its end: the whole window is cleaner than anything
    recorded in it, and its opening is its cleanest moment. A planner therefore starts any job that fits
    at the opening, however the forecast noise falls (a flat dip would leave the choice to the noise).

    :param start: presented time the window opens (aware).
    :param end: presented time it closes.
    :param depth: fraction by which the opening lies below the reference (the lowest recorded value in
        the window): 0.5 halves it, 1 takes carbon to zero. A negative reference (a price) goes further
        below zero by the same fraction of its magnitude.
    """

    start: datetime
    end: datetime
    depth: float = DEFAULT_CLEAN_WINDOW_DEPTH

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a clean window's start and end must be timezone-aware")
        if not self.end > self.start:
            raise ValueError(f"a clean window must end after it starts, not {self.start} to {self.end}")
        if not 0 < self.depth <= 1:
            raise ValueError(f"a clean window's depth must be more than 0 and at most 1, not {self.depth!r}")

    @classmethod
    def ahead(
        cls, now: datetime, *, opens_in: timedelta, lasts: timedelta, depth: float = DEFAULT_CLEAN_WINDOW_DEPTH
    ) -> CleanWindow:
        """The window opening ``opens_in`` after ``now`` and lasting ``lasts``.

        :param now: presented time it is measured from (the simulator's clock at start).
        :param opens_in: how far ahead it opens (0: now).
        :param lasts: how long it stays open.
        :param depth: see the class.
        """
        if opens_in < timedelta(0):
            raise ValueError(f"a clean window cannot open in the past (opens_in {opens_in})")
        start = now + opens_in
        if start.microsecond:  # whole seconds read better in logs and state, and never open early
            start = start.replace(microsecond=0) + timedelta(seconds=1)
        return cls(start=start, end=start + lasts, depth=depth)

    def lowered(self, reference: float, when: datetime) -> float:
        """The value served at ``when`` (inside the window) for the window's ``reference``.

        :param reference: the lowest recorded value in the window.
        :param when: presented time inside the window.
        """
        ramp = CLEAN_WINDOW_RAMP.total_seconds()
        elapsed = math.floor((to_epoch(when) - to_epoch(self.start)) / ramp) * ramp
        share = 1.0 - elapsed / (self.end - self.start).total_seconds()
        return reference - self.depth * share * abs(reference)

    def shape(self, points: list[RawPoint], reference: float | None) -> list[RawPoint]:
        """``points`` with the part inside the window replaced by the ramp (split at its steps and edges).

        :param points: recorded ``(start, end, value)`` in presented time, in order, not overlapping.
        :param reference: the lowest recorded value in the window; ``None`` (no data there) changes nothing.
        """
        if reference is None:
            return points
        a, b, ramp = to_epoch(self.start), to_epoch(self.end), CLEAN_WINDOW_RAMP.total_seconds()
        out: list[RawPoint] = []
        for s, e, v in points:
            ps, pe = to_epoch(s), to_epoch(e)
            if pe <= a or ps >= b:
                out.append((s, e, v))
                continue
            if ps < a:
                out.append((s, self.start, v))
            cursor = max(ps, a)
            while cursor < min(pe, b):
                step_end = min(pe, b, a + (math.floor((cursor - a) / ramp) + 1) * ramp)
                piece = from_epoch(cursor)
                out.append((piece, from_epoch(step_end), self.lowered(reference, piece)))
                cursor = step_end
            if pe > b:
                out.append((self.end, e, v))
        return out

    def describe(self) -> dict[str, object]:
        """JSON-ready: ``start``, ``end`` (ISO, UTC) and ``depth``."""
        return {
            "start": self.start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "end": self.end.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "depth": self.depth,
        }


class SignalReplay(Protocol):
    """What the simulator and the replay hook read: presented-time points of one zone's signal."""

    @property
    def zone(self) -> str: ...

    @property
    def step(self) -> timedelta: ...

    @property
    def scale(self) -> float: ...

    @property
    def synthetic(self) -> bool: ...

    def points(self, start: datetime, end: datetime) -> list[RawPoint]: ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class ZoneReplay:
    """One zone's trace seen on the presented timeline.

    :param trace: the recorded points.
    :param anchor: ``now`` (shifted by whole days to the present, looping) or ``fixed``.
    :param clean_window: lowers every value served inside it (see :class:`CleanWindow`); ``None``: none.
    """

    trace: ZoneTrace
    anchor: Anchor = Anchor.NOW
    clean_window: CleanWindow | None = None

    @property
    def zone(self) -> str:
        return self.trace.zone

    @property
    def step(self) -> timedelta:
        return self.trace.step

    @property
    def scale(self) -> float:
        return self.trace.scale

    @property
    def synthetic(self) -> bool:
        return False

    @property
    def period(self) -> float:
        """Loop period in seconds (``inf`` for a fixed anchor)."""
        return loop_period(self.trace) if self.anchor is Anchor.NOW else math.inf

    def shift_at(self, when: datetime) -> timedelta:
        """Presented minus trace time at ``when``: always a whole number of days for a looping replay.

        :param when: presented time.
        """
        if self.anchor is Anchor.FIXED:
            return timedelta(0)
        origin, period = self.trace.starts[0], self.period
        return timedelta(seconds=math.floor((to_epoch(when) - origin) / period) * period)

    def to_trace_time(self, when: datetime) -> datetime:
        """The trace moment that is replayed at presented time ``when``.

        :param when: presented time.
        """
        return when - self.shift_at(when)

    def value_at(self, when: datetime) -> float | None:
        """The value in force at presented time ``when`` (``None`` in a gap or outside a fixed trace).

        :param when: presented time.
        """
        value = self.trace.value_at(self.to_trace_time(when))
        window = self.clean_window
        if value is None or window is None or not window.start <= when < window.end:
            return value
        reference = self._clean_window_reference
        return value if reference is None else window.lowered(reference, when)

    def points(self, start: datetime, end: datetime) -> list[RawPoint]:
        """The intervals overlapping ``[start, end)`` in presented time, as served (clean window applied).

        :param start: presented time.
        :param end: presented time.
        """
        recorded = self.recorded_points(start, end)
        if self.clean_window is None:
            return recorded
        shaped = self.clean_window.shape(recorded, self._clean_window_reference)
        return [p for p in shaped if p[1] > start and p[0] < end]  # a recorded interval split at the window

    @cached_property
    def _clean_window_reference(self) -> float | None:
        """The lowest recorded value inside the clean window (``None``: no data there)."""
        if self.clean_window is None:
            return None
        values = [v for _, _, v in self.recorded_points(self.clean_window.start, self.clean_window.end)]
        return min(values) if values else None

    def recorded_points(self, start: datetime, end: datetime) -> list[RawPoint]:
        """The recorded intervals overlapping ``[start, end)`` in presented time, in order, never overlapping.

        A looping replay may cross the loop seam: the last recorded interval before the seam is cut there
        and the trace starts again from its first interval.

        :param start: presented time.
        :param end: presented time.
        """
        a, b = to_epoch(start), to_epoch(end)
        trace = self.trace
        if self.anchor is Anchor.FIXED:
            return [
                (from_epoch(trace.starts[i]), from_epoch(trace.ends[i]), trace.values[i])
                for i in trace.indices_overlapping(a, b)
            ]
        origin, period = trace.starts[0], self.period
        out: list[RawPoint] = []
        cursor = a
        while cursor < b:
            shift = math.floor((cursor - origin) / period) * period
            seam = origin + period  # trace time at which this loop iteration ends
            segment_end = min(b, seam + shift)
            for i in trace.indices_overlapping(cursor - shift, segment_end - shift):
                s = trace.starts[i]
                if s >= seam:
                    break
                out.append((from_epoch(s + shift), from_epoch(min(trace.ends[i], seam) + shift), trace.values[i]))
            cursor = segment_end
        return out

    def describe(self) -> dict[str, object]:
        info = self.trace.describe()
        info.update(
            anchor=self.anchor.value,
            loop_days=None if self.anchor is Anchor.FIXED else self.period / DAY,
            synthetic=False,
        )
        if self.clean_window is not None:
            info["clean_window"] = self.clean_window.describe()
        return info


def floor_epoch(seconds: float, step: float) -> float:
    """``seconds`` rounded down to a multiple of ``step`` since the epoch."""
    return math.floor(seconds / step) * step


def resample(
    replay: SignalReplay,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    how: str = "mean",
) -> list[RawPoint]:
    """Regular slots of ``step`` (aligned to the epoch) from ``start`` to ``end``, from a replay's points.

    Slots with no data are left out (gaps stay visible).

    :param replay: where the values come from.
    :param start: presented time; the first slot is the one containing it.
    :param end: presented time; slots start before it.
    :param step: the slot length (5 min for WattTime, 1 h for Electricity Maps ...).
    :param how: ``mean`` (time-weighted mean of the overlapping points) or ``start`` (the value in force
        at the slot's start: how a 5-min feed steps through a half-hourly trace).
    """
    if how not in ("mean", "start"):
        raise ValueError(f"how must be 'mean' or 'start', not {how!r}")
    width = step.total_seconds()
    first = floor_epoch(to_epoch(start), width)
    last = to_epoch(end)
    if last <= first:
        return []
    points = replay.points(from_epoch(first), from_epoch(math.ceil((last - first) / width) * width + first))
    spans = [(to_epoch(s), to_epoch(e), v) for s, e, v in points]
    out: list[RawPoint] = []
    cursor = 0
    slot = first
    while slot < last:
        slot_end = slot + width
        while cursor < len(spans) and spans[cursor][1] <= slot:
            cursor += 1
        value: float | None = None
        if how == "start":
            if cursor < len(spans) and spans[cursor][0] <= slot < spans[cursor][1]:
                value = spans[cursor][2]
        else:
            total = weight = 0.0
            index = cursor
            while index < len(spans) and spans[index][0] < slot_end:
                overlap = min(spans[index][1], slot_end) - max(spans[index][0], slot)
                if overlap > 0:
                    total += spans[index][2] * overlap
                    weight += overlap
                index += 1
            if weight > 0:
                value = total / weight
        if value is not None:
            out.append((from_epoch(slot), from_epoch(slot_end), value))
        slot = slot_end
    return out
