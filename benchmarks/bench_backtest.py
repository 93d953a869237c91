"""Savings of each policy on DE, GB and FR 2020: the table behind the planner's goals.

Run: .venv/bin/python benchmarks/bench_backtest.py [--jobs 500] [--zones DE,GB,FR]

Reads the "Let's Wait Awhile" traces from ``../shared/data`` in place (never copied into the repo). Jobs:
1-24 h, slack 2-24 h, arrivals following the Alibaba PAI trace's pattern, all of 2020, no provider forecast
(policies have only the actuals up to each decision and their own forecaster). For each zone:

* exact run times (the jobs declare a 0 margin), then +/-25 % run-time error (declared: margin 25 %);
* for transparency, exact run times with the 25 % margin kept anyway, and the naive "repeat the last day"
  forecaster instead of ours;
* a region-shifting run: home zones drawn from DE, GB, FR and half the jobs allowed all three.

The same numbers come from the CLI, e.g. for DE with exact run times::

    python -m airflow_provider_gridaware.planning.datasets actual ../shared/data/carbon/ger_ci.csv.gz DE de.csv
    python -m airflow_provider_gridaware.planning.datasets jobs jobs.csv --zones DE --start 2020-01-01T00:00Z \\
        --end 2020-12-29T00:00Z --count 500 --pai ../shared/data/jobs/pai_1k.csv --seed 11
    gridaware backtest --actual de.csv --jobs jobs.csv --policy gridaware --policy decide-once --policy threshold
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from airflow_provider_gridaware.planning import datasets
from airflow_provider_gridaware.planning.backtest import Summary, format_summaries, replay_jobs, summarise
from airflow_provider_gridaware.planning.policies import PolicySettings, replay_policy
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACES = {"DE": "ger_ci.csv.gz", "GB": "gb_ci.csv.gz", "FR": "fr_ci.csv.gz"}
START = 1_577_836_800  # 2020-01-01T00:00Z
END = 1_609_200_000  # 2020-12-29T00:00Z: deadlines stay inside the traces
POLICIES = ("gridaware", "decide-once", "threshold", "oracle")


def load(zone: str) -> PointSeries:
    times, values = datasets.read_lets_wait_awhile(SHARED / "carbon" / TRACES[zone])
    return PointSeries.from_starts(times, values)


def run(
    replay: Replay, specs: list, *, error: float, margin: float, policies: tuple[str, ...] = POLICIES, label: str = ""
) -> dict[str, Summary]:
    jobs, _ = replay_jobs(specs, replay, runtime_error=error, seed=5)
    settings = PolicySettings(runtime_margin=margin)
    executions = {name: replay_policy(replay, name, jobs, settings) for name in {"run-now", "oracle", *policies}}
    return {
        (label or name): summarise(
            replay, jobs, label or name, executions[name], executions["run-now"], executions["oracle"], settings
        )
        for name in policies
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per zone (default 500)")
    parser.add_argument("--zones", default="DE,GB,FR")
    parser.add_argument("--no-region", action="store_true", help="skip the region-shifting run")
    args = parser.parse_args()
    if not (SHARED / "carbon").is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    arrivals = datasets.pai_arrivals(SHARED / "jobs" / "pai_1k.csv")
    zones = [z for z in args.zones.split(",") if z]
    captured: dict[str, dict[str, float]] = {"gridaware": {}, "decide-once": {}}
    series = {}
    started = time.perf_counter()
    for zone in zones:
        series[zone] = load(zone)
        data_step = 900 if zone == "DE" else 1800
        replay = Replay(carbon={zone: series[zone]}, config=ReplayConfig(step_s=900, forecaster_step_s=data_step))
        specs = datasets.generate_jobs(
            start_s=START, end_s=END, count=args.jobs, zones=[zone], arrivals=arrivals, seed=11
        )
        exact = run(replay, specs, error=0.0, margin=0.0)
        for name in captured:
            captured[name][zone] = exact[name].oracle_captured_pct
        print(format_summaries(exact, title=f"\n== {zone} 2020, exact run times (margin 0), own forecaster only"))
        print(
            format_summaries(
                run(replay, specs, error=0.25, margin=0.25), title=f"-- {zone}, run times +/-25 % (margin 25 %)"
            )
        )
        kept = run(replay, specs, error=0.0, margin=0.25, policies=("gridaware",), label="gridaware m25")
        naive_replay = Replay(
            carbon={zone: series[zone]},
            config=ReplayConfig(step_s=900, forecaster_step_s=data_step, forecaster="repeat-day"),
        )
        naive = run(naive_replay, specs, error=0.0, margin=0.0, policies=("gridaware", "decide-once"))
        naive = {f"{k} naive": Summary(**{**v.as_dict(), "policy": f"{k} naive"}) for k, v in naive.items()}
        print(
            format_summaries(
                {**kept, **naive},
                title=f"-- {zone}, exact run times: 25 % margin kept anyway; 'naive' = repeat-the-last-day forecaster",
            )
        )
        print(f"   ({time.perf_counter() - started:.0f} s so far)")
    if len(zones) > 1:
        print("\n== share of the oracle's CO2 saving captured, exact run times, own forecaster only")
        for name, per_zone in captured.items():
            values = [per_zone[z] for z in zones]
            mean = sum(values) / len(values) if all(math.isfinite(v) for v in values) else math.nan
            print(f"   {name:<12} " + "  ".join(f"{z} {per_zone[z]:5.1f}%" for z in zones) + f"   mean {mean:5.1f}%")
    if not args.no_region and set(zones) >= {"DE", "GB", "FR"}:
        replay = Replay(carbon=series, config=ReplayConfig(step_s=900, forecaster_step_s=900))
        specs = datasets.generate_jobs(
            start_s=START,
            end_s=END,
            count=max(60, args.jobs // 2),
            zones=zones,
            extra_zones=zones,
            extra_zone_share=0.5,
            arrivals=arrivals,
            seed=12,
        )
        print(
            format_summaries(
                run(replay, specs, error=0.0, margin=0.0),
                title="\n== region shifting: home DE/GB/FR, half the jobs may run in any of the three",
            )
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
