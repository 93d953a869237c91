"""The grid-event response on a real Airflow (tests/integration/test_grid_event_response.py).

``gridaware_event_response_it`` is scheduled on the events of source ``webhook:respond-it`` and responds in
two emulated clusters and through the REST API; ``gridaware_respond_batch_it`` is a batch-class DAG whose
first task waits for a gate file and whose second task writes a marker (it must not run while paused).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger

RESPONSE_EVENTS = Asset(
    "gridaware://grid-events/respond-it",
    watchers=[
        AssetWatcher(
            name="grid_events_respond_it",
            trigger=GridEventTrigger(
                cursor_name="respond-it", from_seq=0, sources=["webhook:respond-it"], tail_interval=0.2
            ),
        )
    ],
)


@dag(
    dag_id="gridaware_event_response_it",
    schedule=[RESPONSE_EVENTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["gridaware-test"],
)
def gridaware_event_response_it() -> None:
    GridEventResponseOperator(
        task_id="respond",
        kubernetes_conn_ids=["k8s_respond_de", "k8s_respond_fr"],
        airflow_conn_id="gridaware_airflow_api_it",
    )


@dag(
    dag_id="gridaware_respond_batch_it",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["gridaware-test", "gridaware:batch"],
    params={"gate": "", "marker": ""},
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
