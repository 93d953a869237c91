"""A forecast source's track record, learnt from the store: what the live planner corrects forecasts by.

The backtest calibrates provider vintages by default (:mod:`~airflow_provider_gridaware.planning.calibration`);
this is the same calculation on what the hooks archived, so a live decision and a backtest decision on the
same data agree. It reads the store (blocking): the trigger calls it in a thread, at most once per
:data:`CALIBRATION_MAX_AGE` per source, zone and signal, and plans on the last result meanwhile.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.calibration import ForecastCalibration
    from airflow_provider_gridaware.signals.models import SignalSeries

log = logging.getLogger(__name__)

#: A track record changes slowly (its window is two weeks): relearn it hourly.
CALIBRATION_MAX_AGE = timedelta(hours=1)


def calibration_for(
    forecast: SignalSeries, *, now: datetime, store_url: str | None = None
) -> ForecastCalibration | None:
    """The calibration of ``forecast``'s source and zone from archived vintages and actuals, or ``None``.

    ``None`` when calibration cannot apply (archiving off, nothing archived, a store error: logged once),
    so the forecast is used as published, as before any history exists.

    :param forecast: the forecast about to be planned on (its source, zone, kind and metric are looked up).
    :param now: the decision time: only vintages issued and actuals ended by then count.
    :param store_url: the store (default: where the hooks archive).
    """
    from airflow_provider_gridaware.hooks.store import GridStoreHook, archive_enabled, shared_archive
    from airflow_provider_gridaware.planning.calibration import CalibrationSettings, calibrate_series
    from airflow_provider_gridaware.planning.planner import PlannerSettings

    if forecast.issued_at is None or not (store_url or archive_enabled()):
        return None
    settings = CalibrationSettings()
    window = timedelta(days=settings.window_days)
    try:
        archive = shared_archive(store_url or GridStoreHook().get_url())
        vintages = archive.vintages(
            forecast.source,
            forecast.zone,
            forecast.kind,
            issued_from=now - window,
            issued_until=now,
            metric=forecast.metric,
        )
        if not vintages:
            return None
        actuals = archive.actuals(
            forecast.source, forecast.zone, forecast.kind, now - window - timedelta(days=2), now, metric=forecast.metric
        )
    except Exception as exc:  # the store is an aid: without it the forecast is used as published
        log.warning(
            "no calibration for %s/%s (%s): planning on the forecast as published", forecast.source, forecast.zone, exc
        )
        return None
    if actuals is None or not len(actuals):
        return None
    return calibrate_series(
        [v.series for v in vintages], actuals, now=now, settings=settings, forecaster=PlannerSettings().forecaster
    )
