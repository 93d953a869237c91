"""Forecast calibrations shared by every trigger of a triggerer: one store read per source, zone and hour.

Learning a track record reads the store and fits the own forecaster (a fraction of a second per source):
it runs in a thread, never on the event loop, and at most once per
:data:`~airflow_provider_gridaware.hooks.forecast_calibration.CALIBRATION_MAX_AGE`. Meanwhile triggers plan
on the last result; only the first read of a key in a triggerer waits for it (so a restarted triggerer
plans as the worker did), bounded by :data:`FIRST_WAIT_S`.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.calibration import ForecastCalibration
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.times import Clock

#: The first calibration of a key is waited for at most this long (wall seconds); then planning goes on
#: with the forecast as published and picks the calibration up at the next re-plan.
FIRST_WAIT_S = 20.0


@dataclass
class _Entry:
    value: ForecastCalibration | None = None
    learnt_at: datetime | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class SharedCalibrations:
    """Per event loop: the last calibration per (source, zone, kind, metric)."""

    _entries: dict[tuple[Any, ...], _Entry] = field(default_factory=dict)

    async def get(self, forecast: SignalSeries, now: datetime, clock: Clock) -> ForecastCalibration | None:
        """The calibration for ``forecast``'s source and zone (possibly up to an hour old), or ``None``.

        :param forecast: the forecast about to be planned on.
        :param now: the decision time.
        :param clock: the trigger's clock (for the wait on a first read).
        """
        from airflow_provider_gridaware.hooks.forecast_calibration import CALIBRATION_MAX_AGE

        key = (forecast.source, forecast.zone, forecast.kind, forecast.metric)
        entry = self._entries.setdefault(key, _Entry())
        stale = entry.learnt_at is None or now - entry.learnt_at >= CALIBRATION_MAX_AGE
        if stale and (entry.task is None or entry.task.done()):
            entry.task = asyncio.ensure_future(self._learn(entry, forecast, now))
        if entry.learnt_at is None and entry.task is not None:
            await asyncio.wait({entry.task}, timeout=FIRST_WAIT_S)
        return entry.value

    @staticmethod
    async def _learn(entry: _Entry, forecast: SignalSeries, now: datetime) -> None:
        from airflow_provider_gridaware.hooks.forecast_calibration import calibration_for

        try:
            entry.value = await asyncio.to_thread(calibration_for, forecast, now=now)
        finally:  # calibration_for logs its own failures; whatever happened, try again only after the max age
            entry.learnt_at = now


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedCalibrations] = weakref.WeakKeyDictionary()


def shared_calibrations() -> SharedCalibrations:
    """The calibrations of the running event loop (the triggerer runs all its triggers in one loop)."""
    loop = asyncio.get_running_loop()
    found = _SHARED.get(loop)
    if found is None:
        found = _SHARED[loop] = SharedCalibrations()
    return found
