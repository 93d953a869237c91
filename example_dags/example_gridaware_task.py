"""Run a Python task in the greenest window before its deadline: ``@task.gridaware``.

What it shows:

* ``@task.gridaware(duration=..., deadline=..., conn_id=..., zones=[...])`` on an ordinary Python
  function. The task defers at once: while it waits it is ``deferred`` in the UI and holds no worker
  slot; the triggerer re-plans on every forecast refresh (``refresh_interval``) and releases it when
  the cleanest window that still meets the deadline opens, and never later than its latest start
  (``deadline - duration * 1.25``: a run up to 25 % longer than ``duration`` still finishes in time);
* the decision reaching the function as ``grid_decision`` (declare ``grid_decision=None``): the zone,
  the planned window, the expected carbon intensity and the "start now" counterfactual;
* the energy profile the carbon ledger estimates the run's energy from (``gpu_model``, ``gpu_count``; a
  Prometheus/DCGM power query through ``power_conn_id`` measures it instead, see docs/ledger.md);
* what happens without a usable signal: a ``flexible`` task (the default) waits until its latest start
  and then runs, with the problems listed in ``grid_decision["problems"]``; ``priority_class="critical"``
  never waits.

The deadline is a ``timedelta`` counted from the start of the DAG run (a datetime or a templated ISO
string also works). Connection ``gridaware_ukci_default`` reads the GB Carbon Intensity API (point its
Host at ``gridaware simulate serve`` to try it offline).

Run it by hand (``schedule=None``): trigger ``example_gridaware_task``; the task shows as deferred
until its window opens. The ``work_seconds`` param stands in for the training itself (``make demo`` sets
it so that the run lasts half an hour of simulated time).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    dag_id="example_gridaware_task",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example"],
    doc_md=__doc__,
    params={"work_seconds": Param(0, type="number", minimum=0, description="stand-in for the training's length")},
)
def example_gridaware_task() -> None:
    @task.gridaware(
        duration=timedelta(hours=2),
        deadline=timedelta(hours=12),
        conn_id="gridaware_ukci_default",
        zones=["GB"],
        refresh_interval=timedelta(minutes=30),
        gpu_model="H100",
        gpu_count=8,
    )
    def retrain_model(grid_decision: dict[str, Any] | None = None, params: Any = None) -> dict[str, Any]:
        """The flexible work: runs once the window opens, told where and why."""
        import logging
        import time

        log = logging.getLogger("gridaware.example")
        if grid_decision is None:
            raise ValueError("no grid decision: this function runs through @task.gridaware")
        plan = grid_decision["plan"]
        window = plan["chunks"][0]
        # grid_decision["reason"] says why it runs now (after a wait: against starting when the wait began).
        log.info(
            "running in %s from %s (%s): %s", plan["zone"], window["start"], plan["status"], grid_decision["reason"]
        )
        # ... the real work (training, a backfill, a batch export) goes here; the example only waits ...
        time.sleep(float((params or {}).get("work_seconds", 0)))
        return {
            "zone": plan["zone"],
            "window_start": window["start"],
            "window_end": window["end"],
            "status": plan["status"],
            "expected": plan["expected_signals"],
            # The counterfactual: started at once when the task was released to wait (not the signal at release).
            "if_started_at_once": (grid_decision.get("counterfactual") or {}).get("signals", plan["now_signals"]),
            "problems": grid_decision["problems"],
        }

    @task
    def report(summary: dict[str, Any]) -> None:
        """Log what the wait was worth, in one line."""
        import logging

        def rounded(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        expected = rounded(summary["expected"].get("gCO2eq/kWh"))
        at_once = rounded(summary["if_started_at_once"].get("gCO2eq/kWh"))
        logging.getLogger("gridaware.example").info(
            "ran in %s from %s (%s): %s gCO2eq/kWh expected, %s if started at once",
            summary["zone"],
            summary["window_start"],
            summary["status"],
            expected,
            at_once,
        )

    report(retrain_model())


example_gridaware_task()
