"""A batch-class DAG for the grid-event response to pause (tests/integration/test_grid_event_response.py).

``gridaware_respond_batch_it`` is tagged ``gridaware:batch`` and on from its first parse; the test never runs
it, it checks the response pauses and unpauses it (a paused DAG starting no task is checked by
test_grid_event_scenario.py).
"""

from __future__ import annotations

from _grid_event_dags import ON_AT_ONCE
from airflow.sdk import dag, task


@dag(dag_id="gridaware_respond_batch_it", schedule=None, tags=["gridaware-test", "gridaware:batch"], **ON_AT_ONCE)
def gridaware_respond_batch_it() -> None:
    @task
    def work() -> None:
        """Stands in for batch work: only the DAG's paused flag matters to the test."""

    work()


gridaware_respond_batch_it()
