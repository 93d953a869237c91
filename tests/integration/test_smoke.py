"""Smoke tests against a real Airflow 3.3: the provider is registered, and a DAG using its hook runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from tests.integration.airflow_stack import AirflowStack

pytestmark = pytest.mark.integration

PACKAGE = "airflow-provider-gridaware"
CONN_TYPE = "gridaware_ukci"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_example_grid_signals_runs_and_returns_the_greenest_window(airflow_stack: AirflowStack) -> None:
    dag_id = "example_grid_signals"
    run_id = airflow_stack.trigger_dag(dag_id)
    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=120)

    tis = {ti["task_id"]: ti["state"] for ti in airflow_stack.task_instances(dag_id, run_id)}
    log = airflow_stack.task_log(dag_id, run_id, "greenest_window")
    assert state == "success", f"run {run_id} ended {state}; tasks {tis}\n--- greenest_window log ---\n{log}"
    assert tis == {"greenest_window": "success", "report": "success"}

    summary = airflow_stack.xcom(dag_id, run_id, "greenest_window")
    assert summary["zone"] == "GB"
    assert summary["points"] > 0
    assert summary["unit"] == "gCO2eq/kWh"
    assert summary["metric"] == "average"
    assert summary["issued_at"]
    start, end = _utc(summary["best_window_start"]), _utc(summary["best_window_end"])
    assert end - start == timedelta(minutes=60)
    assert _utc(summary["forecast_start"]) <= start < end <= _utc(summary["forecast_end"])
    assert summary["mean_intensity"] >= 0

    # The hook's output reached the task log, and the second task logged the answer.
    assert f"UKCI forecast for GB: {summary['points']} points in gCO2eq/kWh (average)" in log, log
    report_log = airflow_stack.task_log(dag_id, run_id, "report")
    assert f"Greenest 60 min in GB: {summary['best_window_start']}" in report_log, report_log


def test_provider_is_registered_in_cli_and_rest_api(airflow_stack: AirflowStack) -> None:
    # Each CLI call pays Airflow's ~4 s import: run the two side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        providers_call = pool.submit(airflow_stack.cli_json, "providers", "list")
        hooks_call = pool.submit(airflow_stack.cli_json, "providers", "hooks")
    providers = {p["package_name"]: p for p in providers_call.result()}
    assert PACKAGE in providers, sorted(providers)
    hooks = {h["connection_type"]: h for h in hooks_call.result()}
    assert CONN_TYPE in hooks, sorted(hooks)
    assert hooks[CONN_TYPE]["class"] == "airflow_provider_gridaware.hooks.ukci.UKCarbonIntensityHook"
    assert hooks[CONN_TYPE]["package_name"] == PACKAGE

    listed = airflow_stack.api("GET", "/api/v2/providers", params={"limit": 100})["providers"]
    assert PACKAGE in {p["package_name"] for p in listed}

    # The UI's connection form reads this endpoint: our conn-fields must arrive with their schema.
    hook_meta = {h["connection_type"]: h for h in airflow_stack.api("GET", "/ui/connections/hook_meta")}
    ukci = hook_meta.get(CONN_TYPE)
    assert ukci is not None, sorted(hook_meta)
    assert ukci["hook_name"] == "Grid: GB Carbon Intensity"
    assert "timeout" in ukci["extra_fields"], ukci
    assert ukci["extra_fields"]["timeout"]["schema"]["default"] == 30, ukci["extra_fields"]["timeout"]
    standard = ukci["standard_fields"]
    assert standard["host"]["title"] == "Base URL", standard
    assert standard["password"]["hidden"] is True, standard
