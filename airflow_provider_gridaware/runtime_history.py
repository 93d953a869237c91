"""A task's run-time history, seen from the task: record each successful try, estimate ``duration="auto"``.

Why our own record and not Airflow's task-instance history: on a worker, Airflow 3.3's Task SDK offers
``RuntimeTaskInstance.get_previous_ti`` (one task instance per call, walked back by logical date) with a
``duration`` that is ``end_date - start_date``, and a task resuming from a deferral keeps its first
``start_date``: for a grid-aware task that duration includes the grid-window wait (and a dispatch
operator's wait for its Job), which is exactly what the planner must not place. So the end paths that
know the work's own run time record it (``@task.gridaware`` around the callable; the Kubernetes Job's and
AWS Batch job's own start and end times, summed over chunks when paused) into the store's
``gridaware_task_runtime`` table, keyed by dag/run/task/map index/try like the ledger.

Recording never fails a task (the work is done; a store problem is logged). Estimating does fail the task
when it cannot read the history, naming the task: a guessed duration could break the deadline promise.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.runtime import RuntimeEstimate

log = logging.getLogger(__name__)


def _task_instance(context: Mapping[str, Any]) -> Any:
    return context.get("ti") or context.get("task_instance")


def record_task_run(
    context: Mapping[str, Any],
    *,
    started_at: datetime,
    ended_at: datetime,
    wall_seconds: float,
    kind: str,
    chunks: int = 1,
    zone: str | None = None,
    logger: Any = None,
) -> None:
    """Record the run time of the try now succeeding; errors are logged, never raised.

    :param context: the task context (its task instance names the try).
    :param started_at: when the work first ran.
    :param ended_at: when it finished.
    :param wall_seconds: the work's own run time in wall-clock seconds (the sum of its chunks if it was paused);
        stored in the planner's time (the same under the system clock; a simulated clock's seconds in tests).
    :param kind: what ran (``python``, ``kubernetes_job``, ``batch_job``).
    :param chunks: how many pieces it ran in.
    :param zone: the grid zone it ran in.
    :param logger: where to log (the operator's log).
    """
    logger = logger or log
    ti = _task_instance(context)
    if ti is None:
        logger.debug("no task instance in the context: run time not recorded")
        return
    try:
        from airflow_provider_gridaware.hooks.store import GridStoreHook
        from airflow_provider_gridaware.store.runtime import TaskRun
        from airflow_provider_gridaware.times import current_clock

        run = TaskRun(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=_int(getattr(ti, "map_index", -1), -1),
            try_number=_int(getattr(ti, "try_number", 1), 1),
            started_at=started_at,
            ended_at=ended_at,
            run_seconds=max(0.0, float(wall_seconds)) / current_clock().wall_seconds(1.0),
            chunks=max(1, chunks),
            kind=kind,
            zone=zone,
        )
        GridStoreHook().get_runtime_history().record(run)
    except Exception as exc:  # the work succeeded: a store problem costs the next estimate, not this task
        logger.warning(
            "could not record the run time of %s/%s in the gridaware store (%s: %s); duration='auto' will not "
            "see this run",
            ti.dag_id,
            ti.task_id,
            type(exc).__name__,
            exc,
        )
        return
    logger.info("recorded run time %.1f s (%d chunk(s)) for duration='auto'", run.run_seconds, run.chunks)


def estimate_task_duration(context: Mapping[str, Any], *, runs: int, min_runs: int) -> RuntimeEstimate:
    """The run time and margin of this task from its ``runs`` most recent successful tries (all map indexes).

    :param context: the task context.
    :param runs: how many recent runs to use.
    :param min_runs: fewer recorded runs than this is an error naming the task and the count.
    :raises NotEnoughRunHistoryError: too few runs recorded.
    :raises RuntimeError: the store could not be read.
    """
    from airflow_provider_gridaware.planning.runtime import estimate_runtime

    ti = _task_instance(context)
    if ti is None:
        raise RuntimeError('duration="auto" needs a task instance to look up its past runs (none in the context)')
    task = f"{ti.dag_id}/{ti.task_id}"
    try:
        from airflow_provider_gridaware.hooks.store import GridStoreHook

        recent = GridStoreHook().get_runtime_history().recent(ti.dag_id, ti.task_id, limit=runs)
    except Exception as exc:
        raise RuntimeError(
            f'duration="auto" for {task}: could not read its past run times from the gridaware store '
            f"({type(exc).__name__}: {exc}); give an explicit duration or fix the store"
        ) from exc
    return estimate_runtime([r.run_seconds for r in recent], task=task, min_runs=min_runs)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
