"""The grid-event response applied in the triggerer (tests/integration/test_grid_event_response.py).

The watcher of source ``webhook:respond-triggerer-it`` pauses the Jobs of both emulated clusters and the
``gridaware:batch`` DAGs itself, before its asset event fires; ``gridaware_event_respond_triggerer_it``'s task
then passes as usual (it must find everything done) and waits for the events' end.
"""

from __future__ import annotations

from _grid_event_dags import ON_AT_ONCE, grid_events
from airflow.sdk import dag

from airflow_provider_gridaware.actuators import ResponseTargets
from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator

CLUSTERS = ["k8s_respond_de", "k8s_respond_fr"]
API_CONN = "gridaware_airflow_api_it"
DAG_ID = "gridaware_event_respond_triggerer_it"

TRIGGERER_EVENTS = grid_events(
    "respond-triggerer-it",
    cursor_name="respond-triggerer-it",
    source="webhook:respond-triggerer-it",
    tail_interval=0.2,
    respond=ResponseTargets(kubernetes_conn_ids=CLUSTERS, airflow_conn_id=API_CONN, exclude_dag_ids=[DAG_ID]),
)


@dag(dag_id=DAG_ID, schedule=[TRIGGERER_EVENTS], tags=["gridaware-test"], **ON_AT_ONCE)
def gridaware_event_respond_triggerer_it() -> None:
    GridEventResponseOperator(task_id="respond", kubernetes_conn_ids=CLUSTERS, airflow_conn_id=API_CONN)


gridaware_event_respond_triggerer_it()
