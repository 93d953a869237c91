"""Savings of each policy on DE, GB and FR 2020: the table behind the planner's goals.

Run: .venv/bin/python benchmarks/bench_backtest.py [--jobs 500] [--seeds 11,1,2,3,4] [--zones DE,GB,FR]

Reads the "Let's Wait Awhile" traces from ``../shared/data`` in place (never copied into the repo). Jobs:
1-24 h, slack 2-24 h, arrivals following the Alibaba PAI trace's pattern, all of 2020, no provider forecast
(policies have only the actuals up to each decision and their own forecaster). One job set per seed; a
single job set moves the figures by several points, so every seed is printed with the mean and spread.
For each zone and seed:

* exact run times (the jobs declare a 0 margin): the share of the oracle's saving captured by gridaware
  and decide-once, for the whole year and separately for jobs submitted in Jan-Jun and in Jul-Dec (the
  policy's knobs were chosen on Jan-Jun; Jul-Dec is the held-out half);
* +/-25 % run-time error (declared: margin 25 %): deadline misses of every policy against run-now's;

and, on the first seed only, for transparency: the full tables, exact run times with the 25 % margin kept
anyway, the naive "repeat the last day" forecaster instead of ours, and a region-shifting run (home zones
drawn from DE, GB, FR, half the jobs allowed all three). The bench only calls the backtest's own
functions (``replay_policy``, ``summarise``): the half-year figures are ``summarise`` on the jobs of
each half.

The same numbers come from the CLI, e.g. for DE with exact run times::

    python -m airflow_provider_gridaware.planning.datasets actual ../shared/data/carbon/ger_ci.csv.gz DE de.csv
    python -m airflow_provider_gridaware.planning.datasets jobs jobs.csv --zones DE --start 2020-01-01T00:00Z \\
        --end 2020-12-29T00:00Z --count 500 --pai ../shared/data/jobs/pai_1k.csv --seed 11
    gridaware backtest --actual de.csv --jobs jobs.csv --policy gridaware --policy decide-once --policy threshold
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_gridaware.planning import datasets
from airflow_provider_gridaware.planning.backtest import Summary, format_summaries, replay_jobs, summarise
from airflow_provider_gridaware.planning.policies import PolicySettings, replay_policy
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACES = {"DE": "ger_ci.csv.gz", "GB": "gb_ci.csv.gz", "FR": "fr_ci.csv.gz"}
START = 1_577_836_800  # 2020-01-01T00:00Z
MID = 1_593_561_600  # 2020-07-01T00:00Z: knobs were chosen on jobs submitted before, the rest is held out
END = 1_609_200_000  # 2020-12-29T00:00Z: deadlines stay inside the traces
HALVES = {"year": (START, END), "Jan-Jun": (START, MID), "Jul-Dec": (MID, END)}
POLICIES = ("gridaware", "decide-once", "threshold", "oracle")
COMPARED = ("gridaware", "decide-once")


def load(zone: str) -> PointSeries:
    times, values = datasets.read_lets_wait_awhile(SHARED / "carbon" / TRACES[zone])
    return PointSeries.from_starts(times, values)


@dataclass
class Run:
    """One backtest run: the summaries per policy and per half of the year."""

    summaries: dict[str, Summary]
    halves: dict[str, dict[str, Summary]]


def run(
    replay: Replay, specs: list, *, error: float, margin: float, policies: tuple[str, ...] = POLICIES, label: str = ""
) -> Run:
    jobs, _ = replay_jobs(specs, replay, runtime_error=error, seed=5)
    settings = PolicySettings(runtime_margin=margin)
    executions = {name: replay_policy(replay, name, jobs, settings) for name in {"run-now", "oracle", *policies}}
    halves: dict[str, dict[str, Summary]] = {}
    for half, (first, end) in HALVES.items():
        keep = [k for k, job in enumerate(jobs) if first <= job.submit_s < end]
        subset = {name: [done[k] for k in keep] for name, done in executions.items()}
        halves[half] = {
            name: summarise(
                replay, [jobs[k] for k in keep], name, subset[name], subset["run-now"], subset["oracle"], settings
            )
            for name in policies
        }
    summaries = {
        (label or name): Summary(**{**s.as_dict(), "policy": label or name}) for name, s in halves["year"].items()
    }
    return Run(summaries, halves)


def _stats(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} (sd {sd:3.1f}, {min(values):5.1f}-{max(values):5.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=500, help="jobs per zone and seed (default 500)")
    parser.add_argument(
        "--seeds", default="11,1,2,3,4", help="job seeds (default 11,1,2,3,4; the first gets full tables)"
    )
    parser.add_argument("--zones", default="DE,GB,FR")
    parser.add_argument("--no-region", action="store_true", help="skip the region-shifting run")
    args = parser.parse_args()
    if not (SHARED / "carbon").is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    arrivals = datasets.pai_arrivals(SHARED / "jobs" / "pai_1k.csv")
    zones = [z for z in args.zones.split(",") if z]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    # captured[(policy, half)][seed][zone]: share of the oracle's saving, exact run times.
    captured: dict[tuple[str, str], dict[int, dict[str, float]]] = {
        (name, half): {seed: {} for seed in seeds} for name in COMPARED for half in HALVES
    }
    misses: dict[str, dict[int, int]] = {name: dict.fromkeys(seeds, 0) for name in ("run-now", *POLICIES[:-1])}
    series = {}
    started = time.perf_counter()
    for zone in zones:
        series[zone] = load(zone)
        data_step = 900 if zone == "DE" else 1800
        replay = Replay(carbon={zone: series[zone]}, config=ReplayConfig(step_s=900, forecaster_step_s=data_step))
        for seed in seeds:
            specs = datasets.generate_jobs(
                start_s=START, end_s=END, count=args.jobs, zones=[zone], arrivals=arrivals, seed=seed
            )
            exact = run(replay, specs, error=0.0, margin=0.0)
            for (name, half), per_seed in captured.items():
                per_seed[seed][zone] = exact.halves[half][name].oracle_captured_pct
            noisy = run(replay, specs, error=0.25, margin=0.25)
            for name in POLICIES[:-1]:
                misses[name][seed] += noisy.summaries[name].misses
            misses["run-now"][seed] += noisy.summaries["gridaware"].run_now_misses
            print(
                f"{zone} seed {seed:>2}: captured "
                + ", ".join(
                    f"{name} {exact.summaries[name].oracle_captured_pct:5.1f}% "
                    f"(Jan-Jun {exact.halves['Jan-Jun'][name].oracle_captured_pct:5.1f}, "
                    f"Jul-Dec {exact.halves['Jul-Dec'][name].oracle_captured_pct:5.1f})"
                    for name in COMPARED
                )
                + f"; misses at +/-25 %: gridaware {noisy.summaries['gridaware'].misses}, "
                f"run-now {noisy.summaries['gridaware'].run_now_misses}"
                f"   ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            if seed != seeds[0]:
                continue
            print(format_summaries(exact.summaries, title=f"\n== {zone} 2020, seed {seed}, exact run times (margin 0)"))
            print(format_summaries(noisy.summaries, title=f"-- {zone}, seed {seed}, run times +/-25 % (margin 25 %)"))
            kept = run(replay, specs, error=0.0, margin=0.25, policies=("gridaware",), label="gridaware m25")
            naive_replay = Replay(
                carbon={zone: series[zone]},
                config=ReplayConfig(step_s=900, forecaster_step_s=data_step, forecaster="repeat-day"),
            )
            naive = run(naive_replay, specs, error=0.0, margin=0.0, policies=COMPARED)
            naive_rows = {
                f"{k} naive": Summary(**{**v.as_dict(), "policy": f"{k} naive"}) for k, v in naive.summaries.items()
            }
            print(
                format_summaries(
                    {**kept.summaries, **naive_rows},
                    title=f"-- {zone}, exact run times: 25 % margin kept anyway; 'naive' = repeat-the-last-day forecaster\n",
                )
            )
    print(
        f"\n== share of the oracle's CO2 saving captured, exact run times, own forecaster only "
        f"({len(seeds)} seeds x {args.jobs} jobs per zone; mean over {', '.join(zones)})"
    )
    print(
        f"   {'seed':>4}  " + "  ".join(f"{name + ' ' + half:>20}" for name in COMPARED for half in HALVES) + "  ahead"
    )
    ahead = []
    for seed in seeds:
        row = {key: statistics.mean(per_seed[seed].values()) for key, per_seed in captured.items()}
        ahead.append(row[("gridaware", "year")] - row[("decide-once", "year")])
        print(
            f"   {seed:>4}  "
            + "  ".join(f"{row[(name, half)]:19.1f}%" for name in COMPARED for half in HALVES)
            + f"  {ahead[-1]:+5.1f}"
        )
    for name in COMPARED:
        for half in HALVES:
            per_seed = captured[(name, half)]
            means = [statistics.mean(per_seed[seed].values()) for seed in seeds]
            per_zone = "  ".join(
                f"{zone} {statistics.mean(per_seed[seed][zone] for seed in seeds):5.1f}" for zone in zones
            )
            print(f"   {name:<12} {half:<8} mean over seeds {_stats(means)};  per zone {per_zone}")
    print(
        f"   gridaware - decide-once, whole year: {_stats(ahead)}; ahead on {sum(a > 0 for a in ahead)}/{len(seeds)} seeds"
    )
    print("\n== deadline misses with +/-25 % run-time error (margin 25 %), summed over zones, per seed")
    for name, counts in misses.items():
        print(
            f"   {name:<12} " + "  ".join(f"{counts[seed]:4d}" for seed in seeds) + f"   total {sum(counts.values())}"
        )
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
                run(replay, specs, error=0.0, margin=0.0).summaries,
                title="\n== region shifting: home DE/GB/FR, half the jobs may run in any of the three",
            )
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
