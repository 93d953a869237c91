"""Per-DAG access to the Grid page's API, against a real Airflow 3.3 api-server and its own auth manager.

Airflow 3.3's SimpleAuthManager has four roles (viewer, user, op, admin), each for every DAG; the one thing
it scopes per DAG is the team: in multi-team mode (``[core] multi_team``) a DAG belongs to the team owning
its DAG bundle, and a user who is not admin may read only the DAGs of their teams (and those of bundles
without a team). The FAB auth manager, with per-DAG roles, is not installed. So this stack runs in
multi-team mode with two bundles, ``team_a_dags`` (team ``team_a``: ``gridaware_team_a_waiting``) and
``team_b_dags`` (team ``team_b``: ``gridaware_team_b_waiting``), and a viewer ``alice`` of team ``team_a``:
the plugin asks the auth manager (``get_authorized_dag_ids``, ``requires_access_dag``) and must show her
team A's waiting task and decision only, as Airflow's own REST API shows her team A's DAG only.

Team-owned triggers are run by a triggerer started for that team (``airflow triggerer --team-name``); this
stack starts only the global one, so both tasks stay deferred, which is what the page lists. Its own
stack (~30-60 s more), sharing the browser test's simulated zone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from airflow_provider_gridaware.times import SystemClock
from tests.integration.airflow_stack import (
    REPO,
    AirflowStack,
    StackError,
    marked_pids,
    poll,
    start_simulator,
    stop_processes,
)
from tests.integration.conftest import SIM_LOGIN, SIM_PASSWORD
from tests.integration.test_grid_page_browser import CONN_ID, UTC, ZONE, _iso, write_trace, zone_connection
from tests.support.http import LOOPBACK

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TEAM_DAGS = Path(__file__).parent / "team_dags"
DAG_A, DAG_B = "gridaware_team_a_waiting", "gridaware_team_b_waiting"
ALICE = "alice"


def write_reports(location: Path) -> Path:
    """Two days' reports (their summaries, as the page reads them): one of each team's DAG."""
    for day, dag_id in (("2026-12-01", DAG_A), ("2026-12-02", DAG_B)):
        folder = location / day
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.html").write_text(f"<h1>{dag_id}</h1>")
        summary = {"headline": f"{day}: {dag_id}", "tries": 1, "per_dag": [{"name": dag_id}]}
        (folder / "summary.json").write_text(json.dumps(summary))
    return location


def bundle(team: str) -> dict[str, object]:
    return {
        "name": f"{team}_dags",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(TEAM_DAGS / team)},
        "team_name": team,
    }


@pytest.fixture(scope="module")
def team_stack(integration_workdir: Path) -> Iterator[AirflowStack]:
    """A simulator serving zone UIGB, and a multi-team Airflow: two team bundles, a viewer of team A."""
    workdir = integration_workdir / "grid_page_teams"
    workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    write_trace(workdir / "trace.csv", now)
    marker = uuid.uuid4().hex
    proc, url = start_simulator(
        workdir / "simulator",
        *("--trace", f"{workdir / 'trace.csv'}:{ZONE}", "--anchor", "fixed", "--now", _iso(now)),
        *("--forecast-error", "0", "--watttime-username", SIM_LOGIN, "--watttime-password", SIM_PASSWORD),
        marker=marker,
        clock=SystemClock(),  # --now is read before the simulator listens: set to the wall clock once it does
    )
    stack = None
    try:
        connection = zone_connection(url)
        stack = AirflowStack(
            workdir / "airflow_home",
            connections={CONN_ID: connection},
            dag_sources=(),
            extra_users=[f"{ALICE}:viewer:team_a"],
            after_migrate=[("teams", "sync")],  # the teams the bundles name, before the dag-processor reads them
            extra_env={
                "PYTHONPATH": str(REPO),
                "AIRFLOW__CORE__MULTI_TEAM": "True",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle("team_a"), bundle("team_b")]),
                "AIRFLOW__GRIDAWARE__UI_ZONES": f"{CONN_ID}:{ZONE}",
                "AIRFLOW__GRIDAWARE__REPORT_LOCATION": f"file://{write_reports(workdir / 'reports')}",
            },
        )
        stack.start(timeout=240)
        yield stack
    finally:
        if stack is not None:
            stack.stop()
            if marked_pids(stack.marker):
                raise StackError(f"Airflow processes survived teardown: {marked_pids(stack.marker)}")
        stop_processes([proc], marker=marker)


@pytest.fixture(scope="module")
def waiting_runs(team_stack: AirflowStack) -> dict[str, str]:
    """Both teams' DAGs triggered, each task deferred: ``{dag_id: run_id}``."""
    runs = {}
    for dag_id in (DAG_A, DAG_B):
        team_stack.wait_for_dag(dag_id, timeout=180)
        team_stack.unpause(dag_id)
        runs[dag_id] = team_stack.trigger_dag(dag_id)

    def deferred() -> dict[str, str] | None:
        states = {}
        for dag_id, run_id in runs.items():
            states[dag_id] = {ti["task_id"]: ti["state"] for ti in team_stack.task_instances(dag_id, run_id)}
            if states[dag_id].get("retrain") in {"success", "failed", "upstream_failed"}:
                raise StackError(f"{dag_id} ended ({states}) instead of waiting:\n{team_stack.diagnostics()}")
        return runs if all(s.get("retrain") == "deferred" for s in states.values()) else None

    return poll(deferred, timeout=240, interval=1.0, what="both retrains to defer", on_timeout=team_stack.diagnostics)


