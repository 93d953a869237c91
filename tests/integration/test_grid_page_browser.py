"""The Grid page in a real browser against a real Airflow 3.3 api-server.

Debian's headless ``chromium`` (``/usr/bin/chromium``), driven by Playwright, signs in to Airflow (simple
auth manager), opens the Grid page from Airflow's navigation (the plugin's external view, an iframe) and
finds: the configured zone with its current signal and forecast, the waiting task with the reason its
own first decision gave, an active grid event, and the 30-day savings per DAG. Screenshots of the page in
the light and the dark theme and of the task's decision are saved in ``test-artifacts/grid_page/`` of the
checkout (or ``$GRIDAWARE_SCREENSHOTS``; the path is printed).

This module runs its own stack (``ui_stack``): the api-server needs the test ledger reader
(``[gridaware] ledger_reader``), the zone list and the repository on its ``PYTHONPATH``, which the shared
stack does not have. It costs one more stack start (~30-60 s).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_gridaware.links.grid_decision import grid_decision_url
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
from tests.integration.conftest import FAST_HTTP, SIM_LOGIN, SIM_PASSWORD
from tests.support.http import LOOPBACK
from tests.support.ledger import SAMPLE_DAG

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

UTC = timezone.utc
CHROMIUM = Path("/usr/bin/chromium")
CONN_ID, ZONE = "gridaware_ui_watttime", "UIGB"
STEP = timedelta(minutes=5)
FLAT, CLEAN = 300.0, 120.0
CLEAN_FROM, CLEAN_HOURS = timedelta(hours=4), 4
UI_DAGS = Path(__file__).parent / "ui_dags"
#: The sample ledger's runs: 2 of 3 in cleaner windows (67 %), mean 176.7 gCO2/kWh.
SLOS = [
    {"name": "retrain-clean-share", "metric": "clean_share", "target": 0.8, "dag_ids": [SAMPLE_DAG]},
    {"name": "retrain-intensity", "metric": "mean_intensity", "target": 200, "tags": ["gridaware"]},
]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_trace(path: Path, now: datetime) -> datetime:
    """Flat :data:`FLAT` but for :data:`CLEAN` over ``CLEAN_HOURS`` from ``now + CLEAN_FROM``; returns its start."""
    origin = now.replace(minute=0, second=0, microsecond=0)
    clean_start = origin + CLEAN_FROM
    lines = ["time,zone,value"]
    for i in range(-24 * 12, 48 * 12):
        start = origin + i * STEP
        clean = clean_start <= start < clean_start + timedelta(hours=CLEAN_HOURS)
        lines.append(f"{_iso(start)},{ZONE},{CLEAN if clean else FLAT:g}")
    path.write_text("\n".join(lines) + "\n")
    return clean_start


def zone_connection(simulator_url: str) -> dict[str, Any]:
    """The WattTime connection to the simulator that the Grid page reads zone ``ZONE`` through."""
    return {
        "conn_type": "gridaware_watttime",
        "host": f"{simulator_url}/watttime",
        "login": SIM_LOGIN,
        "password": SIM_PASSWORD,
        "extra": FAST_HTTP,
    }


@pytest.fixture(scope="module")
def ui_stack(integration_workdir: Path) -> Iterator[tuple[AirflowStack, datetime]]:
    """A simulator serving zone UIGB, and an Airflow whose Grid page reads it, the test ledger and the store."""
    workdir = integration_workdir / "grid_page"
    workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    clean_start = write_trace(workdir / "trace.csv", now)
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
            dag_sources=(UI_DAGS,),
            extra_env={
                "PYTHONPATH": str(REPO),
                "AIRFLOW__GRIDAWARE__LEDGER_READER": "tests.support.ledger:sample_ledger",
                "AIRFLOW__GRIDAWARE__UI_ZONES": f"{CONN_ID}:{ZONE}",
                "AIRFLOW__GRIDAWARE__SLOS": json.dumps(SLOS),
                "AIRFLOW__GRIDAWARE__REPORT_LOCATION": f"file://{write_report(workdir / 'reports')}",
            },
        )
        stack.start(timeout=240)
        yield stack, clean_start
    finally:
        if stack is not None:
            stack.stop()
            if marked_pids(stack.marker):
                raise StackError(f"Airflow processes survived teardown: {marked_pids(stack.marker)}")
        stop_processes([proc], marker=marker)


@pytest.fixture(scope="module")
def waiting_run(ui_stack: tuple[AirflowStack, datetime]) -> str:
    """The test DAG triggered and its task deferred (waiting for the clean stretch)."""
    stack, _ = ui_stack
    stack.wait_for_dag(SAMPLE_DAG, timeout=120)
    stack.unpause(SAMPLE_DAG)
    run_id = stack.trigger_dag(SAMPLE_DAG)

    def deferred() -> str | None:
        states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(SAMPLE_DAG, run_id)}
        if states.get("retrain") in {"success", "failed", "upstream_failed"}:
            raise StackError(f"retrain ended ({states}) instead of waiting:\n{stack.diagnostics()}")
        return run_id if states.get("retrain") == "deferred" else None

    return poll(deferred, timeout=180, interval=1.0, what="retrain to defer", on_timeout=stack.diagnostics)


def write_report(location: Path) -> Path:
    """The hand-computed day's daily report (``tests/support/ledger_day.py``, 2026-12-01) under ``location``,
    as DailyCarbonReportOperator writes it, with the browser test's SLOs."""
    from airflow_provider_gridaware.ledger.file import InMemoryLedger
    from airflow_provider_gridaware.ledger.slo import slos_from
    from airflow_provider_gridaware.reporting.collect import collect_daily_report
    from airflow_provider_gridaware.reporting.render import render_report_files, write_report_files
    from tests.support.ledger_day import DAY, at, fixed_day_records

    slos = [{"name": "train-intensity", "metric": "mean_intensity", "target": 80, "dag_ids": ["nightly_train"]}]
    report = collect_daily_report(
        DAY.date(), InMemoryLedger(fixed_day_records()), slos=slos_from(slos), generated_at=at(25)
    )
    write_report_files(render_report_files(report), location / DAY.date().isoformat())
    return location


