"""DailyCarbonReportOperator and ``gridaware report``: the fixed day read from a real store (archive actuals,
grid events), written through ObjectStoragePath, sent through a notifier; the CLI writes the same files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseNotifier

from airflow_provider_gridaware.cli import main
from airflow_provider_gridaware.hooks import carbon_report as report_hooks
from airflow_provider_gridaware.hooks import store as store_hooks
from airflow_provider_gridaware.hooks.store import close_shared_archives, shared_archive, shared_event_store
from airflow_provider_gridaware.ledger.file import InMemoryLedger, write_ledger_file
from airflow_provider_gridaware.operators.carbon_report import (
    CarbonReportConfigError,
    DailyCarbonReportOperator,
    report_day,
)
from airflow_provider_gridaware.signals.units import CarbonMetric
from airflow_provider_gridaware.times import UTC
from tests.support.grid_events import make_event, simple_signal
from tests.support.ledger_day import REPORT_FILES, at, fixed_day_records, half_hourly_actuals
from tests.support.smtp_server import SmtpServer

DAY = date(2026, 12, 1)
FILES = REPORT_FILES


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A store of its own holding the fixed day's actuals (GB with 10:00-11:00 missing) and one grid event."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    close_shared_archives()
    shared_archive(url).record_many(
        [
            half_hourly_actuals("GB", {h / 2: 100 + h for h in range(48) if not 20 <= h < 22}),
            half_hourly_actuals("FR", {h / 2: 50.0 for h in range(48)}),
            half_hourly_actuals(
                "CAISO_NORTH", {h / 2: 400.0 for h in range(48)}, metric=CarbonMetric.MARGINAL, source="watttime"
            ),
        ]
    )
    shared_event_store(url).record(make_event(event_id="evening-peak", signals=(simple_signal(at(17), (2, 3)),)))
    yield url
    close_shared_archives()


class RecordingNotifier(BaseNotifier):
    """A real notifier: its templated subject is rendered by Airflow's notifier machinery."""

    template_fields = ("subject",)

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def notify(self, context: Any) -> None:
        self.sent.append((self.subject, context["carbon_report"]))


def test_operator_writes_the_report_and_notifies(store: str, tmp_path: Path) -> None:
    notifier = RecordingNotifier("Carbon report {{ carbon_report.day }}: {{ carbon_report.headline }}")
    operator = DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger=InMemoryLedger(fixed_day_records()),
        output_dir=str(tmp_path / "reports" / "{day}"),
        notifier=notifier,
    )
    summary = operator.execute({"data_interval_end": datetime(2026, 12, 2, tzinfo=UTC)})  # type: ignore[arg-type]

    folder = tmp_path / "reports" / "2026-12-01"
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == FILES
    assert summary["location"] == f"file://{folder}"
    assert summary == {**json.loads((folder / "summary.json").read_text()), "location": summary["location"]}
    assert summary["tries"] == 6
    assert [round(c["saved_kg"], 6) for c in summary["carbon"]] == [1.44, 0.5]
    assert [e["event_id"] for e in summary["grid_events"]] == ["evening-peak"]
    curves = {c["zone"]: c for c in summary["curves"]}
    assert curves["GB"]["source"] == "ukci" and curves["GB"]["missing_s"] == 3600
    assert curves["CAISO_NORTH"]["intensity_kind"] == "marginal" and curves["CAISO_NORTH"]["points"] == 48
    assert "GB: actual average intensity missing for 1.0 h (10:00-11:00 UTC)." in summary["data_quality"]
    for chart in ("GB", "FR", "CAISO_NORTH"):
        assert (folder / f"charts/intensity-{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (folder / "report.html").read_text()
    assert 'src="charts/intensity-GB.png"' in html and "evening-peak" in html

    ((subject, sent),) = notifier.sent
    assert subject == f"Carbon report 2026-12-01: {summary['headline']}"
    assert sent["location"] == summary["location"] and sent["html"] == html


def test_actuals_fetched_through_a_grid_signal_connection_draw_the_curve(
    store: str, tmp_path: Path, make_connection: Any
) -> None:
    trace = tmp_path / "gb.csv"
    rows = [f"{(at(0) + timedelta(minutes=30 * i)).isoformat()},GB,{80 + i}" for i in range(48)]
    trace.write_text("time,zone,value\n" + "\n".join(rows) + "\n")
    conn_id = make_connection("replay_gb_day", "gridaware_replay", host=str(trace), extra={"anchor": "fixed"})
    gb_only = [r for r in fixed_day_records() if r.actual.zone == "GB" and r.key.task_id != "eval"]
    operator = DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger=InMemoryLedger(gb_only),
        report_date="2026-12-01",
        output_dir=str(tmp_path / "out"),
        actuals_conn_ids={"GB": conn_id, "FR": "no_such_connection"},
    )
    summary = operator.execute({})  # type: ignore[arg-type]
    (gb,) = summary["curves"]
    assert (gb["source"], gb["points"], gb["missing_s"]) == ("replay", 48, 0)
    assert any("FR: fetching actuals through no_such_connection failed" in n for n in summary["data_quality"])


