"""Team B's grid-aware Airflow DAG (bundle ``team_b_dags``, owned by team ``team_b``).

The words "airflow" and "dag" in this file let the dag-processor's safe mode parse it.
"""

from __future__ import annotations

from tests.integration.team_dags._waiting import waiting_dag

waiting_dag("gridaware_team_b_waiting")