@pytest.fixture(scope="module")
def active_event() -> str:
    """An active grid event in the provider's store (the stack inherits this process's GRIDAWARE_STORE_URL),
    with what the grid-event response paused for it: the test DAG (still held) and a Kubernetes job (resumed)."""
    from airflow_provider_gridaware.planning.grid_response import (
        InFlightWork,
        PauseStep,
        PriorityClass,
        ResponseAction,
        TargetKind,
        WorkState,
    )
    from airflow_provider_gridaware.signals.grid_event import EventStatus
    from airflow_provider_gridaware.store.events import EventStore
    from airflow_provider_gridaware.store.responses import ResponseStore
    from tests.support.grid_events import make_event, simple_signal

    now = datetime.now(UTC)
    event = make_event(
        event_id="peak-ui-1",
        status=EventStatus.ACTIVE,
        signals=(simple_signal(now - timedelta(minutes=30), levels=(2,)),),
        received_at=now - timedelta(hours=1),
    )
    url = os.environ["GRIDAWARE_STORE_URL"]
    EventStore(url).record(event)
    clock = [now - timedelta(minutes=25)]
    with ResponseStore(url, clock=lambda: clock[0]) as store:
        steps = [
            PauseStep(
                InFlightWork(target, kind, cls, ZONE, WorkState.RUNNING, 40.0),
                event,
                action,
                "SIMPLE level 2",
                1,
                False,
            )
            for target, kind, cls, action in (
                (f"dag/{SAMPLE_DAG}", TargetKind.DAG, PriorityClass.BATCH, ResponseAction.STOP),
                (
                    "kubernetes_job/k8s/ml/train-7",
                    TargetKind.KUBERNETES_JOB,
                    PriorityClass.FLEXIBLE,
                    ResponseAction.CHECKPOINT,
                ),
            )
        ]
        dag_hold, job_hold = store.claim_pauses(steps)
        assert dag_hold is not None and job_hold is not None
        store.finish_pauses([(dag_hold, "paused", None), (job_hold, "paused", None)])
        clock[0] = now - timedelta(minutes=5)
        store.claim_releases([(job_hold, 1, "event modified: level 0")])
        store.finish_releases([(job_hold, "resumed", None)])
    return event.event_id


