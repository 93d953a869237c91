"""Signals of a job's zones on a planning grid, shared between jobs that plan on the same series.

With thousands of deferred tasks on a few zones, preparing the grid once per grid slot instead of once
per task is what keeps the triggerer's event loop responsive. A grid is kept only while every series it
was prepared from is alive (weak references: a refreshed series drops its grids) and its slot is current.
Pure: no Airflow; numpy loads with the planner.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.times import from_epoch

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.calibration import ForecastCalibration
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.planning.planner import PlanningGrid
    from airflow_provider_gridaware.signals.models import SignalSeries

_GRID_CACHE: OrderedDict[tuple[Any, ...], tuple[tuple[weakref.ref[Any] | None, ...], Any]] = OrderedDict()
_GRID_CACHE_SIZE = 64
_GRID_UNTIL_BUCKET = timedelta(hours=6)


def grid_for(
    job: Job,
    *,
    carbon: Mapping[str, SignalSeries],
    price: Mapping[str, SignalSeries],
    now: datetime,
    history: Mapping[str, SignalSeries] | None = None,
    calibrations: Mapping[tuple[str, str], ForecastCalibration] | None = None,
) -> PlanningGrid:
    """The planning grid of ``job``'s zones at ``now``, from the series at hand (cached, see the module).

    :param job: the job (its zones and deadline).
    :param carbon: carbon forecast per zone.
    :param price: price series per zone.
    :param now: the planning time.
    :param history: recent carbon actuals per zone, for the own forecaster.
    :param calibrations: per ``(zone, "carbon" | "price")``, the forecast source's track record.
    """
    from airflow_provider_gridaware.planning import planner

    history = history or {}
    calibrations = calibrations or {}
    signals = [
        planner.ZoneSignals(
            zone=zone,
            carbon=carbon.get(zone),
            price=price.get(zone),
            carbon_history=history.get(zone),
            carbon_calibration=calibrations.get((zone, "carbon")),
            price_calibration=calibrations.get((zone, "price")),
        )
        for zone in job.zones
    ]
    step = planner.PlannerSettings().step
    slot = int(now.timestamp()) // int(step.total_seconds())
    bucket = int(_GRID_UNTIL_BUCKET.total_seconds())
    until_bucket = -(-int(max(job.deadline, now).timestamp()) // bucket)
    held = tuple(
        x for s in signals for x in (s.carbon, s.price, s.carbon_history, s.carbon_calibration, s.price_calibration)
    )
    key = (tuple(job.zones), tuple(id(x) for x in held), slot, until_bucket)
    cached = _GRID_CACHE.get(key)
    # Identity check: the key holds ids, the value refers to the objects, so a recycled id can never match.
    if cached is not None and all(x is None if r is None else r() is x for r, x in zip(cached[0], held, strict=True)):
        _GRID_CACHE.move_to_end(key)
        grid: PlanningGrid = cached[1]
        return grid
    grid = planner.prepare(signals, now=now, until=from_epoch(until_bucket * bucket))
    for old in [k for k in _GRID_CACHE if k[2] < slot]:  # earlier slots are not planned in again
        del _GRID_CACHE[old]
    forget = functools.partial(_forget_grid, key)
    _GRID_CACHE[key] = (tuple(None if x is None else weakref.ref(x, forget) for x in held), grid)
    while len(_GRID_CACHE) > _GRID_CACHE_SIZE:
        _GRID_CACHE.popitem(last=False)
    return grid


def _forget_grid(key: tuple[Any, ...], dead: weakref.ref[Any]) -> None:
    """A series a cached grid was prepared from is gone: nobody can plan on that grid again."""
    cached = _GRID_CACHE.get(key)
    if cached is not None and any(r is dead for r in cached[0]):
        del _GRID_CACHE[key]
