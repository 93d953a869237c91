"""DAGs for ``tests/integration/test_resume_race.py``: Airflow's resume race (apache/airflow 72716), with and
without our guard.

Each mapped task defers on a :class:`GridWindowTrigger` for a critical job, which fires the moment it runs:
the worst case for the race, in which the resumed attempt is already running when the scheduler drains the
stale "success" of the deferring process and fails the task. ``..._unguarded`` defers with no resume guard
(what any trigger that can fire at once does); ``..._guarded`` with the guard every grid-aware operator of
ours sets when its task resumes on a worker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import BaseOperator, dag

from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource
from airflow_provider_gridaware.triggers.resume_guard import resume_not_before

TASKS = 12


class DeferOnAnImmediateTrigger(BaseOperator):
    """Defers on a trigger that fires at once, then resumes on a worker (``execute_complete``)."""

    def __init__(self, *, guard: bool, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = guard
        self.index = index

    def execute(self, context: Any) -> None:
        from airflow_provider_gridaware.times import current_clock

        now = current_clock().now()  # the planner's clock (the shared stack's is shifted from the wall clock)
        job = Job(
            duration=timedelta(minutes=1),
            earliest_start=now,
            deadline=now + timedelta(hours=1),
            zones=("NONE",),
            priority_class="critical",
            job_id=f"race/{self.index}",
        )
        request = GridWindowRequest(
            job=job.to_dict(),
            sources=[SignalSource(conn_id="unused", zone="NONE")],
            not_before=resume_not_before() if self.guard else None,
        )
        self.defer(trigger=GridWindowTrigger(request), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        return "resumed"


COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": pendulum.datetime(2025, 1, 1, tz="UTC"),
    "catchup": False,
    "tags": ["gridaware", "test"],
}


@dag(dag_id="gridaware_resume_race_unguarded", **COMMON)
def unguarded() -> None:
    DeferOnAnImmediateTrigger.partial(task_id="defer", guard=False).expand(index=list(range(TASKS)))


@dag(dag_id="gridaware_resume_race_guarded", **COMMON)
def guarded() -> None:
    DeferOnAnImmediateTrigger.partial(task_id="defer", guard=True).expand(index=list(range(TASKS)))


unguarded()
guarded()
