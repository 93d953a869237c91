"""The grid-event DAG: when the grid calls an event, in-flight work pauses within seconds and comes back after.

What it shows:

* an ``Asset`` watched by ``GridEventTrigger`` in the triggerer (Airflow 3's event-driven scheduling, no
  polling DAG): every new or modified demand-response event state (OpenADR, IEEE 2030.5, the webhook relay)
  starts one run of this DAG;
* ``GridEventResponseOperator``: each run brings the fleet in line with all current events, by priority
  class (the response policy, see docs/grid_event_response.md): critical work keeps running, flexible
  Kubernetes Jobs checkpoint and wait, batch Jobs stop and DAGs tagged ``gridaware:batch`` are paused through
  Airflow's REST API. When the event completes, is cancelled or simply runs out, exactly what it paused
  resumes; the store records every pause and resume and how long each piece waited;
* ``respond=ResponseTargets(...)`` on the watcher: the triggerer applies the same response itself, before it
  fires the asset, so Jobs are suspended within about a second of the event being stored instead of after
  Airflow has started this DAG's task (whose pass then finds everything done, keeps the record and waits for
  the end). Give both the same clusters and connections.

Connections: ``kubernetes_frankfurt`` and ``kubernetes_paris`` (the clusters, as in
example_kubernetes_training), ``gridaware_airflow_api`` (Host = the api-server URL, Login / Password of a
user allowed to pause DAGs), and the DR connection(s) to poll (``openadr_vtn`` here; events pushed to the
relay need none). None is needed to parse this file. The DAG is created paused: unpause it to respond.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetWatcher, dag

from airflow_provider_gridaware.actuators import ResponseTargets
from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger

DAG_ID = "example_grid_event_response"
CLUSTERS = ["kubernetes_frankfurt", "kubernetes_paris"]
AIRFLOW_API = "gridaware_airflow_api"

GRID_EVENTS = Asset(
    "gridaware://grid-events/site",
    watchers=[
        AssetWatcher(
            name="grid_events_site",
            # The cursor is kept in the store: events stored while the triggerer is down fire when it is back.
            trigger=GridEventTrigger(
                conn_ids=["openadr_vtn"],
                cursor_name=DAG_ID,
                # Pause the work from the triggerer, before the asset fires (the fast path).
                respond=ResponseTargets(
                    kubernetes_conn_ids=CLUSTERS, airflow_conn_id=AIRFLOW_API, exclude_dag_ids=[DAG_ID]
                ),
            ),
        )
    ],
)


@dag(
    dag_id=DAG_ID,
    schedule=[GRID_EVENTS],
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example", "grid-events"],
    doc_md=__doc__,
)
def example_grid_event_response() -> None:
    GridEventResponseOperator(
        task_id="respond",
        kubernetes_conn_ids=CLUSTERS,
        airflow_conn_id=AIRFLOW_API,
        # Optional: {"simple_min_level": {"flexible": 2}, "price_thresholds": {"EUR": 300}} ...
        policy_variable=None,
    )


example_grid_event_response()
