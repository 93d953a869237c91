"""A zone's signal as the Grid page draws it: now, the forecast curve (calibrated, with the provider's raw
forecast beside it) and the next clean window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.times import format_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.calibration import ForecastCalibration
    from airflow_provider_gridaware.signals.models import SignalSeries

#: The window length the page's "next clean window" is the cleanest of (a typical flexible job).
CLEAN_WINDOW = timedelta(hours=2)


@dataclass(frozen=True)
class CurvePoint:
    """One point of a curve: the interval's start and its value."""

    start: datetime
    value: float


@dataclass(frozen=True)
class CleanWindow:
    """The cleanest window of a given length ahead.

    :param start: its start.
    :param end: its end.
    :param mean: mean signal over it.
    :param now: the signal now, for comparison.
    """

    start: datetime
    end: datetime
    mean: float
    now: float | None

    @property
    def lower_than_now(self) -> float | None:
        """Relative reduction against now (0.38 = 38 % lower)."""
        return None if not self.now else (self.now - self.mean) / abs(self.now)


@dataclass(frozen=True)
class ZoneView:
    """One configured zone on the page.

    :param zone: the zone.
    :param conn_id: the connection its signal is read through.
    :param unit: the curve's unit.
    :param metric: ``average`` or ``marginal`` (carbon), ``None`` for price.
    :param source: the signal source.
    :param issued_at: when the forecast was issued.
    :param current: the signal now (the latest actual, else the forecast's value now).
    :param forecast: the provider's forecast as published.
    :param calibrated: the forecast corrected by its track record (empty: no track record yet).
    :param calibration_note: the calibration in words.
    :param clean_window: the cleanest :data:`CLEAN_WINDOW` ahead.
    :param error: why the zone's signal could not be read (the rest is then empty).
    """

    zone: str
    conn_id: str
    unit: str = ""
    metric: str | None = None
    source: str = ""
    issued_at: datetime | None = None
    current: float | None = None
    forecast: tuple[CurvePoint, ...] = ()
    calibrated: tuple[CurvePoint, ...] = ()
    calibration_note: str = ""
    clean_window: CleanWindow | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the page (curves as ``[start, value]`` pairs)."""
        window = self.clean_window
        return {
            "zone": self.zone,
            "conn_id": self.conn_id,
            "unit": self.unit,
            "metric": self.metric,
            "source": self.source,
            "issued_at": None if self.issued_at is None else format_time(self.issued_at),
            "current": self.current,
            "forecast": [[format_time(p.start), round(p.value, 2)] for p in self.forecast],
            "calibrated": [[format_time(p.start), round(p.value, 2)] for p in self.calibrated],
            "calibration_note": self.calibration_note,
            "clean_window": None
            if window is None
            else {
                "start": format_time(window.start),
                "end": format_time(window.end),
                "mean": round(window.mean, 2),
                "now": window.now,
                "lower_than_now": window.lower_than_now,
            },
            "error": self.error,
        }


def cleanest_window(
    curve: Sequence[CurvePoint], *, length: timedelta, now: datetime, current: float | None
) -> CleanWindow | None:
    """The window of ``length`` starting at a point of ``curve`` at or after ``now`` (or the point containing
    ``now``) with the lowest mean; ``None`` when the curve is shorter than ``length``.

    :param curve: evenly or unevenly spaced points, in time order; each lasts until the next.
    :param length: the window length.
    :param now: no window starts before the point containing it.
    :param current: the signal now, for comparison.
    """
    if len(curve) < 2:
        return None
    step = curve[-1].start - curve[-2].start
    ends = [p.start for p in curve[1:]] + [curve[-1].start + step]
    best: CleanWindow | None = None
    for i, point in enumerate(curve):
        if ends[i] <= now:
            continue
        start = max(point.start, now)
        window_end = start + length
        total = 0.0
        covered = 0.0
        for j in range(i, len(curve)):
            lo = max(curve[j].start, start)
            hi = min(ends[j], window_end)
            if hi > lo:
                seconds = (hi - lo).total_seconds()
                total += curve[j].value * seconds
                covered += seconds
            if ends[j] >= window_end:
                break
        if covered < length.total_seconds() - 1:
            break  # the curve ends before this window does; later starts end later still
        mean = total / covered
        if best is None or mean < best.mean - 1e-9:
            best = CleanWindow(start, window_end, mean, current)
    return best


def zone_view(
    zone: str,
    conn_id: str,
    forecast: SignalSeries,
    *,
    now: datetime,
    actuals: SignalSeries | None = None,
    calibration: ForecastCalibration | None = None,
    window: timedelta = CLEAN_WINDOW,
) -> ZoneView:
    """A zone's view from its forecast, recent actuals and the forecast's calibration.

    :param zone: the zone.
    :param conn_id: the connection read.
    :param forecast: the provider's forecast.
    :param now: the current time.
    :param actuals: recent actuals (the newest one started by ``now`` is "current").
    :param calibration: the forecast's track record (its correction is drawn as the calibrated curve).
    :param window: the clean window's length.
    """
    raw = tuple(CurvePoint(p.start, p.value) for p in forecast.points if p.end > now)
    current = None
    if actuals is not None:
        started = [p for p in actuals.points if p.start <= now]
        current = started[-1].value if started else None
    if current is None:
        current = forecast.value_at(now)
    calibrated: tuple[CurvePoint, ...] = ()
    note = ""
    if calibration is not None and not calibration.has_history:
        note = calibration.reason()  # nothing to correct by yet: no second curve
    elif calibration is not None and raw and forecast.issued_at is not None:
        issued = forecast.issued_at
        leads = [(p.start - issued).total_seconds() for p in raw]
        corrected, _ = calibration.apply(leads, [p.value for p in raw])
        calibrated = tuple(CurvePoint(p.start, float(v)) for p, v in zip(raw, corrected, strict=True))
        note = calibration.reason()
    elif forecast.issued_at is not None:
        note = f"{forecast.source} forecast as published (no track record in the store yet)"
    return ZoneView(
        zone=zone,
        conn_id=conn_id,
        unit=forecast.unit,
        metric=None if forecast.metric is None else str(forecast.metric.value),
        source=forecast.source,
        issued_at=forecast.issued_at,
        current=current,
        forecast=raw,
        calibrated=calibrated,
        calibration_note=note,
        clean_window=cleanest_window(calibrated or raw, length=window, now=now, current=current),
    )
