"""Hold a batch until the grid is cleanest, with the deferrable ``GridWindowSensor``.

What it shows:

* ``GridWindowSensor(deferrable=True)`` in front of ordinary tasks: it waits in the triggerer (the
  task is ``deferred`` and holds no worker slot), re-plans on every forecast refresh, and succeeds
  when the cleanest window in which the work can still finish by its deadline opens, and never later
  than the latest start that keeps the deadline;
* the decision as the sensor's XCom (``wait.output``): zone, planned window, expected carbon intensity,
  the "start now" counterfactual, and any problems with the signals;
* ``end_from_trigger=True`` (the second sensor): the task is ended by the triggerer itself when the
  window opens, so no worker runs it at all after the deferral; its XCom is the same decision.

Which mode: ``deferrable=True`` is the one to use for long waits. ``mode="reschedule"`` re-plans on a
worker every ``poke_interval`` (for deployments without a triggerer); ``mode="poke"`` holds a worker
slot for the whole wait.

Connection ``gridaware_ukci_default`` reads the GB Carbon Intensity API (point its Host at
``gridaware simulate serve`` to try it offline). Run it by hand (``schedule=None``): trigger
``example_grid_window_sensor``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from airflow_provider_gridaware.sensors.grid_window import GridWindowSensor

NIGHTLY_BATCH = timedelta(hours=3)


@dag(
    dag_id="example_grid_window_sensor",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example"],
    doc_md=__doc__,
)
def example_grid_window_sensor() -> None:
    wait = GridWindowSensor(
        task_id="wait_for_green_window",
        duration=NIGHTLY_BATCH,
        deadline=timedelta(hours=18),
        conn_id="gridaware_ukci_default",
        zones=["GB"],
        deferrable=True,
        refresh_interval=timedelta(minutes=30),
    )

    @task
    def run_batch(decision: dict[str, Any]) -> str:
        """The batch itself; the decision says where, when and what was expected."""
        import logging

        plan = decision["plan"]
        logging.getLogger("gridaware.example").info(
            "window open in %s (%s): %s; expected %s, at once %s",
            plan["zone"],
            plan["status"],
            plan["reason"],
            plan["expected_signals"],
            plan["now_signals"],
        )
        # ... the real batch goes here ...
        return str(plan["chunks"][0]["start"])

    run_batch(wait.output)

    # The same wait, ended by the triggerer (no worker at all once deferred): the decision is its XCom.
    wait_no_worker = GridWindowSensor(
        task_id="wait_without_worker",
        duration=timedelta(hours=1),
        deadline=timedelta(hours=18),
        conn_id="gridaware_ukci_default",
        zones=["GB"],
        deferrable=True,
        end_from_trigger=True,
        refresh_interval=timedelta(minutes=30),
    )

    @task
    def log_decision(decision: dict[str, Any] | str) -> None:
        import json
        import logging

        if isinstance(decision, str):  # Airflow 3.3 hands on XComs set by the triggerer as JSON text
            decision = json.loads(decision)
        logging.getLogger("gridaware.example").info("released: %s", decision["plan"]["reason"])

    log_decision(wait_no_worker.output)


example_grid_window_sensor()
