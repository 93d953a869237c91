"""Team A's grid-aware Airflow DAG (bundle ``team_a_dags``, owned by team ``team_a``).

The words "airflow" and "dag" in this file let the dag-processor's safe mode parse it.
"""

from __future__ import annotations

from tests.integration.team_dags._waiting import waiting_dag

waiting_dag("gridaware_team_a_waiting")