def test_anonymous_requests_to_the_plugin_are_refused(ui_stack):
    stack, _ = ui_stack
    for path in ("/gridaware/", "/gridaware/api/grid", "/gridaware/static/grid.js"):
        answer = LOOPBACK.get(f"{stack.api_url}{path}", timeout=30)
        assert answer.status_code in {401, 403}, (path, answer.status_code, answer.text)
    forged = LOOPBACK.get(f"{stack.api_url}/gridaware/api/grid", headers={"Authorization": "Bearer x.y.z"}, timeout=30)
    assert forged.status_code in {401, 403}


def test_the_grid_page_in_a_browser(ui_stack, waiting_run, active_event):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    stack, clean_start = ui_stack
    # In the checkout (git-ignored), not pytest's temporary directory: that keeps only the last three sessions.
    shots = Path(os.environ.get("GRIDAWARE_SCREENSHOTS", REPO / "test-artifacts" / "grid_page"))
    shots.mkdir(parents=True, exist_ok=True)
    data = stack.client.get(f"{stack.api_url}/gridaware/api/grid", timeout=60).json()
    waiting = [t for t in data["waiting"] if t["dag_id"] == SAMPLE_DAG]
    assert waiting, data
    reason = waiting[0]["reason"]
    assert reason.startswith("waiting "), reason
    assert waiting[0]["planned_start"] == _iso(clean_start), waiting[0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{stack.api_url}/", wait_until="networkidle")
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", stack.password)
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "login" not in url, timeout=60_000)

            page.goto(f"{stack.api_url}/plugin/gridaware", wait_until="networkidle")
            grid = page.frame_locator("iframe")
            expect(grid.locator(f".zone[data-zone='{ZONE}'] .now")).to_have_text("300", timeout=60_000)
            expect(grid.locator(f".zone[data-zone='{ZONE}'] .clean")).to_contain_text("60 % lower than now")
            row = grid.locator(f"tr[data-task='{SAMPLE_DAG}.retrain']")
            expect(row).to_contain_text(reason)
            expect(row).to_contain_text("60 % lower")
            expect(grid.locator(f"tr[data-event='{active_event}']")).to_contain_text("active")
            holds = grid.locator(f"tr[data-event-holds='{active_event}']")
            expect(holds.locator(f"tr[data-hold='dag/{SAMPLE_DAG}']")).to_contain_text("still held")
            expect(holds.locator("tr[data-hold='kubernetes_job/k8s/ml/train-7']")).to_contain_text("20 min")
            expect(holds.locator("tr[data-hold='kubernetes_job/k8s/ml/train-7']")).to_contain_text("resumed")
            report_row = grid.locator("tr[data-report='2026-12-01']")
            expect(report_row).to_contain_text("2026-12-01: 6 tries")
            expect(report_row).to_contain_text("SLO breached: train-intensity")
            savings = grid.locator(f"#savings tr[data-dag='{SAMPLE_DAG}']")
            # 400 kWh x (280-120 + 250-150 + 240-260) g/kWh = 96 kg; two of three runs in cleaner windows
            expect(savings).to_contain_text("96.0 kg CO₂e")
            expect(savings).to_contain_text("67 % (2 of 3)")
            expect(grid.locator("tr[data-slo='retrain-clean-share']")).to_contain_text("breached")
            expect(grid.locator("tr[data-slo='retrain-clean-share']")).to_contain_text("67% of runs in cleaner windows")
            expect(grid.locator("tr[data-slo='retrain-intensity']")).to_contain_text("holds")
            # The waiting retrain draws 400 kW (its runs in the ledger) from its window 4 h ahead.
            expect(grid.locator(f"tr[data-flex-zone='{ZONE}']")).to_contain_text("400 kW")
            page.screenshot(path=str(shots / "grid_light.png"), full_page=True)
            # The day's report, through the plugin's API: in Airflow's frame (its sandbox opens no new tab).
            report_row.get_by_role("link", name="report").click()
            expect(grid.locator("h1")).to_have_text("Carbon report, 2026-12-01", timeout=30_000)
            expect(grid.locator("body")).to_contain_text("Sustainability SLOs")
            page.screenshot(path=str(shots / "daily_report_in_airflow.png"))
            # The page on its own (sandboxed by its CSP: no script), every section.
            report_url = f"{stack.api_url}/gridaware/reports/2026-12-01/report.html"
            page.goto(report_url, wait_until="networkidle")
            expect(page.locator("h1")).to_have_text("Carbon report, 2026-12-01")
            charts = page.evaluate("Array.from(document.images).map((i) => [i.alt, i.naturalWidth])")
            assert charts and all(width > 0 for _, width in charts), charts  # the charts load through the API
            page.screenshot(path=str(shots / "daily_report.png"), full_page=True)

            # From the task in Airflow's own UI, through its "Grid decision" extra link, to its decision.
            links = stack.api(
                "GET", f"/api/v2/dags/{SAMPLE_DAG}/dagRuns/{quote(waiting_run, safe='')}/taskInstances/retrain/links"
            )
            expected = grid_decision_url(stack.api_url, SAMPLE_DAG, waiting_run, "retrain")
            assert links["extra_links"] == {"Grid decision": expected}, links
            # The task instance's Details tab lists its extra links.
            page.goto(f"{stack.api_url}/dags/{SAMPLE_DAG}/runs/{quote(waiting_run, safe='')}/tasks/retrain/details")
            link = page.get_by_role("link", name="Grid decision").or_(page.get_by_role("button", name="Grid decision"))
            expect(link.first).to_be_visible(timeout=60_000)
            if link.first.get_attribute("target") == "_blank":
                with page.context.expect_page() as opened:
                    link.first.click()
                decision_page = opened.value
            else:
                link.first.click()
                decision_page = page
            decision_page.wait_for_load_state("networkidle")
            assert decision_page.url == expected
            expect(decision_page.locator("#focus .decision")).to_have_text(reason, timeout=30_000)
            expect(decision_page.locator("tr.focused")).to_contain_text(f"{SAMPLE_DAG}.retrain")
            decision_page.screenshot(path=str(shots / "grid_decision.png"), full_page=True)
            if decision_page is not page:
                decision_page.close()

            page.goto(f"{stack.api_url}/plugin/gridaware", wait_until="networkidle")
            page.evaluate("localStorage.setItem('theme', 'dark')")
            page.reload(wait_until="networkidle")
            expect(grid.locator(f"tr[data-task='{SAMPLE_DAG}.retrain']")).to_contain_text(reason, timeout=60_000)
            assert grid.locator("html").get_attribute("data-theme") == "dark"
            page.screenshot(path=str(shots / "grid_dark.png"), full_page=True)
            # The whole page (the iframe scrolls on its own inside Airflow), dark.
            page.goto(f"{stack.api_url}/gridaware/", wait_until="networkidle")
            expect(page.locator(f"tr[data-flex-zone='{ZONE}']")).to_contain_text("400 kW", timeout=60_000)
            page.screenshot(path=str(shots / "grid_page_dark_full.png"), full_page=True)
        finally:
            browser.close()
    print(f"Grid page screenshots: {shots}")


def test_gridaware_flex_reads_the_stacks_waiting_work(ui_stack, waiting_run):
    """``gridaware flex --json`` with the stack's Airflow configuration: the deferred retrain, 400 kW from
    its ledger runs, planned in its window 4-5 h ahead, not sheddable within the hour (it starts later)."""
    import subprocess

    from tests.integration.airflow_stack import VENV_BIN

    stack, clean_start = ui_stack
    result = subprocess.run(
        [str(VENV_BIN / "gridaware"), "flex", "--json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    zone = report["zones"][ZONE]
    planned = dict(zone["planned_kw"])
    assert planned[_iso(clean_start)] == 400.0, zone["planned_kw"][:3]
    assert max(planned.values()) == 400.0
    assert zone["power_now_kw"] == 0.0
    assert zone["shed_kw"]["flexible"] == {"5": 0.0, "15": 0.0, "60": 0.0}
