"""Read the GB carbon-intensity forecast and find the greenest hour in it.

What it shows:

* reading a grid signal through a provider hook (:class:`UKCarbonIntensityHook`, connection
  ``gridaware_ukci_default``; point its Host at a mirror or at ``gridaware simulate serve``), and that
  hooks return a validated ``SignalSeries`` (UTC intervals, unit, average vs marginal, issue time),
  never raw JSON;
* a first, deliberately simple answer to "when should I run?": the 1-hour window with the lowest
  time-weighted mean intensity inside the forecast. The real planner (deadlines, interruptible jobs,
  re-planning as forecasts change) lives in ``airflow_provider_gridaware.planning``;
* a small JSON-able summary passed on through XCom.

Run it by hand (``schedule=None``): trigger ``example_grid_signals`` in the UI or with
``airflow dags trigger example_grid_signals``. Optional run conf: ``{"zone": "GB-13"}`` for a region.

Provider imports happen inside the tasks: the dag-processor parses this file often and should not pay
for them.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag, task

WINDOW_MINUTES = 60


@dag(
    dag_id="example_grid_signals",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example"],
    params={"zone": "GB"},
    doc_md=__doc__,
)
def example_grid_signals() -> None:
    @task
    def greenest_window(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fetch the forecast and pick the lowest-carbon 1-hour window."""
        import logging
        from datetime import timedelta

        from airflow_provider_gridaware.hooks.ukci import UKCarbonIntensityHook
        from airflow_provider_gridaware.signals.models import format_time

        log = logging.getLogger("gridaware.example")
        zone = str((params or {}).get("zone") or "GB")
        series = UKCarbonIntensityHook("gridaware_ukci_default").get_forecast(zone)
        log.info(
            "UKCI forecast for %s: %d points in %s (%s), %s to %s, issued %s",
            series.zone,
            len(series),
            series.unit,
            series.metric.value if series.metric else "-",
            format_time(series.start) if series.start else "-",
            format_time(series.end) if series.end else "-",
            format_time(series.issued_at) if series.issued_at else "-",
        )

        # Candidate starts: every point start with a whole window of data after it. The mean is weighted
        # by overlap, so points of any length (and gaps, which disqualify a window) are handled.
        window = timedelta(minutes=WINDOW_MINUTES)
        best: tuple[float, Any] | None = None
        for candidate in series.points:
            start, end = candidate.start, candidate.start + window
            if series.end is None or end > series.end:
                break
            covered = timedelta()
            weighted = 0.0
            for point in series.points:
                overlap = min(point.end, end) - max(point.start, start)
                if overlap > timedelta():
                    covered += overlap
                    weighted += point.value * overlap.total_seconds()
            if covered < window:
                continue  # a gap inside the window
            mean = weighted / window.total_seconds()
            if best is None or mean < best[0]:
                best = (mean, start)
        if best is None:
            raise ValueError(f"the {zone} forecast ({len(series)} points) is shorter than {WINDOW_MINUTES} minutes")
        mean, start = best
        return {
            "zone": series.zone,
            "source": series.source,
            "points": len(series),
            "unit": series.unit,
            "metric": series.metric.value if series.metric else None,
            "issued_at": format_time(series.issued_at) if series.issued_at else None,
            "forecast_start": format_time(series.start) if series.start else None,
            "forecast_end": format_time(series.end) if series.end else None,
            "window_minutes": WINDOW_MINUTES,
            "best_window_start": format_time(start),
            "best_window_end": format_time(start + window),
            "mean_intensity": round(mean, 1),
        }

    @task
    def report(summary: dict[str, Any]) -> None:
        """Log the answer in one line a person can read."""
        import logging

        logging.getLogger("gridaware.example").info(
            "Greenest %d min in %s: %s to %s at %.1f %s (forecast of %d points issued %s)",
            summary["window_minutes"],
            summary["zone"],
            summary["best_window_start"],
            summary["best_window_end"],
            summary["mean_intensity"],
            summary["unit"],
            summary["points"],
            summary["issued_at"],
        )

    report(greenest_window())


example_grid_signals()
