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
import statistics
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import CommandError, time_argument

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord
    from airflow_provider_gridaware.planning.flexibility import FleetWork

#: Operators whose running tries draw the fleet's power (a sensor only waits).
DISPATCHING_OPERATORS = ("@task.gridaware", "GridAwareKubernetesJobOperator", "GridAwareBatchOperator")


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
    from airflow_provider_gridaware.times import UTC

    now = args.at or datetime.now(UTC)
    if args.hours <= 0 or args.step_minutes <= 0:
        raise CommandError("--hours and --step-minutes must be positive")
    notes: list[str] = []
    work = fleet_from_file(args.fleet) if args.fleet else fleet_from_airflow(now, notes)
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


def mean_power_kw(records: Sequence[LedgerRecord]) -> float | None:
    """Median of the runs' mean power (energy over run time), or ``None`` without energy figures."""
    powers = [
        r.actual.energy_kwh / hours
        for r in records
        if r.actual.energy_kwh is not None and (hours := (r.actual.end - r.actual.start).total_seconds() / 3600) > 0
    ]
    return statistics.median(powers) if powers else None


def fleet_from_airflow(now: datetime, notes: list[str]) -> list[FleetWork]:
    """Deferred and running grid-aware work from Airflow's metadata database, powered by the ledger."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from airflow_provider_gridaware.hooks.ledger_reader import open_ledger_reader
    from airflow_provider_gridaware.planning.flexibility import FleetWork
    from airflow_provider_gridaware.plugins.sources import DeferredGridTasks

    waiting, _, problems = DeferredGridTasks().read(None)
    notes.extend(problems)
    with create_session() as session:
        running = session.execute(
            select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.run_id, TaskInstance.start_date).where(
                TaskInstance.state == TaskInstanceState.RUNNING, TaskInstance.operator.in_(DISPATCHING_OPERATORS)
            )
        ).all()
    history: dict[tuple[str, str], list[LedgerRecord]] = {}
    try:
        dag_ids = sorted({t.key.dag_id for t in waiting} | {row[0] for row in running})
        for record in open_ledger_reader().records(now - timedelta(days=30), now, dag_ids=dag_ids):
            history.setdefault((record.key.dag_id, record.key.task_id), []).append(record)
    except Exception as exc:
        notes.append(f"no power figures from the ledger ({exc}): every piece of work counts 0 kW")
    unknown: list[str] = []
    work: list[FleetWork] = []
    for task in waiting:
        name = f"{task.key.dag_id}.{task.key.task_id}"
        power = mean_power_kw(history.get((task.key.dag_id, task.key.task_id), []))
        if power is None:
            unknown.append(name)
        start = task.planned_start or task.latest_start
        work.append(
            FleetWork(
                name=f"{name} ({task.key.run_id})",
                zone=task.zone or "unknown",
                priority_class=task.priority_class,
                power_kw=power or 0.0,
                start=start,
                end=task.planned_end or start + max(task.duration, timedelta(minutes=1)),
                interruptible=task.interruptible,
                latest_start=task.latest_start,
            )
        )
    for dag_id, task_id, run_id, started in running:
        past = history.get((dag_id, task_id), [])
        power = mean_power_kw(past)
        if power is None or not past:
            unknown.append(f"{dag_id}.{task_id}")
        last = past[-1] if past else None
        took_s = statistics.median([(r.actual.end - r.actual.start).total_seconds() for r in past]) if past else 3600.0
        took = timedelta(seconds=took_s)
        start = started or now
        work.append(
            FleetWork(
                name=f"{dag_id}.{task_id} ({run_id})",
                zone=last.actual.zone if last else "unknown",
                priority_class=last.priority_class if last else "flexible",
                power_kw=power or 0.0,
                start=start,
                end=max(start + took, now + timedelta(minutes=1)),
                running=True,
            )
        )
    if unknown:
        notes.append(
            f"no power figures in the ledger for {len(unknown)} piece(s) of work: {', '.join(sorted(set(unknown)))}"
        )
    return work
