"""DAGs of the combined grid-event scenario (tests/integration/test_grid_event_scenario.py), on its own stack.

That stack runs every component on an accelerated clock (``GRIDAWARE_CLOCK``), so these DAGs are parsed
only there (the session's shared stack keeps wall-clock time and never sees them):

* ``gridaware_scenario_response``: scheduled on the events of source ``webhook:scenario``; its watcher
  applies the response in the triggerer (``respond=``) and the run's ``GridEventResponseOperator`` passes
  again (finding it done) and waits for the events' end;
* ``gridaware_scenario_batch``: a ``gridaware:batch`` DAG whose first task waits for a gate file and whose
  second writes a marker (it must not run while the DAG is paused);
* ``gridaware_scenario_tasks``: two grid-aware tasks on zone ``SCN`` (a flat replay trace, so only the
  event moves anything): ``wait_for_window`` waits for an earliest start the event covers,
  ``interruptible_work`` runs at once, stepping and asking its checkpoint between steps.

Times the tasks return are the provider clock's (what the events' intervals are read against). Keep the
ids in step with the test module (which does not import this file).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _grid_event_dags import ON_AT_ONCE, grid_events
from airflow.sdk import dag, task

from airflow_provider_gridaware.actuators import ResponseTargets
from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
from airflow_provider_gridaware.times import current_clock, format_time

RESPONSE_DAG = "gridaware_scenario_response"
CLUSTERS = ["k8s_scenario_de", "k8s_scenario_fr"]
API_CONN = "gridaware_airflow_api_scenario"
REPLAY_CONN, ZONE = "gridaware_replay_scn", "SCN"
STEPS = 40
STEP_SECONDS = 0.5  # wall seconds: the task's progress is watched by the test on the wall clock

EVENTS = grid_events(
    "scenario",
    cursor_name="scenario",
    source="webhook:scenario",
    tail_interval=0.2,
    respond=ResponseTargets(kubernetes_conn_ids=CLUSTERS, airflow_conn_id=API_CONN, exclude_dag_ids=[RESPONSE_DAG]),
)


def _now() -> str:
    return format_time(current_clock().now())


@dag(dag_id=RESPONSE_DAG, schedule=[EVENTS], tags=["gridaware-test"], **ON_AT_ONCE)
def gridaware_scenario_response() -> None:
    GridEventResponseOperator(task_id="respond", kubernetes_conn_ids=CLUSTERS, airflow_conn_id=API_CONN)


@dag(
    dag_id="gridaware_scenario_batch",
    schedule=None,
    tags=["gridaware-test", "gridaware:batch"],
    params={"gate": "", "marker": ""},
    **ON_AT_ONCE,
)
def gridaware_scenario_batch() -> None:
    @task
    def gated(**context: Any) -> None:
        gate = Path(context["params"]["gate"])
        deadline = time.monotonic() + 900
        while not gate.exists():  # a test gate: the test opens it while the DAG is paused
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.2)

    @task
    def after_gate(**context: Any) -> None:
        Path(context["params"]["marker"]).write_text(_now())

    gated() >> after_gate()


@dag(
    dag_id="gridaware_scenario_tasks",
    schedule=None,
    params={"progress": ""},
    tags=["gridaware-test"],
    **ON_AT_ONCE,
)
def gridaware_scenario_tasks() -> None:
    @task.gridaware(
        duration=timedelta(minutes=5),
        deadline=timedelta(hours=24),
        earliest_start=timedelta(minutes=40),  # simulated: 40 s of wall time at 60x
        conn_id=REPLAY_CONN,
        zones=[ZONE],
        refresh_interval=timedelta(minutes=10),
        retries=1,
    )
    def wait_for_window(grid_decision: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"ran_at": _now(), "reason": (grid_decision or {}).get("reason")}

    @task.gridaware(
        duration=timedelta(minutes=5),
        deadline=timedelta(hours=24),
        conn_id=REPLAY_CONN,
        zones=[ZONE],
        interruptible=True,
        retries=1,
        power_w=1000,  # an estimated energy: the ledger counts the pieces it ran in, not the pause
    )
    def interruptible_work(grid_checkpoint: Any = None, dag_run: Any = None) -> dict[str, Any]:
        progress = Path(dag_run.conf["progress"])
        state = grid_checkpoint.state or {"done": [], "pauses": []}
        if grid_checkpoint.resumed:
            state["resumed_at"] = [*state.get("resumed_at", []), _now()]
        while len(state["done"]) < STEPS:
            time.sleep(STEP_SECONDS)  # one step of work
            state["done"].append(len(state["done"]))
            # Whole or not at all: the test reads this file while the task writes it (a plain write_text was once
            # read empty, between its truncation and its write).
            partial = progress.with_name(f"{progress.name}.partial")
            partial.write_text(json.dumps({"done": len(state["done"]), "at": _now()}))
            partial.replace(progress)
            if grid_checkpoint.should_pause():
                state["pauses"].append({"at": _now(), "after_step": len(state["done"])})
                grid_checkpoint.save(state)
                grid_checkpoint.pause()
        return {**state, "ended_at": _now(), "pauses_seen": grid_checkpoint.pauses}

    wait_for_window()
    interruptible_work()


gridaware_scenario_response()
gridaware_scenario_batch()
gridaware_scenario_tasks()