def test_the_empty_day_is_written_and_says_so(store: str, tmp_path: Path) -> None:
    operator = DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger=InMemoryLedger(fixed_day_records()),
        report_date="2026-12-03",
        output_dir=f"file://{tmp_path}/{{day}}",
    )
    summary = operator.execute({})  # type: ignore[arg-type]
    folder = tmp_path / "2026-12-03"
    assert summary["empty"] and summary["headline"] == "2026-12-03: no grid-aware task ran"
    assert sorted(p.name for p in folder.iterdir()) == ["records.csv", "report.html", "summary.json"]
    assert "No grid-aware task ran on 2026-12-03" in (folder / "report.html").read_text()


def test_the_report_day_defaults_to_the_last_complete_day_before_the_interval_end() -> None:
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert report_day(None, {"data_interval_end": midnight}) == DAY  # @daily at 00:00
    assert report_day(None, {"data_interval_end": midnight + timedelta(hours=14)}) == DAY  # manual run
    assert report_day("2026-11-30", {"data_interval_end": midnight}) == date(2026, 11, 30)
    with pytest.raises(CarbonReportConfigError, match="'2026-13-01' is not a date like 2026-12-01"):
        report_day("2026-13-01", {})


def test_the_stores_ledger_is_read_and_finalised_in_place(store: str) -> None:
    # The report reads the store's own ledger and writes each finalised record back there.
    record = replace(next(r for r in fixed_day_records() if r.actual.zone == "FR"), finalised=False)
    ledger = store_hooks.shared_ledger_store(store)
    ledger.write(record)
    reader = report_hooks.open_ledger_reader()
    assert [r.key for r in reader.records(at(0), at(24))] == [record.key]
    finalised = report_hooks.ledger_finaliser(store)(
        record, {"FR": half_hourly_actuals("FR", {h / 2: 50.0 for h in range(48)})}
    )
    assert ledger.get(record.key) == finalised and ledger.versions(record.key) == 2
    assert finalised.actual.intensity_g_per_kwh == pytest.approx(50.0)


