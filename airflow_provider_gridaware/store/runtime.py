"""Measured run times of successful task tries: what ``duration="auto"`` estimates a task's run time from.

One row per (dag, run, task, map index, try), written by the task's own end path when it succeeds (the
decorator around the callable, the dispatch operators from their Job's or AWS job's own times), so the
run time is the work's, never the grid-window wait that Airflow's task duration includes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from airflow_provider_gridaware.store.engine import WRITE, dialect_insert
from airflow_provider_gridaware.store.migrate import OpenedStore
from airflow_provider_gridaware.store.schema import task_runtime
from airflow_provider_gridaware.times import parse_time

_KEY = ("dag_id", "task_id", "run_id", "map_index", "try_number")


@dataclass(frozen=True)
class TaskRun:
    """One successful try of a task and how long its work ran.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param run_id: the DAG run.
    :param map_index: the map index (-1 when not mapped).
    :param try_number: the try.
    :param started_at: when the work first ran (UTC).
    :param ended_at: when it finished (UTC).
    :param run_seconds: the work's own run time; for work paused and resumed, the sum of its chunks.
    :param chunks: how many pieces it ran in.
    :param kind: what ran (``python``, ``kubernetes_job``, ``batch_job``).
    :param zone: the grid zone it ran in, if known.
    """

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    started_at: datetime
    ended_at: datetime
    run_seconds: float
    chunks: int = 1
    kind: str = "python"
    zone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", parse_time(self.started_at, what="started_at"))
        object.__setattr__(self, "ended_at", parse_time(self.ended_at, what="ended_at"))
        if not self.run_seconds >= 0:  # also refuses NaN
            raise ValueError(f"run_seconds must be >= 0, got {self.run_seconds}")
        if self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")

    @property
    def task(self) -> str:
        """``dag_id/task_id``: how errors and logs name the task."""
        return f"{self.dag_id}/{self.task_id}"


class TaskRuntimeHistory(OpenedStore):
    """Records successful tries' run times and reads a task's most recent ones.

    Opening applies the store's migrations (idempotent, safe with concurrent openers). Thread-safe.

    :param url: SQLAlchemy URL of the store; default ``$GRIDAWARE_STORE_URL`` or
        ``sqlite:///$AIRFLOW_HOME/gridaware.db``.
    :param clock: current UTC time (the ``recorded_at`` column).
    """

    def __init__(self, url: str | None = None, *, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(url, clock)

    def record(self, run: TaskRun) -> None:
        """Store a successful try's run time; the same try recorded again overwrites its row.

        :param run: the try.
        """
        values = {
            "dag_id": run.dag_id,
            "task_id": run.task_id,
            "run_id": run.run_id,
            "map_index": run.map_index,
            "try_number": run.try_number,
            "started_at": run.started_at,
            "ended_at": run.ended_at,
            "run_seconds": float(run.run_seconds),
            "chunks": run.chunks,
            "kind": run.kind,
            "zone": run.zone,
            "recorded_at": self._clock(),
        }
        with self._engine.connect().execution_options(**WRITE) as connection, connection.begin():
            statement = dialect_insert(connection, task_runtime).values(values)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=list(_KEY),
                    set_={name: statement.excluded[name] for name in values if name not in _KEY},
                )
            )

    def recent(self, dag_id: str, task_id: str, *, limit: int) -> list[TaskRun]:
        """The task's most recent successful tries (all map indexes), newest first.

        :param dag_id: the DAG.
        :param task_id: the task.
        :param limit: at most this many.
        """
        query = (
            select(task_runtime)
            .where(task_runtime.c.dag_id == dag_id, task_runtime.c.task_id == task_id)
            .order_by(task_runtime.c.ended_at.desc(), task_runtime.c.run_id.desc(), task_runtime.c.map_index)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            TaskRun(
                dag_id=row.dag_id,
                task_id=row.task_id,
                run_id=row.run_id,
                map_index=row.map_index,
                try_number=row.try_number,
                started_at=row.started_at,
                ended_at=row.ended_at,
                run_seconds=float(row.run_seconds),
                chunks=row.chunks,
                kind=row.kind,
                zone=row.zone,
            )
            for row in rows
        ]
