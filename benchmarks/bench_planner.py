"""Planner throughput on one core: plans per second over 7-day, 5-minute forecasts for 20 zones.

Run: .venv/bin/python benchmarks/bench_planner.py [--jobs 100000]

Each figure is the best of a few repetitions (the machine is shared). The window search is plain numpy
ufuncs (one thread); for ``prepare`` (which fits with BLAS) run with ``OMP_NUM_THREADS=1`` to pin one core.
Scenarios:
* core, trigger case: every job planned "now" (all waiting jobs at a forecast refresh), all 20 zones;
* core, spread starts: earliest starts spread over a day (sparse-table range minimum);
* core, 3 of 20 zones per job;
* core, durations in whole minutes (as jobs files give them), and in arbitrary seconds (every job its own
  duration: the worst case for grouping by duration);
* typed API: ``plan_jobs`` on ``Job`` objects, returning ``Plan`` objects;
* interruptible: one dynamic programme; ``prepare``: 20 zones with 4 weeks of history each.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import numpy as np

from airflow_provider_gridaware.planning import core
from airflow_provider_gridaware.planning.decision import decide
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.planner import ZoneSignals, plan_jobs, prepare
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, SignalSeries, build_series

STEP_S = 300
SLOTS = 7 * 24 * 12  # 7 days of 5-minute slots
ZONES = 20
UTC = timezone.utc
NOW = datetime(2024, 5, 1, tzinfo=UTC)
#: The trigger's default refresh period (re-plans per forecast refresh).
REFRESH = timedelta(minutes=15)


def best_of(runs: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def synthetic_values(rng: np.random.Generator) -> np.ndarray:
    hours = np.arange(SLOTS) * STEP_S / 3600
    base = 250 + 150 * rng.random((ZONES, 1))
    cycle = 80 * np.cos(2 * np.pi * (hours[None, :] % 24 - 13 - 6 * rng.random((ZONES, 1))) / 24)
    return np.maximum(base + cycle + rng.normal(0, 15, (ZONES, SLOTS)), 1) / 300


def core_figures(jobs: int, rng: np.random.Generator) -> None:
    grid = core.ObjectiveGrid.from_values(synthetic_values(rng), origin_s=0, step_s=STEP_S)
    duration = rng.integers(12, 24 * 12 + 1, jobs) * STEP_S  # 1-24 h in 5-minute steps
    slack = rng.integers(2 * 12, 24 * 12 + 1, jobs) * STEP_S  # 2-24 h
    home = rng.integers(0, ZONES, jobs)
    now = np.full(jobs, 17, np.int64)  # a refresh at an odd second: "now" is not on the grid
    spread = rng.integers(0, 24 * 3600, jobs)
    some = np.zeros((jobs, ZONES), bool)
    some[np.arange(jobs)[:, None], rng.integers(0, ZONES, (jobs, 3))] = True
    minutes = rng.integers(60, 24 * 60 + 1, jobs) * 60
    odd = rng.integers(3600, 24 * 3600 + 1, jobs)
    cases = {
        "core, all plan 'now', 20 zones each": dict(duration_s=duration, earliest_s=now, latest_start_s=now + slack),
        "core, starts spread over a day, 20 zones": dict(
            duration_s=duration, earliest_s=spread, latest_start_s=spread + slack
        ),
        "core, all plan 'now', 3 of 20 zones": dict(
            duration_s=duration, earliest_s=now, latest_start_s=now + slack, zone_ok=some
        ),
        "core, durations in whole minutes, 20 zones": dict(
            duration_s=minutes, earliest_s=now, latest_start_s=now + slack
        ),
        "core, minutes, starts spread, 20 zones": dict(
            duration_s=minutes, earliest_s=spread, latest_start_s=spread + slack
        ),
        "core, every job its own duration (s)": dict(duration_s=odd, earliest_s=now, latest_start_s=now + slack),
    }
    print(
        f"core best_windows: {jobs:,} jobs, {ZONES} zones x {SLOTS} slots of 5 min (7 days), 1-24 h jobs, 2-24 h slack"
    )
    for label, kwargs in cases.items():
        seconds = best_of(3, lambda kw=kwargs: core.best_windows(grid, home_zone=home, min_gain=0.005, **kw))
        print(f"  {label:<44} {jobs / seconds:>12,.0f} plans/s   ({seconds * 1000:.0f} ms)")


def series(zone: str, values: np.ndarray, start: datetime, actual: bool) -> SignalSeries:
    points = [
        (start + timedelta(seconds=STEP_S * i), start + timedelta(seconds=STEP_S * (i + 1)), float(v))
        for i, v in enumerate(values)
    ]
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="bench",
        series_type=SeriesType.ACTUAL if actual else SeriesType.FORECAST,
        issued_at=None if actual else start,
        unit="gCO2eq/kWh",
        points=points,
    )


def typed_figures(rng: np.random.Generator) -> None:
    values = synthetic_values(rng) * 300
    forecasts = [ZoneSignals(f"Z{z:02d}", carbon=series(f"Z{z:02d}", values[z], NOW, False)) for z in range(ZONES)]
    until = NOW + timedelta(days=7)
    seconds = best_of(3, lambda: prepare(forecasts, now=NOW, until=until))
    print(f"  prepare: {ZONES} zones of 7-day 5-min forecasts              {seconds * 1000:>9.0f} ms per refresh")
    history = [
        ZoneSignals(
            f"Z{z:02d}", carbon_history=series(f"Z{z:02d}", np.tile(values[z], 4), NOW - timedelta(days=28), True)
        )
        for z in range(ZONES)
    ]
    seconds = best_of(2, lambda: prepare(history, now=NOW, until=NOW + timedelta(days=2)))
    print(f"  prepare: {ZONES} zones, own forecaster on 28 days of history  {seconds * 1000:>9.0f} ms per refresh")
    grid = prepare(forecasts, now=NOW, until=until)
    count = 10_000
    zones = [f"Z{z:02d}" for z in range(ZONES)]
    jobs = [
        Job(
            duration=timedelta(minutes=5 * int(rng.integers(12, 289))),
            earliest_start=NOW,
            deadline=NOW + timedelta(hours=int(rng.integers(3, 48))),
            zones=tuple(rng.choice(zones, 3, replace=False)),
        )
        for _ in range(count)
    ]
    seconds = best_of(3, lambda: plan_jobs(jobs, grid, now=NOW))
    print(f"  typed plan_jobs (Job -> Plan with reason), 3 zones each    {count / seconds:>12,.0f} plans/s")
    # A trigger decides for one job at a time: decide() per job, keeping each job's previous window.
    single = jobs[:2_000]
    previous = [decide(job, grid, NOW, None, refresh=REFRESH).window for job in single]
    seconds = best_of(
        3, lambda: [decide(j, grid, NOW, w, refresh=REFRESH) for j, w in zip(single, previous, strict=True)]
    )
    print(
        f"  decide(), one job per call (a trigger's re-plan), 3 zones   {seconds / len(single) * 1e6:>9.0f} us per decision"
    )
    chunked = Job(
        duration=timedelta(hours=12),
        earliest_start=NOW,
        deadline=NOW + timedelta(hours=48),
        zones=("Z00",),
        interruptible=True,
        min_chunk=timedelta(hours=1),
        resume_cost=timedelta(minutes=10),
    )
    seconds = best_of(3, lambda: plan_jobs([chunked], grid, now=NOW))
    print(f"  interruptible, 12 h in 48 h, min chunk 1 h (DP, 5-min slots)  {seconds * 1000:>9.1f} ms per plan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    core_figures(args.jobs, rng)
    print("typed API (the trigger's path)")
    typed_figures(rng)


if __name__ == "__main__":
    main()