def test_the_cli_writes_the_same_files_as_the_operator(store: str, tmp_path: Path, capsys: Any) -> None:
    ledger_file = write_ledger_file(tmp_path / "ledger.json", fixed_day_records())
    out = tmp_path / "cli"
    code = main(["report", "--date", "2026-12-01", "--out", str(out), "--ledger-file", str(ledger_file)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith(
        "2026-12-01: 6 tries; 23.0 kWh (1 of 6 without an energy figure); 1.66 kgCO2e average, saved 1.44 kg (46.5 %)"
    )
    assert f"open {(out / 'report.html').as_uri()}" in printed

    DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger_file=str(ledger_file),
        report_date="2026-12-01",
        output_dir=str(tmp_path / "dag"),
    ).execute({})  # type: ignore[arg-type]
    cli_files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    dag_files = {
        str(p.relative_to(tmp_path / "dag")): p.read_bytes() for p in (tmp_path / "dag").rglob("*") if p.is_file()
    }
    assert set(cli_files) == set(dag_files) == FILES
    for name in ("records.csv", *(n for n in FILES if n.endswith(".png"))):
        assert cli_files[name] == dag_files[name], name
    cli_summary, dag_summary = (json.loads(f["summary.json"]) for f in (cli_files, dag_files))
    assert {**cli_summary, "generated_at": None} == {**dag_summary, "generated_at": None}


def test_the_cli_refuses_bad_input_clearly(store: str, tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    code = main(
        ["report", "--date", "2026-12-01", "--out", str(tmp_path / "x"), "--ledger-file", str(tmp_path / "bad.json")]
    )
    assert code == 1
    assert "bad.json: not JSON (line 1, column 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--date", "yesterday", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "'yesterday' is not a date like 2026-12-01" in capsys.readouterr().err


def test_the_report_is_mailed_through_airflows_smtp_notifier(store: str, tmp_path: Path, make_connection: Any) -> None:
    smtp = pytest.importorskip("airflow.providers.smtp.notifications.smtp")
    with SmtpServer() as server:
        conn_id = make_connection(
            "smtp_report",
            "smtp",
            host="127.0.0.1",
            port=server.port,
            extra={"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com", "retry_limit": 0},
        )
        notifier = smtp.SmtpNotifier(
            to="green-ops@example.com",
            smtp_conn_id=conn_id,
            subject="Carbon report {{ carbon_report.day }}: {{ carbon_report.headline }}",
            html_content="<p>{{ carbon_report.headline }}</p><p>{{ carbon_report.location }}/report.html</p>",
        )
        summary = DailyCarbonReportOperator(
            task_id="carbon_report",
            ledger=InMemoryLedger(fixed_day_records()),
            report_date="2026-12-01",
            output_dir=str(tmp_path / "out"),
            notifier=notifier,
        ).execute({})  # type: ignore[arg-type]
    (mail,) = server.received
    assert mail.recipients == ["green-ops@example.com"]
    message = mail.message
    subject = " ".join(str(message["Subject"]).split())  # long subjects are folded
    assert subject == f"Carbon report 2026-12-01: {summary['headline']}"
    body = next(part for part in message.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert f"{summary['location']}/report.html".encode() in body


@dataclass
class Hold:
    """The fields of a response-store record the report reads."""

    target: str
    event_id: str
    requested_at: datetime
    applied_at: datetime | None
    result: str
    resumed_at: datetime | None = None
    resume_result: str | None = None
    waited_seconds: float | None = None
    target_kind: str = "kubernetes_job"
    event_source: str = "openadr2b:vtn"
    action: str = "pause"
    reason: str = "event level 2 sheds flexible work"
    resume_reason: str | None = "event over"
    resume_requested_at: datetime | None = None


def test_what_the_grid_event_response_did_that_day(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holds = [
        Hold("k8s/ml/train", "peak", at(17), at(17.01), "paused", at(19), "resumed", 7164),
        Hold("k8s/ml/eval", "old", at(-2), at(-2), "paused", at(1), "resumed", 3 * 3600),  # paused the day before
        Hold("dag nightly", "late", at(23.9), None, "claimed"),  # asked for, not applied yet
        Hold("k8s/ml/next", "tomorrow", at(25), at(25), "paused"),
    ]

    class Responses:
        def records(self) -> list[Hold]:
            return holds

    monkeypatch.setattr(store_hooks, "shared_response_store", lambda url: Responses(), raising=False)
    summary = DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger=InMemoryLedger(fixed_day_records()),
        report_date="2026-12-01",
        output_dir=str(tmp_path / "out"),
    ).execute({})  # type: ignore[arg-type]
    rows = [(p["at"][11:16], p["action"], p["target"], p["result"]) for p in summary["paused"]]
    assert rows == [
        ("01:00", "resume", "kubernetes_job k8s/ml/eval", "resumed"),
        ("17:00", "pause", "kubernetes_job k8s/ml/train", "paused"),
        ("19:00", "resume", "kubernetes_job k8s/ml/train", "resumed"),
        ("23:54", "pause", "kubernetes_job dag nightly", "claimed"),
    ]
    assert summary["paused"][2]["detail"] == "held 119 min; event over"
    assert summary["paused"][1]["event"] == "openadr2b:vtn peak"

    monkeypatch.delattr(store_hooks, "shared_response_store", raising=False)
    assert report_hooks.response_paused_work(store) is None


#: nightly_train over 30 days: the day's train and eval and the day before's train, (1000 + 200 + 1000) g / 24 kWh = 91.7
#: (met at 120); batch_export (tag etl) over 7 days: 1 of 2 tries in a cleaner window (breached at 0.8).
REPORT_SLOS = [
    {"name": "train-intensity", "metric": "mean_intensity", "target": 120, "dag_ids": ["nightly_train"]},
    {"name": "export-clean", "metric": "clean_share", "target": 0.8, "tags": ["etl"], "period_days": 7},
]


def test_the_slos_reach_the_report_from_the_operator_the_cli_and_the_config(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    ledger_file = str(write_ledger_file(tmp_path / "ledger.json", fixed_day_records()))

    def slos_of(summary: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        return {s["name"]: (s["status"], None if s["value"] is None else round(s["value"], 2)) for s in summary["slos"]}

    expected = {"train-intensity": ("met", 91.67), "export-clean": ("breached", 0.5)}
    given = DailyCarbonReportOperator(
        task_id="carbon_report",
        ledger_file=ledger_file,
        report_date="2026-12-01",
        output_dir=str(tmp_path / "dag"),
        slos=REPORT_SLOS,
        dag_tags={"batch_export": ["etl"]},
    ).execute({})  # type: ignore[arg-type]
    assert slos_of(given) == expected
    assert given["headline"].endswith("; SLO breached: export-clean")

    (tmp_path / "slos.json").write_text(json.dumps(REPORT_SLOS))
    args = ["report", "--date", "2026-12-01", "--ledger-file", ledger_file, "--json"]
    cli = [*args, "--out", str(tmp_path / "cli"), "--slos", str(tmp_path / "slos.json")]
    capsys.readouterr()  # the operator's log
    assert main([*cli, "--dag-tags", '{"batch_export": ["etl"]}']) == 0
    assert slos_of(json.loads(capsys.readouterr().out)) == expected

    # Without slos=, the operator and the command report [gridaware] slos, as the Grid page shows them.
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__SLOS", json.dumps(REPORT_SLOS[:1]))
    configured = DailyCarbonReportOperator(
        task_id="carbon_report", ledger_file=ledger_file, report_date="2026-12-01", output_dir=str(tmp_path / "conf")
    ).execute({})  # type: ignore[arg-type]
    assert slos_of(configured) == {"train-intensity": ("met", 91.67)}
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "cli2")]) == 0
    assert slos_of(json.loads(capsys.readouterr().out)) == {"train-intensity": ("met", 91.67)}
    assert main([*args, "--out", str(tmp_path / "cli3"), "--slos", "[]"]) == 0
    assert json.loads(capsys.readouterr().out)["slos"] == []

    with pytest.raises(ValueError, match=r"task 'bad': slos: SLO 'x': give dag_ids or tags"):
        DailyCarbonReportOperator(task_id="bad", slos=[{"name": "x", "metric": "clean_share", "target": 0.5}])
    assert main([*args, "--out", str(tmp_path / "cli4"), "--slos", "[{]"]) == 2
    assert "gridaware report: --slos is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "cli4").exists()


def test_by_default_the_report_goes_to_the_report_location_the_grid_page_lists(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_gridaware.plugins.app import configured_report_shelf

    ledger_file = str(write_ledger_file(tmp_path / "ledger.json", fixed_day_records()))
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__REPORT_LOCATION", f"file://{tmp_path / 'reports'}")
    summary = DailyCarbonReportOperator(
        task_id="carbon_report", ledger_file=ledger_file, report_date="2026-12-01", slos=REPORT_SLOS[:1]
    ).execute({})  # type: ignore[arg-type]
    assert summary["location"] == f"file://{tmp_path / 'reports' / '2026-12-01'}"
    shelf = configured_report_shelf()()
    [listed] = shelf.days()
    assert listed.day == DAY and listed.headline == summary["headline"]
    assert listed.dag_ids == {"nightly_train", "batch_export", "marginal_job"}
    assert set(listed.files) == {"report.html", "summary.json", "records.csv"}
    data, media_type = shelf.read("2026-12-01", "charts/intensity-GB.png")
    assert data.startswith(b"\x89PNG") and media_type == "image/png"

    monkeypatch.delenv("AIRFLOW__GRIDAWARE__REPORT_LOCATION")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    home = DailyCarbonReportOperator(
        task_id="carbon_report", ledger_file=ledger_file, report_date="2026-12-01", slos=[]
    ).execute({})  # type: ignore[arg-type]
    assert home["location"] == f"file://{tmp_path / 'home' / 'gridaware' / 'reports' / '2026-12-01'}"
