"""Provider forecasts in the backtest: calibrated and blended, as published, and none, on GB 2023.

Run: .venv/bin/python benchmarks/bench_forecast_backtest.py [--jobs 250] [--seeds 1,2,3,4,5]

Reads the GB Carbon Intensity API's real, as-published 48 h national forecasts (60 vintages, 2023-05-26 to
06-09) and the actuals from ``../shared/data/gb`` in place. Jobs: 1-24 h, exactly 12 h of slack, exact run
times (margin 0), submitted uniformly between the first vintage + 2 days and the last vintage, one job set
per seed. Warm-up: the data start on 2023-05-26 03:30, so at the first submission the own forecaster and
the calibration have two days of history (the forecaster's ridge prior and the calibration's shrinkage are
what carry them; nothing is fitted on data from after a decision). For every seed the same jobs are
replayed in three worlds that differ only in what the policies may know:

* ``calibrated``: the vintages, corrected and blended with the own forecaster (the default);
* ``raw``: the vintages as published (``ReplayConfig(calibrate=False)``, CLI ``--no-calibration``);
* ``none``: no vintages, the own forecaster only;

and ``gridaware`` and ``decide-once`` (the GSF SDK's way) run in each. Printed: mean and standard deviation
over seeds of the share of the oracle's CO2 saving captured, and the deadline misses. Last, the live path:
the time ``calibrate_series`` takes on the 14 days of vintages as ``SignalSeries``, and its reason text.

The same figures for one seed come from the CLI, e.g.::

    python -m airflow_provider_gridaware.planning.datasets jobs jobs.csv --zones GB --start 2023-05-28T03:31Z \\
        --end 2023-06-09T21:31Z --count 250 --hours 1,24 --slack-hours 12,12 --seed 1
    gridaware backtest --actual ../shared/data/gb/gb_national_actual_2023-05-26_2023-06-25.csv \\
        --forecasts ../shared/data/gb/gb_national_forecast_vintages_2023-05-26_2023-06-09.csv \\
        --jobs jobs.csv --policy gridaware --policy decide-once [--no-calibration]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_gridaware.planning import datasets
from airflow_provider_gridaware.planning.backtest import read_actuals, read_forecasts, run_backtest
from airflow_provider_gridaware.planning.calibration import calibrate_series
from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster
from airflow_provider_gridaware.planning.policies import PolicySettings
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, SignalSeries, build_series

GB = Path(__file__).resolve().parents[2] / "shared" / "data" / "gb"
ACTUAL = GB / "gb_national_actual_2023-05-26_2023-06-25.csv"
VINTAGES = GB / "gb_national_forecast_vintages_2023-05-26_2023-06-09.csv"
DAY_S = 86_400
WARM_UP_DAYS = 2
POLICIES = ("gridaware", "decide-once")
WORLDS = ("calibrated", "raw", "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=250, help="jobs per seed (default 250)")
    parser.add_argument("--seeds", default="1,2,3,4,5", help="job seeds (default 1,2,3,4,5)")
    parser.add_argument("--max-hours", type=float, default=24.0, help="longest job (default 24)")
    args = parser.parse_args()
    if not ACTUAL.is_file() or not VINTAGES.is_file():
        print(f"shared GB data not found in {GB}", file=sys.stderr)
        return 1
    actual = read_actuals([ACTUAL])
    vintages = read_forecasts(VINTAGES)
    issued = [v[0] for v in vintages["GB"]]
    config = ReplayConfig(step_s=900, forecaster_step_s=1800, horizon_s=40 * 3600)
    worlds = {
        "calibrated": Replay(carbon=actual, carbon_vintages=vintages, config=config),
        "raw": Replay(
            carbon=actual,
            carbon_vintages=vintages,
            config=ReplayConfig(step_s=900, forecaster_step_s=1800, horizon_s=40 * 3600, calibrate=False),
        ),
        "none": Replay(carbon=actual, config=config),
    }
    settings = PolicySettings(runtime_margin=0.0)
    captured: dict[tuple[str, str], list[float]] = {(w, p): [] for w in WORLDS for p in POLICIES}
    misses: dict[tuple[str, str], int] = dict.fromkeys(captured, 0)
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for seed in seeds:
        specs = datasets.generate_jobs(
            start_s=issued[0] + WARM_UP_DAYS * DAY_S,
            end_s=issued[-1],
            count=args.jobs,
            zones=["GB"],
            duration_hours=(1.0, args.max_hours),
            slack_hours=(12.0, 12.0),
            seed=seed,
        )
        line = []
        for world, replay in worlds.items():
            result = run_backtest(replay, specs, POLICIES, settings=settings)
            for policy in POLICIES:
                summary = result.summaries[policy]
                captured[(world, policy)].append(summary.oracle_captured_pct)
                misses[(world, policy)] += summary.misses
                line.append(f"{policy} {world} {summary.oracle_captured_pct:5.1f}")
        print(f"seed {seed}: {len(result.jobs)} jobs; " + ", ".join(line))
    print(
        f"\n== GB 2023, real provider vintages: % of the oracle's CO2 saving captured over {len(seeds)} seeds "
        f"x {args.jobs} jobs (1-{args.max_hours:g} h, 12 h slack, exact run times)"
    )
    print(f"   {'policy':<12} {'forecast':<11} {'mean':>6} {'sd':>5} {'min':>6} {'max':>6} {'misses':>7}")
    for world in WORLDS:
        for policy in POLICIES:
            values = captured[(world, policy)]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(
                f"   {policy:<12} {world:<11} {statistics.mean(values):6.1f} {sd:5.1f} "
                f"{min(values):6.1f} {max(values):6.1f} {misses[(world, policy)]:7d}"
            )
    cal = statistics.mean(captured[("calibrated", "gridaware")])
    print(
        f"\n   gridaware calibrated - gridaware without forecast: "
        f"{cal - statistics.mean(captured[('none', 'gridaware')]):+.1f} points; "
        f"- decide-once with the raw forecast: {cal - statistics.mean(captured[('raw', 'decide-once')]):+.1f}; "
        f"- decide-once calibrated: {cal - statistics.mean(captured[('calibrated', 'decide-once')]):+.1f}"
    )
    live(actual["GB"], vintages["GB"])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


def as_series(points: PointSeries, issued_s: int | None) -> SignalSeries:
    """A backtest point series as the live planner gets it (a forecast when ``issued_s`` is given)."""
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="ukci",
        series_type=SeriesType.ACTUAL if issued_s is None else SeriesType.FORECAST,
        issued_at=None if issued_s is None else datetime.fromtimestamp(issued_s, timezone.utc),
        unit="gCO2eq/kWh",
        points=[
            (datetime.fromtimestamp(int(a), timezone.utc), datetime.fromtimestamp(int(b), timezone.utc), float(v))
            for a, b, v in zip(points.starts, points.ends, points.values, strict=True)
            if b > a
        ],
    )


def live(actual: PointSeries, vintages: list[tuple[int, PointSeries]]) -> None:
    """The live path on the same data: archived vintages and actuals in, a calibration out, timed."""
    series = [as_series(points, issued) for issued, points in vintages]
    now = datetime.fromtimestamp(vintages[-1][0], timezone.utc)
    actuals = as_series(actual, None)
    forecaster = SeasonalForecaster(step_s=1800, horizon_slots=2 * 48)
    started = time.perf_counter()
    calibration = calibrate_series(series, actuals, now=now, forecaster=forecaster)
    elapsed = time.perf_counter() - started
    print(
        f"\n== live path: calibrate_series on {len(series)} vintages at {now:%Y-%m-%d %H:%M} UTC: {elapsed * 1000:.0f} ms"
    )
    print(f"   reason: {calibration.reason()}")


if __name__ == "__main__":
    sys.exit(main())
