"""The daily report's figures against a day worked out by hand (tests/support/ledger_day.py), and the empty day."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date, timedelta

import pytest

from airflow_provider_gridaware.ledger.energy import ESTIMATED_NOTE
from airflow_provider_gridaware.ledger.file import InMemoryLedger, LedgerFile, LedgerFileError, write_ledger_file
from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, ValueBasis
from airflow_provider_gridaware.reporting.daily import (
    PausedWork,
    ZoneCurve,
    build_daily_report,
    day_bounds,
    finalise_records,
    percentile,
)
from airflow_provider_gridaware.reporting.render import (
    CSV_COLUMNS,
    render_report_files,
    summary_dict,
    write_report_files,
)
from tests.support.grid_events import make_event, simple_signal
from tests.support.ledger_day import DAY, at, fixed_day_records, half_hourly_actuals

REPORT_DAY = date(2026, 12, 1)


def day_records() -> list[LedgerRecord]:
    since, until = day_bounds(REPORT_DAY)
    return InMemoryLedger(fixed_day_records()).records(since, until)


def fixed_report(**kwargs):
    return build_daily_report(REPORT_DAY, day_records(), generated_at=at(25), **kwargs)


def test_the_reader_keeps_the_newest_version_of_each_try_of_the_day():
    records = day_records()
    assert len(records) == 6  # 8 versions: one superseded, one of the day before
    train = next(r for r in records if r.key.task_id == "train")
    assert train.actual.emissions_g == 1000 and train.finalised
    assert [r.actual.start for r in records] == sorted(r.actual.start for r in records)
    only = InMemoryLedger(fixed_day_records()).records(*day_bounds(REPORT_DAY), dag_ids=["marginal_job"])
    assert [r.key.dag_id for r in only] == ["marginal_job"]


def test_totals_and_savings_match_the_hand_computed_day():
    report = fixed_report()
    assert len(report.records) == 6
    assert report.energy_kwh == pytest.approx(23.0)  # 10 + 4 + 2 + 2 + 5; cleanup has no energy figure
    average, marginal = report.by_kind
    # Average and marginal kept apart, never added.
    assert (average.kind, average.tries, average.compared_tries) == ("average", 4, 4)
    assert average.energy_kwh == pytest.approx(18.0)
    assert average.emissions_kg == pytest.approx(1.66)  # 1000 + 200 + 240 + 220 g
    assert average.counterfactual_kg == pytest.approx(3.10)  # 2000 + 600 + 240 + 260 g
    assert average.saved_kg == pytest.approx(1.44)
    assert average.saved_percent == pytest.approx(100 * 1.44 / 3.10)
    assert (marginal.kind, marginal.tries) == ("marginal", 1)
    assert marginal.emissions_kg == pytest.approx(2.0)
    assert marginal.saved_kg == pytest.approx(0.5)
    assert marginal.saved_percent == pytest.approx(20.0)

    eur, usd = report.costs
    assert (eur.currency, eur.tries, eur.compared_tries) == ("EUR", 3, 3)
    assert eur.cost == pytest.approx(0.72)  # 0.50 + 0.12 + 0.10
    assert eur.counterfactual_cost == pytest.approx(1.06)  # 0.80 + 0.12 + 0.14
    assert eur.saved == pytest.approx(0.34)
    assert (usd.currency, usd.cost, usd.saved) == ("USD", pytest.approx(0.15), pytest.approx(0.05))
    assert report.headline() == (
        "2026-12-01: 6 tries; 23.0 kWh (1 of 6 without an energy figure); 1.66 kgCO2e average, saved 1.44 kg (46.5 %); "
        "2.00 kgCO2e marginal, saved 0.50 kg (20.0 %); cost 0.72 EUR, saved 0.34; cost 0.15 USD, saved 0.05"
    )


def test_the_headline_says_energy_is_unknown_rather_than_zero():
    cleanup = [r for r in day_records() if r.actual.energy_kwh is None]
    assert len(cleanup) == 1
    report = build_daily_report(REPORT_DAY, cleanup, generated_at=at(25))
    assert report.headline() == ("2026-12-01: 1 try; energy unknown (no power source or energy profile declared)")


def test_per_dag_and_per_zone_tables():
    report = fixed_report()
    dags = {(r.name, r.kind): r for r in report.per_dag}
    assert list(dags) == [
        ("batch_export", None),
        ("batch_export", "average"),
        ("marginal_job", "marginal"),
        ("nightly_train", "average"),
    ]
    export = dags[("batch_export", "average")]
    assert (export.tries, export.succeeded, export.energy_kwh) == (2, 1, pytest.approx(4.0))
    assert export.emissions_kg == pytest.approx(0.46)
    assert export.mean_intensity_g_per_kwh == pytest.approx(115.0)  # 460 g / 4 kWh
    assert export.saved_kg == pytest.approx(0.04)  # 0 + 40 g
    assert export.costs == {"EUR": pytest.approx(0.22)}
    train = dags[("nightly_train", "average")]
    assert train.mean_intensity_g_per_kwh == pytest.approx(1200 / 14)
    assert train.saved_kg == pytest.approx(1.4)
    cleanup = dags[("batch_export", None)]
    assert (cleanup.tries, cleanup.emissions_kg, cleanup.saved_kg) == (1, None, None)

    zones = {(r.name, r.kind): r for r in report.per_zone}
    assert set(zones) == {("CAISO_NORTH", "marginal"), ("FR", "average"), ("GB", None), ("GB", "average")}
    gb = zones[("GB", "average")]
    assert (gb.tries, gb.energy_kwh) == (3, pytest.approx(14.0))
    assert gb.mean_intensity_g_per_kwh == pytest.approx(1460 / 14)
    assert gb.saved_kg == pytest.approx(1.04)
    assert zones[("FR", "average")].saved_kg == pytest.approx(0.4)  # moved from GB: 600 - 200 g


def test_waiting_per_task_and_deadline_misses():
    report = fixed_report()
    waiting = {(w.dag_id, w.task_id): w for w in report.waiting}
    export = waiting[("batch_export", "export")]
    assert (export.tries, export.median_s, export.p95_s, export.max_s) == (2, 900.0, 1710.0, 1800.0)
    assert export.deadline_misses == 1
    assert waiting[("nightly_train", "train")].median_s == 7200
    assert sum(w.deadline_misses for w in report.waiting) == 1
    (missed,) = report.deadline_misses
    assert (missed.key.task_id, missed.key.try_number) == ("export", 2)
    assert missed.actual.end - missed.deadline == timedelta(minutes=15)


def test_percentile_is_linear_between_ranks():
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([0, 10, 20, 30, 40], 0.5) == 20
    assert percentile(list(range(101)), 0.95) == pytest.approx(95)
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_data_quality_notes_name_what_is_estimated_missing_or_fallen_back():
    gb = half_hourly_actuals("GB", {h / 2: 100.0 for h in range(48) if not 20 <= h < 24})  # 10:00-12:00 missing
    curves = [ZoneCurve("GB", "average", gb, "ukci"), ZoneCurve("FR", "average", None, note="nothing archived")]
    notes = fixed_report(curves=curves).quality_notes
    text = "\n".join(notes)
    assert "Energy estimated from a declared profile" in text and "for 1 of 6 tries" in text
    assert "No energy figure (no power source and no profile) for 1 of 6 tries" in text
    assert "No signal covered the run of 1 of 6 tries" in text
    assert "GB: actual average intensity missing for 2.0 h (10:00-12:00 UTC)" in text
    assert "FR: no actual average intensity for the day (nothing archived)" in text
    assert "Both average and marginal intensities appear" in text
    assert "No price signal for 1 of 6 tries" in text  # eval has energy but no price
    assert "fallback: forecast from the provider's own forecaster (ukci unavailable at 01:00) (1 try)" in text


def test_a_day_not_over_is_checked_for_missing_signal_only_up_to_when_the_report_is_made():
    gb = half_hourly_actuals("GB", {h / 2: 100.0 for h in range(2 * 11)})  # 00:00-11:00 published
    curves = [ZoneCurve("GB", "average", gb, "ukci")]
    text = "\n".join(build_daily_report(REPORT_DAY, day_records(), curves=curves, generated_at=at(11)).quality_notes)
    assert "GB: actual average intensity missing" not in text  # the afternoon has not happened yet
    text = "\n".join(build_daily_report(REPORT_DAY, day_records(), curves=curves, generated_at=at(12)).quality_notes)
    assert "GB: actual average intensity missing for 1.0 h (11:00-12:00 UTC)" in text


def test_the_estimated_energy_note_is_given_once_not_per_record_as_well():
    records = [
        replace(r, notes=(*r.notes, ESTIMATED_NOTE)) if r.energy_method is EnergyMethod.ESTIMATED else r
        for r in day_records()
    ]
    notes = build_daily_report(REPORT_DAY, records, generated_at=at(25)).quality_notes
    assert not any(note.startswith("energy estimated from the declared profile") for note in notes), notes
    assert sum("estimated from a declared profile" in note for note in notes) == 1


def test_missing_periods_merge_gaps_and_edges():
    curve = ZoneCurve("GB", "average", half_hourly_actuals("GB", {1: 1, 1.5: 1, 3: 1}))
    since, until = day_bounds(REPORT_DAY)
    assert curve.missing_periods(since, until) == [(since, at(1)), (at(2), at(3)), (at(3.5), until)]
    assert ZoneCurve("GB", "average", None).missing_periods(since, until) == [(since, until)]


def test_events_of_the_day_and_the_paused_section():
    today = make_event(event_id="peak", signals=(simple_signal(at(17), (2, 3)),))
    last_week = make_event(event_id="old", signals=(simple_signal(at(-24 * 7), (1,)),))
    paused = [
        PausedWork(at(17), "pause", "kubernetes_job k8s/ml/train", "openadr2b:vtn peak", "paused", "Job suspended")
    ]
    report = fixed_report(events=[today, last_week], paused=paused)
    assert [e.event_id for e in report.events] == ["peak"]
    assert report.paused == tuple(paused)
    files = render_report_files(report, draw_charts=lambda r: {})
    html = files["report.html"].decode()
    assert "peak" in html and "Job suspended" in html and "old" not in html.split("Grid events")[1]
    unknown = render_report_files(fixed_report(), draw_charts=lambda r: {})["report.html"].decode()
    assert "No record of grid-event responses was given to this report" in unknown
    nothing = render_report_files(fixed_report(paused=[]), draw_charts=lambda r: {})["report.html"].decode()
    assert "Nothing was paused" in nothing


def test_finalising_uses_the_zones_actuals_and_keeps_a_record_it_cannot_finalise():
    records = [replace(r, finalised=False, basis=ValueBasis.FORECAST) for r in day_records()]
    gb = ZoneCurve("GB", "average", half_hourly_actuals("GB", {h / 2: 90.0 for h in range(48)}))
    seen: dict[str, list[str]] = {}

    def finaliser(record, actuals):
        seen[record.key.task_id] = sorted(actuals)
        if record.key.task_id == "export":
            raise ValueError("series does not cover the run")
        return replace(record, finalised=True, basis=ValueBasis.ACTUAL)

    out, notes = finalise_records(records, [gb], finaliser)
    assert seen["train"] == ["GB"] and seen["eval"] == ["GB"]  # eval ran in FR: only its home zone has actuals
    assert "score" not in seen  # no CAISO_NORTH actuals: not called
    by_task = {(r.key.task_id, r.key.try_number): r for r in out}
    assert by_task[("train", 1)].finalised and not by_task[("export", 1)].finalised
    assert len(out) == len(records)
    assert any("finalising failed (ValueError: series does not cover the run)" in n for n in notes)
    assert any("marginal_job.score" in n and "no actuals for CAISO_NORTH" in n for n in notes)


def test_csv_and_json_carry_the_same_figures():
    report = fixed_report()
    files = render_report_files(report, draw_charts=lambda r: {})
    rows = list(csv.DictReader(io.StringIO(files["records.csv"].decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 6
    assert sum(float(r["emissions_g"] or 0) for r in rows) == pytest.approx(1660 + 2000)
    assert sum(float(r["saved_g"] or 0) for r in rows if r["intensity_kind"] == "average") == pytest.approx(1440)
    missed = [r for r in rows if r["missed_deadline"] == "True"]
    assert [(r["task_id"], r["try_number"]) for r in missed] == [("export", "2")]

    summary = json.loads(files["summary.json"])
    assert summary == json.loads(json.dumps(summary_dict(report, files)))
    assert summary["day"] == "2026-12-01" and summary["tries"] == 6 and not summary["empty"]
    assert [(c["intensity_kind"], round(c["saved_kg"], 6)) for c in summary["carbon"]] == [
        ("average", 1.44),
        ("marginal", 0.5),
    ]
    assert "never added" in summary["savings_method"]
    assert len(summary["deadline_misses"]) == 1 and summary["deadline_misses"][0]["late_s"] == 900
    assert set(summary["files"]) == {"report.html", "records.csv", "summary.json"}


def test_the_empty_day_gives_a_short_report_that_says_so():
    report = build_daily_report(
        date(2026, 12, 2), InMemoryLedger(fixed_day_records()).records(*day_bounds(date(2026, 12, 2)))
    )
    assert report.empty and report.headline() == "2026-12-02: no grid-aware task ran"
    files = render_report_files(report)  # no chart to draw: matplotlib is not even needed
    assert set(files) == {"report.html", "records.csv", "summary.json"}
    html = files["report.html"].decode()
    assert "No grid-aware task ran on 2026-12-02" in html
    assert "Per DAG" not in html
    assert files["records.csv"].decode().splitlines() == [",".join(CSV_COLUMNS)]
    summary = json.loads(files["summary.json"])
    assert summary["empty"] and summary["tries"] == 0 and summary["carbon"] == [] and summary["energy_kwh"] == 0


def test_ledger_file_round_trip_and_clear_errors(tmp_path):
    path = write_ledger_file(tmp_path / "ledger.json", fixed_day_records())
    again = LedgerFile(path).records(*day_bounds(REPORT_DAY))
    assert again == day_records()
    (tmp_path / "bad.json").write_text(json.dumps([{"key": {}, "operator": "x", "nonsense": 1}]))
    with pytest.raises(LedgerFileError, match=r"bad.json record 0: unknown field\(s\) nonsense"):
        LedgerFile(tmp_path / "bad.json")
    (tmp_path / "naive.jsonl").write_text(
        json.dumps(
            {
                "key": {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1},
                "operator": "decorator",
                "priority_class": "flexible",
                "state": "success",
                "actual": {"zone": "GB", "start": "2026-12-01T01:00:00", "end": "2026-12-01T02:00:00Z"},
            }
        )
    )
    with pytest.raises(LedgerFileError, match=r"naive.jsonl record 0.actual.start: .* has no timezone"):
        LedgerFile(tmp_path / "naive.jsonl")
    with pytest.raises(LedgerFileError, match="cannot read the ledger file"):
        LedgerFile(tmp_path / "missing.json")
    assert DAY.date() == REPORT_DAY


def test_files_are_written_html_last_into_sub_folders(tmp_path):
    files = render_report_files(fixed_report(), draw_charts=lambda r: {"charts/intensity-GB.png": b"png"})
    written = write_report_files(files, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in written][-1] == "report.html"
    assert (tmp_path / "charts" / "intensity-GB.png").read_bytes() == b"png"
    assert {p.relative_to(tmp_path).as_posix() for p in written} == set(files)


def test_busy_zones_draw_merged_windows():
    from airflow_provider_gridaware.reporting.charts import merged_windows

    windows = [(at(3), at(4)), (at(1), at(2)), (at(1.5), at(2.5)), (at(2.5), at(2.75)), (at(5), at(6))]
    assert merged_windows(windows) == [(at(1), at(2.75)), (at(3), at(4)), (at(5), at(6))]
    assert merged_windows([]) == []


def test_without_matplotlib_the_report_is_written_without_charts_and_says_why():
    from airflow_provider_gridaware.reporting.charts import ChartsUnavailableError

    def no_matplotlib(report):
        raise ChartsUnavailableError("the daily report's charts need matplotlib: pip install '...[report]'")

    files = render_report_files(fixed_report(), draw_charts=no_matplotlib)
    assert set(files) == {"report.html", "records.csv", "summary.json"}
    assert "Charts not drawn: the daily report&#x27;s charts need matplotlib" in files["report.html"].decode()
    assert any("Charts not drawn" in note for note in json.loads(files["summary.json"])["data_quality"])


def test_a_busy_zone_charts_how_many_tries_ran():
    from airflow_provider_gridaware.reporting import charts

    assert charts.running_counts([(at(1), at(3)), (at(2), at(4)), (at(3), at(5))]) == (
        [at(1), at(2), at(3), at(4), at(5)],
        [1, 2, 2, 1, 0],
    )
    base = day_records()[0]
    busy = [
        replace(
            base, key=replace(base.key, try_number=i), actual=replace(base.actual, start=at(i / 10), end=at(i / 10 + 1))
        )
        for i in range(1, charts.MAX_DRAWN_WINDOWS + 2)
    ]
    report = build_daily_report(
        REPORT_DAY, busy, curves=[ZoneCurve("GB", "average", half_hourly_actuals("GB", {1: 100}))]
    )
    png = charts.zone_chart_png(report, report.curves[0])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
