"""The daily carbon report operator under a real Airflow, reading a ledger file given in the run's conf.

``ledger_file``, ``day`` and ``output_dir`` come from the trigger's conf (tests/integration/test_carbon_report.py).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gridaware.operators.carbon_report import DailyCarbonReportOperator


@dag(
    dag_id="gridaware_carbon_report",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "ledger_file": Param("", type="string"),
        "day": Param("", type="string"),
        "output_dir": Param("", type="string"),
    },
    tags=["gridaware", "test"],
)
def gridaware_carbon_report() -> None:
    DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger_file="{{ params.ledger_file }}",
        report_date="{{ params.day }}",
        output_dir="{{ params.output_dir }}",
    )


gridaware_carbon_report()
