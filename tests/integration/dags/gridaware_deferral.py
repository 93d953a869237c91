"""DAGs for ``tests/integration/test_deferral.py``: grid-window waits short enough to watch end to end.

Every wait reads zone ``DIP`` through ``gridaware_watttime_dip``, a WattTime connection the test adds
at run time, pointing at a simulator whose trace is flat except for one 5-minute dip a few minutes
ahead. The job is 5 minutes long with a 40-minute deadline, so the best window is the dip.
``gridaware_deferral_fallback`` reads through ``gridaware_watttime_dead`` (a port nobody listens on)
with a 3-minute deadline: it must be released at its latest start anyway.

Each task that runs on a worker returns the time it ran (``ran_at``) on the provider's clock (the shared
stack's is shifted from the wall clock: ``tests/integration/conftest.py``), so the test can check it ran in
the window and not before. Keep the ids in step with the test module.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_gridaware.sensors.grid_window import GridWindowSensor

DIP_CONN = "gridaware_watttime_dip"
DEAD_CONN = "gridaware_watttime_dead"
ZONE = "DIP"
DURATION = timedelta(minutes=5)
DEADLINE = timedelta(minutes=40)
REFRESH = timedelta(seconds=60)
COMMON: dict[str, Any] = {
    "schedule": None,
    "start_date": pendulum.datetime(2025, 1, 1, tz="UTC"),
    "catchup": False,
    "tags": ["gridaware", "test"],
    "max_active_runs": 4,
}


def _now() -> str:
    from airflow_provider_gridaware.times import current_clock

    return current_clock().now().isoformat()


@dag(dag_id="gridaware_deferral_task", **COMMON)
def gridaware_deferral_task() -> None:
    @task.gridaware(duration=DURATION, deadline=DEADLINE, conn_id=DIP_CONN, zones=[ZONE], refresh_interval=REFRESH)
    def work(grid_decision: dict[str, Any] | None = None) -> dict[str, Any]:
        ran_at = _now()
        if grid_decision is None:
            raise ValueError("the callable got no grid_decision")
        plan = grid_decision["plan"]
        return {"ran_at": ran_at, "zone": plan["zone"], "start": plan["chunks"][0]["start"], "decision": grid_decision}

    work()


@dag(dag_id="gridaware_deferral_sensor", **COMMON)
def gridaware_deferral_sensor() -> None:
    wait = GridWindowSensor(
        task_id="wait_for_window",
        duration=DURATION,
        deadline=DEADLINE,
        conn_id=DIP_CONN,
        zones=[ZONE],
        deferrable=True,
        refresh_interval=REFRESH,
    )

    @task
    def work(decision: dict[str, Any]) -> dict[str, Any]:
        return {"ran_at": _now(), "zone": decision["plan"]["zone"]}

    work(wait.output)


@dag(dag_id="gridaware_deferral_sensor_from_trigger", **COMMON)
def gridaware_deferral_sensor_from_trigger() -> None:
    wait = GridWindowSensor(
        task_id="wait_for_window",
        duration=DURATION,
        deadline=DEADLINE,
        conn_id=DIP_CONN,
        zones=[ZONE],
        deferrable=True,
        end_from_trigger=True,
        refresh_interval=REFRESH,
    )

    @task
    def work(decision: dict[str, Any] | str) -> dict[str, Any]:
        arrived_as = type(decision).__name__
        if isinstance(decision, str):
            # Airflow 3.3 stores a TaskSuccessEvent's XComs with json.dumps (TaskInstance.xcom_push), unlike a
            # worker's push: a task pulling it gets the JSON text.
            decision = json.loads(decision)
        return {"ran_at": _now(), "zone": decision["plan"]["zone"], "decision_arrived_as": arrived_as}

    work(wait.output)


@dag(dag_id="gridaware_deferral_fallback", **COMMON)
def gridaware_deferral_fallback() -> None:
    GridWindowSensor(
        task_id="wait_for_window",
        duration=timedelta(minutes=1),
        deadline=timedelta(minutes=3),
        conn_id=DEAD_CONN,
        zones=[ZONE],
        deferrable=True,
        priority_class="flexible",
        refresh_interval=REFRESH,
    )


@dag(dag_id="gridaware_deferral_bad_conn", **COMMON)
def gridaware_deferral_bad_conn() -> None:
    """A mistyped connection id: must fail at once, naming it, and leave no trace in other tasks' logs."""

    @task.gridaware(duration=DURATION, deadline=DEADLINE, conn_id="gridaware_watttime_dipp", zones=[ZONE])
    def work(grid_decision: dict[str, Any] | None = None) -> None:
        raise AssertionError("a task whose signal connection does not exist must not run")

    work()


gridaware_deferral_task()
gridaware_deferral_bad_conn()
gridaware_deferral_sensor()
gridaware_deferral_sensor_from_trigger()
gridaware_deferral_fallback()
