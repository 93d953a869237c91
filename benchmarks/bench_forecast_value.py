"""What a forecast is worth on DE, GB, FR 2020: the backtest given synthetic provider vintages of known error.

Run: .venv/bin/python benchmarks/bench_forecast_value.py [--zones DE] [--jobs 300] [--seeds 11] [--errors 0.1,0.2,0.3]

The 2020 traces carry no forecast, so ``bench_backtest.py`` measures the policies on the own forecaster alone
(history only). This bench asks how much of the oracle's saving the same policies capture when a provider
forecast exists, with an error of known size: vintages issued every 6 h for 48 h, each the actual plus the
simulator's forecast noise (``traces.forecast.ForecastNoise``: a Gaussian random walk over lead time whose
standard deviation at 24 h is ``error`` times the zone's mean), passed through the backtest's archive and
calibration exactly as real vintages are (``load_vintages``, ``Replay(carbon_vintages=...)``,
``run_backtest``). Jobs as in ``bench_backtest.py``: 1-24 h, slack 2-24 h, PAI arrivals, exact run times.

The noise is smooth (consecutive points err together), so a vintage keeps the actual curve's shape and is
wrong mostly in its level; real forecasts also misplace dips (the GB 2023 vintages: 68.4 % in
``bench_forecast_backtest.py``). So the figures are an upper reference for a forecast of that size, and show
where the limit of the history-only figure lies: in what the policies know, not in the release rule.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench_backtest import END, SHARED, START, TRACES  # the same traces and submission period

from airflow_provider_gridaware.planning import datasets
from airflow_provider_gridaware.planning.backtest import load_vintages, run_backtest
from airflow_provider_gridaware.planning.policies import PolicySettings
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig
from airflow_provider_gridaware.traces.forecast import NOISE_RESOLUTION, ForecastNoise

ISSUE_EVERY_S = 6 * 3600
HORIZON = timedelta(hours=48)
POLICIES = ("gridaware", "decide-once")


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_vintages(path: Path, zone: str, times: list[int], values: list[float], error: float, seed: int) -> int:
    """Vintages every 6 h (from the first midnight) of the actual plus ``error`` noise; returns how many."""
    noise = ForecastNoise(error_fraction=error, seed=seed)
    scale = sum(abs(v) for v in values) / len(values)
    index = {t: i for i, t in enumerate(times)}
    issued = times[0] - times[0] % 86_400 + 86_400
    count = 0
    with path.open("w") as out:
        out.write("issued_at,time,zone,value\n")
        while issued + HORIZON.total_seconds() < times[-1]:
            first = index.get(issued)
            if first is not None:  # an issue time inside a gap of the trace publishes nothing
                issued_at = datetime.fromtimestamp(issued, timezone.utc)
                walk = noise.relative_errors(zone, issued_at, HORIZON)
                for k in range(first, len(times)):
                    lead_s = times[k] - issued
                    if lead_s >= HORIZON.total_seconds():
                        break
                    value = max(0.0, values[k] + walk[int(lead_s // NOISE_RESOLUTION.total_seconds())] * scale)
                    out.write(f"{_iso(issued)},{_iso(times[k])},{zone},{value:.2f}\n")
                count += 1
            issued += ISSUE_EVERY_S
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--zones", default="DE", help="zones (default DE; DE,GB,FR for all three)")
    parser.add_argument("--jobs", type=int, default=300, help="jobs per zone and seed (default 300)")
    parser.add_argument("--seeds", default="11", help="job seeds (default 11)")
    parser.add_argument("--errors", default="0.1,0.2,0.3", help="forecast error at 24 h, fractions of the mean")
    args = parser.parse_args()
    if not (SHARED / "carbon").is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    arrivals = datasets.pai_arrivals(SHARED / "jobs" / "pai_1k.csv")
    errors = [float(e) for e in args.errors.split(",") if e]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    settings = PolicySettings(runtime_margin=0.0)
    # captured[(world, policy)]: one share per zone and seed; world "none" is the own forecaster alone.
    captured: dict[tuple[str, str], list[float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for zone in [z for z in args.zones.split(",") if z]:
            times, values = datasets.read_lets_wait_awhile(SHARED / "carbon" / TRACES[zone])
            actual = {zone: PointSeries.from_starts(times, values)}
            config = ReplayConfig(step_s=900, forecaster_step_s=900 if zone == "DE" else 1800)
            worlds = {"none": Replay(carbon=actual, config=config)}
            for error in errors:
                path = Path(folder) / f"{zone}-{error:g}.csv"
                write_vintages(path, zone, times, values, error, seed=7)
                vintages = load_vintages([zone], forecasts=path)  # through the archive, as the CLI's --forecasts
                worlds[f"error {error:g}"] = Replay(carbon=actual, carbon_vintages=vintages, config=config)
            for seed in seeds:
                specs = datasets.generate_jobs(
                    start_s=START, end_s=END, count=args.jobs, zones=[zone], arrivals=arrivals, seed=seed
                )
                line = []
                for world, replay in worlds.items():
                    result = run_backtest(replay, specs, POLICIES, settings=settings)
                    for policy in POLICIES:
                        share = result.summaries[policy].oracle_captured_pct
                        captured.setdefault((world, policy), []).append(share)
                        line.append(f"{policy} {world} {share:.1f}")
                print(f"{zone} seed {seed}: " + ", ".join(line), flush=True)
    print(f"\n== 2020, {args.zones}, seeds {args.seeds}, {args.jobs} jobs each: % of the oracle's CO2 saving captured")
    print(f"   {'forecast':<11} {'gridaware':>10} {'decide-once':>12}")
    for world in ("none", *(f"error {e:g}" for e in errors)):
        shares = [statistics.mean(captured[(world, policy)]) for policy in POLICIES]
        label = "none (own)" if world == "none" else world
        print(f"   {label:<11} {shares[0]:10.1f} {shares[1]:12.1f}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
