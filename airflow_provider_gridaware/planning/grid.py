"""Putting irregular signal points on the planner's regular grid.

A grid slot gets the overlap-weighted mean of the points covering it, and only if they cover all of it:
a partly covered slot is a gap (NaN), which the planner treats as unusable unless the forecaster fills it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt

from airflow_provider_gridaware.signals.models import SignalSeries

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_seconds(when: datetime) -> int:
    """Whole epoch seconds of an aware datetime (sub-second parts are dropped).

    :param when: a timezone-aware datetime.
    """
    return int((when - EPOCH) // timedelta(seconds=1))


def from_seconds(seconds: int | np.integer) -> datetime:
    """The aware UTC datetime of epoch ``seconds``.

    :param seconds: epoch seconds.
    """
    return EPOCH + timedelta(seconds=int(seconds))


def floor_to(seconds: int, step_s: int) -> int:
    """``seconds`` rounded down to a multiple of ``step_s`` (grids are aligned to the epoch).

    :param seconds: epoch seconds.
    :param step_s: the grid step.
    """
    return seconds - seconds % step_s


def ends_from_starts(starts_s: npt.ArrayLike, *, max_gap_factor: float = 1.5) -> IntArray:
    """Interval ends for points given only by their starts (CSV files): each lasts until the next start.

    A point lasts at most the typical spacing (the median), so a hole in the data stays a hole; the last
    point lasts the typical spacing.

    :param starts_s: sorted epoch seconds.
    :param max_gap_factor: a spacing above ``factor x median`` is a gap, not a long point.
    """
    starts = np.asarray(starts_s, dtype=np.int64)
    if starts.size == 0:
        return starts.copy()
    if starts.size == 1:
        return starts + 3600
    spacing = np.diff(starts)
    typical = int(np.median(spacing)) or 1
    lengths = np.append(spacing, typical)
    lengths = np.where(lengths > max_gap_factor * typical, typical, lengths)
    result: IntArray = starts + lengths
    return result


def resample(
    starts_s: npt.ArrayLike, ends_s: npt.ArrayLike, values: npt.ArrayLike, *, origin_s: int, step_s: int, slots: int
) -> FloatArray:
    """Overlap-weighted slot means of piecewise-constant points; NaN where a slot is not fully covered.

    :param starts_s: point starts (epoch seconds), sorted, non-overlapping.
    :param ends_s: point ends.
    :param values: point values (non-finite values count as missing).
    :param origin_s: start of slot 0.
    :param step_s: slot length.
    :param slots: number of slots.
    """
    starts = np.asarray(starts_s, dtype=np.int64)
    ends = np.asarray(ends_s, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    if slots <= 0:
        return np.zeros(0)
    if starts.size == 0:
        return np.full(slots, np.nan)
    good = np.isfinite(vals) & (ends > starts)
    starts, ends, vals = starts[good], ends[good], vals[good]
    if starts.size == 0:
        return np.full(slots, np.nan)
    # Garbage magnitudes would wreck the precision of the running sums for every later slot.
    limit = 1e6 * (float(np.median(np.abs(vals))) + 1.0)
    vals = np.clip(vals, -limit, limit)
    lengths = (ends - starts).astype(np.float64)
    cum_value = np.concatenate(([0.0], np.cumsum(vals * lengths)))
    cum_cover = np.concatenate(([0.0], np.cumsum(lengths)))
    bounds = origin_s + step_s * np.arange(slots + 1, dtype=np.int64)
    index = np.searchsorted(starts, bounds, side="right") - 1
    safe = np.maximum(index, 0)
    inside = np.clip(bounds - starts[safe], 0, ends[safe] - starts[safe]).astype(np.float64)
    before = index >= 0
    value_at = np.where(before, cum_value[safe] + vals[safe] * inside, 0.0)
    cover_at = np.where(before, cum_cover[safe] + inside, 0.0)
    covered = np.diff(cover_at)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.diff(value_at) / covered
    # Float sums of seconds are exact integers here, so "fully covered" is an exact comparison.
    result: FloatArray = np.where(covered >= step_s - 1e-6, means, np.nan)
    return result


def resample_series(series: SignalSeries, *, origin_s: int, step_s: int, slots: int) -> FloatArray:
    """:func:`resample` for a :class:`SignalSeries`.

    :param series: the signal.
    :param origin_s: start of slot 0.
    :param step_s: slot length.
    :param slots: number of slots.
    """
    starts = np.array([to_seconds(p.start) for p in series.points], dtype=np.int64)
    ends = np.array([to_seconds(p.end) for p in series.points], dtype=np.int64)
    values = np.array([p.value for p in series.points], dtype=np.float64)
    return resample(starts, ends, values, origin_s=origin_s, step_s=step_s, slots=slots)
