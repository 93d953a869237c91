"""The lowest time-weighted mean window of a series: the GSF Carbon Aware SDK's definition.

A window ``[start, start + duration)`` is scored by the mean of the signal weighted by overlap, and
must be fully covered by points (a gap disqualifies it). Candidate starts are point starts.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries


@dataclass(frozen=True)
class Window:
    """A scored window: ``mean`` in the series' unit."""

    start: datetime
    end: datetime
    mean: float


def window_means(
    series: SignalSeries, duration: timedelta, *, not_before: datetime | None = None, not_after: datetime | None = None
) -> list[Window]:
    """Every fully covered window of ``duration`` starting at a point start within the bounds.

    :param series: the signal (carbon or price).
    :param duration: window length.
    :param not_before: earliest allowed start.
    :param not_after: latest allowed end.
    """
    points = series.points
    if not points or duration <= timedelta(0):
        return []
    starts = [p.start for p in points]
    seconds = duration.total_seconds()
    # Prefix integrals (value x seconds) and contiguity: run_id changes at every gap.
    integral = [0.0]
    run_id = [0]
    for index, point in enumerate(points):
        integral.append(integral[-1] + point.value * point.duration.total_seconds())
        gap = index > 0 and points[index - 1].end < point.start
        run_id.append(run_id[-1] + (1 if gap else 0))
    windows = []
    for i, point in enumerate(points):
        start = point.start
        end = start + duration
        if (not_before and start < not_before) or (not_after and end > not_after):
            continue
        j = bisect_left(starts, end) - 1  # the last point that starts before the window ends
        if points[j].end < end or run_id[j + 1] != run_id[i + 1]:
            continue  # runs past the data or across a gap
        full = integral[j] - integral[i]
        partial = points[j].value * (end - points[j].start).total_seconds()
        windows.append(Window(start, end, (full + partial) / seconds))
    return windows


def lowest_window(
    series: SignalSeries, duration: timedelta, *, not_before: datetime | None = None, not_after: datetime | None = None
) -> Window | None:
    """The earliest window with the lowest mean, or ``None`` if no window fits."""
    windows = window_means(series, duration, not_before=not_before, not_after=not_after)
    return min(windows, key=lambda w: (w.mean, w.start)) if windows else None
