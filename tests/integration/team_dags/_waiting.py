"""The per-DAG access test's DAGs: one grid-aware task per DAG that waits hours for its clean window.

Each team's bundle folder (``team_a/``, ``team_b/``) holds one file calling :func:`waiting_dag`; it reads
zone ``UIGB`` through ``gridaware_ui_watttime`` (the test's simulator: flat 300 gCO2/kWh but for a
120 gCO2/kWh stretch four hours ahead), so its first decision is to wait.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, dag, task


def waiting_dag(dag_id: str) -> DAG:
    """A DAG ``dag_id`` whose task ``retrain`` defers until the clean stretch."""

    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        tags=["gridaware", "test"],
    )
    def waiting() -> None:
        @task.gridaware(
            duration=timedelta(hours=1), deadline=timedelta(hours=14), conn_id="gridaware_ui_watttime", zones=["UIGB"]
        )
        def retrain(grid_decision: dict[str, Any] | None = None) -> str:
            return "trained"

        retrain()

    return waiting()
