"""The Grid page's browser test: one grid-aware task that waits hours for its clean window.

It reads zone ``UIGB`` through ``gridaware_ui_watttime`` (a simulator the test starts: flat 300 gCO2/kWh
but for a 120 gCO2/kWh stretch four hours ahead), so its first decision is to wait for that stretch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="gridaware_ui_waiting",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "test"],
)
def gridaware_ui_waiting() -> None:
    @task.gridaware(
        duration=timedelta(hours=1), deadline=timedelta(hours=14), conn_id="gridaware_ui_watttime", zones=["UIGB"]
    )
    def retrain(grid_decision: dict[str, Any] | None = None) -> str:
        return "trained"

    retrain()


gridaware_ui_waiting()