def test_a_user_who_may_read_one_dag_gets_only_its_waiting_task_and_decision(team_stack, waiting_runs):
    stack = team_stack
    alice = {"Authorization": f"Bearer {stack.token(ALICE)}"}
    admin = {"Authorization": f"Bearer {stack.token()}"}

    # Airflow's own REST API scopes her to team A's DAG: the plugin must agree.
    listed = LOOPBACK.get(f"{stack.api_url}/api/v2/dags", headers=alice, timeout=30).json()
    assert [d["dag_id"] for d in listed["dags"]] == [DAG_A], listed

    everything = LOOPBACK.get(f"{stack.api_url}/gridaware/api/grid", headers=admin, timeout=60).json()
    assert {t["dag_id"] for t in everything["waiting"]} == {DAG_A, DAG_B}, everything
    hers = LOOPBACK.get(f"{stack.api_url}/gridaware/api/grid", headers=alice, timeout=60).json()
    assert [t["dag_id"] for t in hers["waiting"]] == [DAG_A], hers
    assert hers["waiting_total"] == 1
    assert hers["waiting"][0]["reason"].startswith("waiting ")
    assert [z["zone"] for z in hers["zones"]] == [ZONE]

    def decision(dag_id: str, headers: dict[str, str]) -> httpx.Response:
        run = quote(waiting_runs[dag_id], safe="")
        return LOOPBACK.get(
            f"{stack.api_url}/gridaware/api/decision/{dag_id}/{run}/retrain", headers=headers, timeout=60
        )

    own = decision(DAG_A, alice)
    assert own.status_code == 200 and own.json()["status"] == "waiting", own.text
    refused = decision(DAG_B, alice)
    assert refused.status_code == 403, refused.text
    assert decision(DAG_B, admin).status_code == 200

    flex = LOOPBACK.get(f"{stack.api_url}/gridaware/api/flex", headers=alice, timeout=60).json()
    assert DAG_B not in json.dumps(flex), flex


def test_a_user_sees_only_the_daily_reports_of_dags_they_may_read(team_stack, waiting_runs):
    """SimpleAuthManager answers "may read DAGs" (no DAG named) yes to every viewer, teams or not: the
    plugin decides by the DAGs each report names."""
    stack = team_stack
    alice = {"Authorization": f"Bearer {stack.token(ALICE)}"}
    admin = {"Authorization": f"Bearer {stack.token()}"}
    listed = LOOPBACK.get(f"{stack.api_url}/gridaware/api/reports", headers=alice, timeout=60).json()
    assert [r["day"] for r in listed["items"]] == ["2026-12-01"] and listed["hidden"] == 1, listed
    everything = LOOPBACK.get(f"{stack.api_url}/gridaware/api/reports", headers=admin, timeout=60).json()
    assert [r["day"] for r in everything["items"]] == ["2026-12-02", "2026-12-01"], everything

    def report(day: str, headers: dict[str, str]) -> httpx.Response:
        return LOOPBACK.get(f"{stack.api_url}/gridaware/reports/{day}/report.html", headers=headers, timeout=60)

    assert report("2026-12-01", alice).text == f"<h1>{DAG_A}</h1>"
    assert report("2026-12-02", alice).status_code == 403
    assert report("2026-12-02", admin).status_code == 200
    assert LOOPBACK.get(f"{stack.api_url}/gridaware/reports/2026-12-01/report.html", timeout=60).status_code == 401
