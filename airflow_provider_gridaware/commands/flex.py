"""``gridaware flex``: the fleet's flexibility for a grid operator or aggregator.

Planned power per zone over the next 48 hours and how much could be shed within 5, 15 and 60 minutes, by
priority class (the rules: :mod:`~airflow_provider_gridaware.planning.flexibility`). The fleet is read from
Airflow's metadata database (deferred grid-window tasks, running grid-aware tasks) with each task's power
from the ledger, or from ``--fleet FILE`` (a JSON list of work items, as a demand-response adapter or a
test gives it).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import CommandError, time_argument

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.flexibility import FleetWork


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "flex",
        help="the fleet's planned power per zone and what it could shed within 5/15/60 min",
        description="Planned power per zone over the next hours and the power that could be shed within 5, 15 "
        "and 60 minutes, by priority class, from Airflow's metadata database and the ledger, or from --fleet.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON document")
    parser.add_argument("--fleet", type=Path, help="JSON list of work items instead of reading Airflow")
    parser.add_argument("--at", type=time_argument, help="report time (ISO 8601 with offset; default now)")
    parser.add_argument("--hours", type=float, default=48.0, help="planned-power horizon (default 48)")
    parser.add_argument("--step-minutes", type=float, default=15.0, help="planned-power step (default 15)")
    parser.set_defaults(func=run_flex)


def run_flex(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.planning.flexibility import flexibility
    from airflow_provider_gridaware.times import current_clock

    now = args.at or current_clock().now()  # the waiting tasks' time line (GRIDAWARE_CLOCK in the demo)
    if args.hours <= 0 or args.step_minutes <= 0:
        raise CommandError("--hours and --step-minutes must be positive")
    notes: list[str] = []
    if args.fleet:
        work = fleet_from_file(args.fleet)
    else:
        from airflow_provider_gridaware.fleet import fleet_from_airflow

        work = fleet_from_airflow(now, notes)
    report = flexibility(work, now=now, horizon=timedelta(hours=args.hours), step=timedelta(minutes=args.step_minutes))
    report["notes"] = notes
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
        return 0
    print(f"fleet flexibility at {report['now']} ({report['work']} pieces of work)")
    for zone, figures in report["zones"].items():
        peak = max((kw for _, kw in figures["planned_kw"]), default=0.0)
        print(f"{zone}: {figures['power_now_kw']:g} kW now, planned peak {peak:g} kW in the next {args.hours:g} h")
        for cls, by_minutes in figures["shed_kw"].items():
            print(f"  {cls:9s} shed within " + ", ".join(f"{m} min: {kw:g} kW" for m, kw in by_minutes.items()))
    for note in notes:
        print(f"note: {note}")
    return 0


def fleet_from_file(path: Path) -> list[FleetWork]:
    """Work items from a JSON file (a list of ``FleetWork.from_dict`` objects)."""
    from airflow_provider_gridaware.planning.flexibility import FleetWork

    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CommandError(f"--fleet {path}: {exc}") from None
    if not isinstance(items, list):
        raise CommandError(f"--fleet {path}: expected a JSON list of work items")
    try:
        return [FleetWork.from_dict(item) for item in items]
    except ValueError as exc:
        raise CommandError(f"--fleet {path}: {exc}") from None
