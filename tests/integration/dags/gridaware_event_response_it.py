"""The grid-event response on a real Airflow (tests/integration/test_grid_event_response.py).

``gridaware_event_response_it`` is scheduled on the events of source ``webhook:respond-it`` and responds in
two emulated clusters and through the REST API; ``gridaware_respond_batch_it`` is a batch-class DAG whose
first task waits for a gate file and whose second task writes a marker (it must not run while paused).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _grid_event_dags import ON_AT_ONCE, grid_events
from airflow.sdk import dag, task

from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator

RESPONSE_EVENTS = grid_events("respond-it", cursor_name="respond-it", source="webhook:respond-it", tail_interval=0.2)


@dag(dag_id="gridaware_event_response_it", schedule=[RESPONSE_EVENTS], tags=["gridaware-test"], **ON_AT_ONCE)
def gridaware_event_response_it() -> None:
    GridEventResponseOperator(
        task_id="respond",
        kubernetes_conn_ids=["k8s_respond_de", "k8s_respond_fr"],
        airflow_conn_id="gridaware_airflow_api_it",
    )


@dag(
    dag_id="gridaware_respond_batch_it",
    schedule=None,
    tags=["gridaware-test", "gridaware:batch"],
    params={"gate": "", "marker": ""},
    **ON_AT_ONCE,
)
def gridaware_respond_batch_it() -> None:
    @task
    def gated(**context: Any) -> None:
        gate = Path(context["params"]["gate"])
        deadline = time.monotonic() + 600
        while not gate.exists():  # a test gate: the test opens it while the DAG is paused
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.2)

    @task
    def after_gate(**context: Any) -> None:
        Path(context["params"]["marker"]).write_text(str(time.time()))

    gated() >> after_gate()


gridaware_event_response_it()
gridaware_respond_batch_it()
