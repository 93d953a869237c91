"""The daily carbon report DAG under a real Airflow 3.3: the fixed day's ledger file, the store's actuals and
grid events; the files written, the XCom summary, the numbers the ledger says; the example DAG parses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_gridaware.hooks.store import shared_archive, shared_event_store
from airflow_provider_gridaware.ledger.file import write_ledger_file
from tests.integration.airflow_stack import AirflowStack
from tests.support.grid_events import make_event, simple_signal
from tests.support.ledger_day import REPORT_FILES, at, fixed_day_records, half_hourly_actuals

pytestmark = pytest.mark.integration


def test_the_report_dag_writes_the_day_with_the_ledgers_numbers(airflow_stack: AirflowStack, tmp_path: Path) -> None:
    # The stack's tasks share this process's store (GRIDAWARE_STORE_URL, set for the session in tests/conftest.py).
    url = os.environ["GRIDAWARE_STORE_URL"]
    shared_archive(url).record(half_hourly_actuals("GB", {h / 2: 100.0 + h for h in range(48)}, source="ukci"))
    event = make_event(event_id="report-day-peak", signals=(simple_signal(at(17), (2,)),))
    shared_event_store(url).record(event)
    ledger = write_ledger_file(tmp_path / "ledger.json", fixed_day_records())
    out = tmp_path / "reports"

    dag_id = "gridaware_carbon_report"
    conf = {"ledger_file": str(ledger), "day": "2026-12-01", "output_dir": f"{out}/{{day}}"}
    run_id = airflow_stack.trigger_dag(dag_id, conf)
    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=180)
    log = airflow_stack.task_log(dag_id, run_id, "carbon_report")
    assert state == "success", log

    folder = out / "2026-12-01"
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written == REPORT_FILES
    summary = airflow_stack.xcom(dag_id, run_id, "carbon_report")
    assert summary == {**json.loads((folder / "summary.json").read_text()), "location": f"file://{folder}"}
    # Exactly the day's tries, with the savings the ledger's records say (hand-computed in test_daily_report).
    ledger_day = [r for r in fixed_day_records() if r.actual.start.date().isoformat() == "2026-12-01"]
    assert summary["tries"] == len({r.key for r in ledger_day}) == 6
    saved = {c["intensity_kind"]: c["saved_kg"] for c in summary["carbon"]}
    assert saved == {"average": pytest.approx(1.44), "marginal": pytest.approx(0.5)}
    assert "report-day-peak" in [e["event_id"] for e in summary["grid_events"]]
    gb = next(c for c in summary["curves"] if c["zone"] == "GB")
    assert (gb["source"], gb["points"]) == ("ukci", 48)
    assert f"Carbon report 2026-12-01 written to file://{folder}: 2026-12-01: 6 tries" in log


def test_the_example_daily_report_dag_parses(airflow_stack: AirflowStack) -> None:
    dag = airflow_stack.wait_for_dag("example_daily_carbon_report")
    assert dag["dag_id"] == "example_daily_carbon_report"
    errors = [e for e in airflow_stack.import_errors() if "carbon_report" in str(e.get("filename", ""))]
    assert not errors, errors
