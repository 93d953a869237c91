"""The fleet's grid-aware work as Airflow knows it: deferred grid-window tasks and running grid-aware tasks
from the metadata database, each with its power from the ledger. What ``gridaware flex``, the Grid page and
demand-response reports count (the rules: :mod:`~airflow_provider_gridaware.planning.flexibility`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord
    from airflow_provider_gridaware.planning.flexibility import FleetWork

#: Operators whose running tries draw the fleet's power (a sensor only waits).
DISPATCHING_OPERATORS = ("@task.gridaware", "GridAwareKubernetesJobOperator", "GridAwareBatchOperator")


def mean_power_kw(records: Sequence[LedgerRecord]) -> float | None:
    """Median of the runs' mean power (energy over run time), or ``None`` without energy figures."""
    powers = [
        r.actual.energy_kwh / hours
        for r in records
        if r.actual.energy_kwh is not None and (hours := (r.actual.end - r.actual.start).total_seconds() / 3600) > 0
    ]
    return statistics.median(powers) if powers else None


def fleet_from_airflow(now: datetime, notes: list[str], dag_ids: Iterable[str] | None = None) -> list[FleetWork]:
    """Deferred and running grid-aware work from Airflow's metadata database, powered by the ledger.

    :param now: the report's time.
    :param notes: what could not be read or has no power figures is appended here.
    :param dag_ids: only these DAGs' work (``None``: all).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from airflow_provider_gridaware.hooks.ledger_reader import open_ledger_reader
    from airflow_provider_gridaware.planning.flexibility import FleetWork
    from airflow_provider_gridaware.plugins.sources import DeferredGridTasks

    wanted = None if dag_ids is None else set(dag_ids)
    waiting, _, problems = DeferredGridTasks().read(wanted)
    notes.extend(problems)
    query = select(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.run_id, TaskInstance.start_date).where(
        TaskInstance.state == TaskInstanceState.RUNNING, TaskInstance.operator.in_(DISPATCHING_OPERATORS)
    )
    if wanted is not None:
        query = query.where(TaskInstance.dag_id.in_(sorted(wanted)))
    with create_session() as session:
        running = session.execute(query).all()
    history: dict[tuple[str, str], list[LedgerRecord]] = {}
    try:
        seen = sorted({t.key.dag_id for t in waiting} | {row[0] for row in running})
        for record in open_ledger_reader().records(now - timedelta(days=30), now, dag_ids=seen):
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
