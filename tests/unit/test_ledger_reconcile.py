"""Reconciliation: the tries Airflow's REST API says ran, against the keys the ledger holds.

The API is a double on httpx's mock transport (the real api-server's answers are checked in
tests/integration/test_grid_event_scenario.py); the ledger is a real SQLite store.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_gridaware.cli import main
from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook
from airflow_provider_gridaware.ledger.reconcile import ExecutedTry, executed_try, reconcile
from airflow_provider_gridaware.ledger.records import TryKey
from airflow_provider_gridaware.store.ledger import LedgerStore
from tests.unit.test_ledger_store import record

UTC = timezone.utc
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def ti(task_id: str, try_number: int, state: str, operator: str = "_GridAwareDecoratedOperator", **more: Any) -> dict:
    return {
        "dag_id": "train",
        "dag_run_id": "r1",
        "task_id": task_id,
        "map_index": -1,
        "try_number": try_number,
        "state": state,
        "operator": operator,
        "operator_name": "@task.gridaware" if operator == "_GridAwareDecoratedOperator" else operator,
        **more,
    }


# The API's view: fit (2 tries: a failure, then a success), export (a plain Python task: not ours),
# score (succeeded, its record lost), sweep (mapped, index 3), and a sensor that failed before its work ran.
TASK_INSTANCES = [
    ti("fit", 2, "success"),
    ti("export", 1, "success", operator="PythonOperator"),
    ti("score", 1, "success"),
    ti("sweep", 1, "success", map_index=3),
    ti("guard", 1, "failed", operator="GridWindowSensor"),
]
TRIES = {"fit": [ti("fit", 1, "failed"), ti("fit", 2, "success")]}


def fake_api(seen: list[dict]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        assert request.headers["Authorization"] == "Bearer t"
        if request.url.path == "/api/v2/dags/~/dagRuns/~/taskInstances/list":
            body = json.loads(request.content)
            seen.append(body)
            page = TASK_INSTANCES[body["page_offset"] : body["page_offset"] + 2]  # pages of 2: paging is followed
            return httpx.Response(200, json={"task_instances": page, "total_entries": len(TASK_INSTANCES)})
        task = request.url.path.split("/taskInstances/")[1].split("/")[0]
        return httpx.Response(200, json={"task_instances": TRIES[task], "total_entries": len(TRIES[task])})

    return httpx.MockTransport(handle)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> tuple[AirflowApiHook, list[dict]]:
    monkeypatch.setenv("AIRFLOW_CONN_GRIDAWARE_AIRFLOW_API", "http://admin:pw@airflow.test:8080")
    seen: list[dict] = []
    transport = fake_api(seen)
    real_client = httpx.Client

    def client(*args: Any, **kwargs: Any) -> httpx.Client:
        return real_client(*args, transport=transport, **kwargs)

    monkeypatch.setattr(httpx, "Client", client)
    return AirflowApiHook(), seen


def key(task_id: str, try_number: int = 1, map_index: int = -1) -> TryKey:
    return TryKey("train", "r1", task_id, map_index, try_number)


def test_the_tries_of_our_tasks_are_listed_with_their_earlier_tries(hook):
    api, seen = hook
    tries = api.ended_tries(T0, T0 + timedelta(days=1), dag_ids=["train"])
    assert [(t.key.task_id, t.key.try_number, t.key.map_index, t.state) for t in tries] == [
        ("fit", 1, -1, "failed"),
        ("fit", 2, -1, "success"),
        ("guard", 1, -1, "failed"),
        ("score", 1, -1, "success"),
        ("sweep", 1, 3, "success"),
    ]
    assert seen[0]["end_date_gte"] == "2026-06-01T00:00:00Z" and seen[0]["dag_ids"] == ["train"]
    assert [body["page_offset"] for body in seen] == [0, 2, 4]


def test_a_succeeded_try_without_a_record_is_missing_a_failed_one_is_listed_apart():
    tries = [
        ExecutedTry(key("fit", 1), "failed", "@task.gridaware"),
        ExecutedTry(key("fit", 2), "success", "@task.gridaware"),
        ExecutedTry(key("score"), "success", "@task.gridaware"),
    ]
    result = reconcile(tries, {key("fit", 2)})
    assert [t.key for t in result.missing] == [key("score")]
    assert [t.key for t in result.failed_unrecorded] == [key("fit", 1)]
    assert not result.complete
    assert result.describe().startswith("3 tries of grid-aware tasks checked: 1 succeeded without one; 1 failed")
    assert reconcile(tries, {t.key for t in tries}).complete
    assert reconcile([], set()).describe().startswith("no try")


def test_only_ended_tries_of_ledger_writing_tasks_count():
    assert executed_try(ti("x", 1, "running")) is None
    assert executed_try(ti("x", 1, "success", operator="BashOperator")) is None
    assert executed_try(ti("x", 1, "success", operator="MyTrainingOperator")) is None
    custom = executed_try(ti("x", 1, "success", operator="MyTrainingOperator"), {"MyTrainingOperator"})
    assert custom is not None and custom.operator == "MyTrainingOperator"


def test_the_cli_says_which_tries_have_no_record_and_exits_1(hook, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerStore(url) as store:
        for held in (key("fit", 2), key("sweep", map_index=3)):
            store.write(record(held, recorded_at=T0))
    argv = ["ledger", "--since", "2026-06-01", "--until", "2026-06-02", "--store", url, "--reconcile"]
    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert "no record: train/score try 1 (r1), @task.gridaware" in out
    assert "failed, no record: train/fit try 1 (r1), @task.gridaware" in out
    assert "failed, no record: train/guard try 1 (r1), GridWindowSensor" in out
    assert out[-1].startswith("5 tries of grid-aware tasks checked: 1 succeeded without one")

    with LedgerStore(url) as store:
        store.write(record(key("score"), recorded_at=T0))
    assert main(argv) == 0
    assert "every succeeded try has its record" in capsys.readouterr().out


def test_the_daily_report_names_the_tries_without_a_record(hook, tmp_path, monkeypatch):
    """With ``airflow_conn_id`` the report operator reconciles the day and says so in its data-quality notes."""
    from airflow_provider_gridaware.hooks.store import close_shared_archives
    from airflow_provider_gridaware.operators.carbon_report import DailyCarbonReportOperator

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    close_shared_archives()
    with LedgerStore(url) as store:
        for held in (key("fit", 2), key("sweep", map_index=3)):
            store.write(record(held, recorded_at=T0))
    operator = DailyCarbonReportOperator(
        task_id="carbon_report",
        report_date="2026-06-01",
        output_dir=str(tmp_path / "reports" / "{day}"),
        airflow_conn_id="gridaware_airflow_api",
    )
    try:
        summary = operator.execute({})  # type: ignore[arg-type]
    finally:
        close_shared_archives()
    notes = summary["data_quality"]
    assert "Reconciled with Airflow: 5 tries of grid-aware tasks checked: 1 succeeded without one; 2 failed" in (
        " ".join(notes)
    )
    assert "No ledger record for train/score try 1 (r1)." in notes
