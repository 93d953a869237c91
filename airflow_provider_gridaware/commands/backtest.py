"""``gridaware backtest``: replay a jobs file against actual signals with a policy and print what it saved.

Example::

    gridaware backtest --actual de.csv --jobs jobs.csv --policy gridaware --out decisions.csv
    gridaware backtest --actual de.csv --actual fr.csv --jobs jobs.csv --policy gridaware --policy decide-once \\
        --out 'decisions-{policy}.csv' --runtime-error 0.25

File formats are in ``docs/planner.md`` (DESIGN.md section 6).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError

POLICIES = ("gridaware", "run-now", "oracle", "decide-once", "threshold")
FORECASTERS = ("seasonal", "repeat-day", "none")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay jobs against actual grid signals with a scheduling policy",
        description="Replay a jobs file against actual signals (and forecast vintages if given) with a policy, "
        "write its decisions and print CO2/cost saved vs run-now, the share of the oracle's saving captured, "
        "deadline misses and added delay. Policies only see what they could have known at each decision time.",
    )
    parser.add_argument(
        "--actual",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="actual signal CSV time,zone,value (repeatable)",
    )
    parser.add_argument(
        "--forecasts", type=Path, metavar="FILE", help="forecast vintages CSV issued_at,time,zone,value"
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="replay the vintages archived in this store (SQLAlchemy URL, e.g. sqlite:///gridaware.db);"
        " with --forecasts the file is recorded into it first",
    )
    parser.add_argument(
        "--forecast-source",
        metavar="NAME",
        help="the source whose vintages to replay when the store holds several (e.g. ukci)",
    )
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="day-ahead price CSV time,zone,value (repeatable): enables cost figures",
    )
    parser.add_argument(
        "--jobs",
        required=True,
        type=Path,
        metavar="FILE",
        help="jobs CSV job_id,submit_time,duration_minutes,deadline,interruptible,zones",
    )
    parser.add_argument(
        "--policy", action="append", choices=POLICIES, help="policy to replay (repeatable; default gridaware)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="decisions CSV; with several policies put {policy} in the name"
    )
    parser.add_argument(
        "--runtime-error",
        type=float,
        default=0.0,
        metavar="E",
        help="actual run times are estimate x (1 + U(-E, E)) (default 0)",
    )
    parser.add_argument(
        "--runtime-margin",
        type=float,
        metavar="M",
        help="our runtime margin (default: the runtime error, i.e. jobs declare how good their estimates are)",
    )
    parser.add_argument("--min-gain", type=float, help="minimum relative gain for waiting (default 0.005)")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="use forecast vintages as published (default: corrected by their recent bias and blended with "
        "the own forecaster, learnt only from what was known at each decision)",
    )
    parser.add_argument(
        "--forecaster", choices=FORECASTERS, default="seasonal", help="own forecaster beyond provider forecasts"
    )
    parser.add_argument("--step-minutes", type=int, help="planning grid step (default: the data's, at most 15)")
    parser.add_argument("--replan-minutes", type=int, default=30, help="longest sleep between re-plans (default 30)")
    parser.add_argument("--carbon-weight", type=float, default=1.0, help="objective weight of carbon (default 1)")
    parser.add_argument("--price-weight", type=float, default=0.0, help="objective weight of price (default 0)")
    parser.add_argument("--min-chunk-minutes", type=int, default=0, help="interruptible jobs: minimum run length")
    parser.add_argument(
        "--resume-cost-minutes", type=int, default=0, help="interruptible jobs: extra run time per resume"
    )
    parser.add_argument(
        "--threshold-percentile", type=float, default=30.0, help="threshold policy: percentile of the trailing week"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the run-time draws")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.planning.backtest import (
        BacktestInputError,
        format_summaries,
        load_vintages,
        read_actuals,
        read_jobs,
        run_backtest,
        write_decisions,
    )
    from airflow_provider_gridaware.planning.job import DEFAULT_MIN_GAIN
    from airflow_provider_gridaware.planning.objective import Objective
    from airflow_provider_gridaware.planning.policies import PolicySettings
    from airflow_provider_gridaware.planning.replay import Replay, ReplayConfig

    policies = list(dict.fromkeys(args.policy or ["gridaware"]))
    if args.out and len(policies) > 1 and "{policy}" not in str(args.out):
        raise CommandError("with several --policy, put {policy} in --out (e.g. decisions-{policy}.csv)", EXIT_USAGE)
    if not 0 <= args.runtime_error < 1:
        raise CommandError("--runtime-error must be in [0, 1)", EXIT_USAGE)
    margin = args.runtime_error if args.runtime_margin is None else args.runtime_margin
    if margin < 0 or (args.min_gain is not None and args.min_gain < 0):
        raise CommandError("--runtime-margin and --min-gain must be >= 0", EXIT_USAGE)
    for path in [*args.actual, *args.price, args.jobs, *([args.forecasts] if args.forecasts else [])]:
        if not path.is_file():
            raise CommandError(f"{path}: no such file", EXIT_USAGE)
    try:
        carbon = read_actuals(args.actual)
        price = read_actuals(args.price) if args.price else {}
        vintages = (
            load_vintages(carbon, forecasts=args.forecasts, store_url=args.store, source=args.forecast_source)
            if args.forecasts or args.store
            else {}
        )
        specs = read_jobs(args.jobs)
        objective = Objective(args.carbon_weight, args.price_weight)
    except (BacktestInputError, ValueError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    step_s, forecaster_step_s = _steps(carbon, price, args.step_minutes)
    horizon_s = max((s.deadline_s - s.submit_s for s in specs), default=86_400) + 4 * 3600
    config = ReplayConfig(
        step_s=step_s,
        forecaster_step_s=forecaster_step_s,
        forecaster=args.forecaster,
        horizon_s=horizon_s,
        calibrate=not args.no_calibration,
    )
    try:
        replay = Replay(carbon=carbon, price=price, carbon_vintages=vintages, objective=objective, config=config)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    settings = PolicySettings(
        runtime_margin=margin,
        min_gain=DEFAULT_MIN_GAIN if args.min_gain is None else args.min_gain,
        replan_s=args.replan_minutes * 60,
        min_chunk_s=args.min_chunk_minutes * 60,
        resume_cost_s=args.resume_cost_minutes * 60,
        threshold_percentile=args.threshold_percentile,
    )
    result = run_backtest(replay, specs, policies, settings=settings, runtime_error=args.runtime_error, seed=args.seed)
    if not result.jobs:
        raise CommandError(f"none of the {len(specs)} jobs lies within the actual data")
    if args.out:
        for name in policies:
            target = Path(str(args.out).replace("{policy}", name))
            with target.open("w", newline="") as out:
                write_decisions(result.executions[name], out)
    if args.json:
        json.dump({name: _clean(s.as_dict()) for name, s in result.summaries.items()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    zones = sorted({z for j in result.jobs for z in j.zones})
    provider = "none" if not vintages else "as published" if args.no_calibration else "calibrated"
    title = (
        f"{len(result.jobs)} jobs in {', '.join(zones)} ({len(result.skipped)} outside the data skipped); "
        f"runtime error +/-{args.runtime_error:.0%}, our margin {margin:.0%}, forecaster {args.forecaster}, "
        f"provider forecasts {provider}, "
        f"step {step_s // 60} min"
    )
    print(format_summaries(result.summaries, title=title))
    print(
        "saved = vs run-now; of oracle = share of the perfect-knowledge saving; time/region = where the CO2 saving came from"
    )
    return 0


def _steps(carbon: dict[str, Any], price: dict[str, Any], step_minutes: int | None) -> tuple[int, int]:
    """Planning and forecaster steps from the data's spacing (forecaster: 15, 30 or 60 min)."""
    import numpy as np

    spacings = [int(np.median(np.diff(s.starts))) for s in [*carbon.values(), *price.values()] if s.starts.size > 1]
    data_step = min(spacings) if spacings else 900
    forecaster_step = next((c for c in (900, 1800, 3600) if c >= data_step), 3600)
    if step_minutes is not None:
        step = step_minutes * 60
        if step <= 0 or forecaster_step % step:
            raise CommandError(
                f"--step-minutes must divide the forecaster step ({forecaster_step // 60} min)", EXIT_USAGE
            )
        return step, forecaster_step
    step = next(c for c in (900, 300, 60) if forecaster_step % c == 0 and c <= max(data_step, 300))
    return step, forecaster_step


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
