"""The sustainability SLOs in the daily report, against a case worked out by hand.

The fixed day (2026-12-01, ``tests/support/ledger_day.py``) plus three older records:

* nightly_train.train 2026-11-10 10 kWh x 300 (in a 30-day window ending 2026-12-02 00:00);
* nightly_train.train 2026-10-20 10 kWh x 900 (outside it);
* batch_export.export 2026-11-20 2 kWh x 100 against 200 (a cleaner window; outside a 7-day window).

``train-intensity`` (mean_intensity at most 120, nightly_train, 30 days): the day's train 10 kWh x 100 and
eval 4 kWh x 50, the day before's train 10 kWh x 100, 2026-11-10's 10 kWh x 300:
(1000 + 200 + 1000 + 3000) / 34 kWh = 152.9 gCO2e/kWh: **breached**.

``export-clean`` (clean_share at least 0.5, batch_export, 7 days): export try 1 ran at 120 against 120 (not
cleaner), try 2 at 110 against 130 (cleaner), cleanup has no counterfactual: 1 of 2 = 0.5: **met**.

``ml-marginal`` (kg_per_month at most 3, tag ml, marginal, 15 days): marginal_job.score 2000 g marginal over
15 days = 2.0 kg x 30/15 = 4.0 kg per 30 days: **breached**. The average tries of the tagged DAGs do not count.

``export-mean`` (mean_intensity, batch_export, min_runs 5): 2 runs with energy: **not judged**.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from airflow_provider_gridaware.ledger.file import InMemoryLedger
from airflow_provider_gridaware.ledger.slo import SustainabilitySlo, parse_slos
from airflow_provider_gridaware.reporting.collect import collect_daily_report
from airflow_provider_gridaware.reporting.render import render_report_files
from airflow_provider_gridaware.reporting.slo import measure_slos
from tests.support.ledger_day import DAY, at, fixed_day_records, record, run

REPORT_DAY = date(2026, 12, 1)
UNTIL = DAY + timedelta(days=1)
SLOS_JSON = json.dumps(
    [
        {"name": "train-intensity", "metric": "mean_intensity", "target": 120, "dag_ids": ["nightly_train"]},
        {"name": "export-clean", "metric": "clean_share", "target": 0.5, "dag_ids": ["batch_export"], "period_days": 7},
        {
            "name": "ml-marginal",
            "metric": "kg_per_month",
            "target": 3,
            "tags": ["ml"],
            "intensity_kind": "marginal",
            "period_days": 15,
        },
        {"name": "export-mean", "metric": "mean_intensity", "target": 500, "dag_ids": ["batch_export"], "min_runs": 5},
    ]
)
DAG_TAGS = {"marginal_job": ["ml"], "nightly_train": ["ml"]}


def ledger() -> InMemoryLedger:
    day = -24.0  # hours from the fixed day's midnight

    def older(dag_id: str, task_id: str, days_before: int, actual: tuple[float, float], cf: float | None = None):
        start = days_before * day
        energy, intensity = actual
        return record(
            dag_id,
            task_id,
            run("GB", start, start + 1, energy, intensity),
            run("GB", start - 1, start, energy, cf) if cf is not None else None,
            run_id=f"scheduled__{days_before}",
        )

    return InMemoryLedger(
        [
            *fixed_day_records(),
            older("nightly_train", "train", 21, (10, 300)),
            older("nightly_train", "train", 42, (10, 900)),
            older("batch_export", "export", 11, (2, 100), cf=200),
        ]
    )


def report():
    return collect_daily_report(
        REPORT_DAY, ledger(), slos=parse_slos(SLOS_JSON), dag_tags=DAG_TAGS, generated_at=at(25)
    )


def test_each_slo_is_measured_over_its_own_window_ending_with_the_day():
    slos = {s.status.slo.name: s for s in report().slos}
    assert list(slos) == ["train-intensity", "export-clean", "ml-marginal", "export-mean"]

    train = slos["train-intensity"]
    assert train.status.value == pytest.approx(5200 / 34)
    assert (train.status.runs, train.verdict) == (4, "breached")
    assert (train.since, train.until) == (UNTIL - timedelta(days=30), UNTIL)

    clean = slos["export-clean"]
    assert (clean.status.value, clean.status.runs, clean.verdict) == (0.5, 2, "met")
    assert clean.since == UNTIL - timedelta(days=7)

    marginal = slos["ml-marginal"]
    assert marginal.status.value == pytest.approx(4.0)
    assert (marginal.status.runs, marginal.verdict, marginal.status.dag_ids) == (1, "breached", ("marginal_job",))

    assert (slos["export-mean"].status.value, slos["export-mean"].verdict) == (None, "not judged")


def test_the_slos_are_in_summary_json_and_on_the_page():
    files = render_report_files(report(), draw_charts=lambda r: {})
    summary = json.loads(files["summary.json"])
    rows = {s["name"]: s for s in summary["slos"]}
    train = rows["train-intensity"]
    assert {k: train[k] for k in ("metric", "target", "status", "runs", "since", "until", "period_days")} == {
        "metric": "mean_intensity",
        "target": 120.0,
        "status": "breached",
        "runs": 4,
        "since": "2026-11-02T00:00:00Z",
        "until": "2026-12-02T00:00:00Z",
        "period_days": 30.0,
    }
    assert train["value"] == pytest.approx(152.94, abs=0.01)
    assert train["text"] == (
        "SLO train-intensity BREACHED: 153 gCO2eq/kWh over 4 run(s) in the last 30 days (target at most 120 gCO2eq/kWh)"
    )
    assert (rows["export-clean"]["status"], rows["export-clean"]["value"]) == ("met", 0.5)
    assert rows["export-mean"]["status"] == "not judged"
    assert summary["headline"].endswith("; SLO breached: train-intensity, ml-marginal")

    html = files["report.html"].decode()
    section = html[html.index("<h2>Sustainability SLOs</h2>") : html.index("<h2>Grid events</h2>")]
    assert "train-intensity" in section and "at most 120 gCO2e/kWh" in section and "153 gCO2e/kWh" in section
    assert '<b class="bad">breached</b>' in section and '<b class="good">met</b>' in section
    assert "at least 50%" in section and "4.0 kgCO2e / 30 days" in section
    assert "2026-11-25 to 2026-12-02" in section  # export-clean's 7 days


def test_the_days_finalised_records_replace_the_versions_the_ledger_holds():
    slo = SustainabilitySlo("t", "mean_intensity", 120, dag_ids=("nightly_train",))
    as_written = record("nightly_train", "train", run("GB", 2, 4, 10, 150), None)
    finalised = record("nightly_train", "train", run("GB", 2, 4, 10, 100), None)
    [reported] = measure_slos([slo], [as_written], UNTIL, day_records=[finalised])
    assert reported.status.value == 100


def test_without_slos_or_tags_the_report_says_so():
    plain = collect_daily_report(REPORT_DAY, ledger(), generated_at=at(25))
    assert plain.slos == ()
    files = render_report_files(plain, draw_charts=lambda r: {})
    assert json.loads(files["summary.json"])["slos"] == []
    assert "No sustainability SLO was given to this report" in files["report.html"].decode()

    untagged = collect_daily_report(REPORT_DAY, ledger(), slos=parse_slos(SLOS_JSON), generated_at=at(25))
    marginal = next(s for s in untagged.slos if s.status.slo.name == "ml-marginal")
    assert marginal.verdict == "not judged"
    assert "set per tag (ml) and the report was given no DAG tags" in marginal.describe()
