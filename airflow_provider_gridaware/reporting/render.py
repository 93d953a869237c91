"""The daily report's files: ``report.html`` (charts under ``charts/``), ``records.csv`` and ``summary.json``.

:func:`render_report_files` makes them all as bytes, keyed by relative file name; the operator and
``gridaware report`` write the same dict, so their output is the same.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any, Protocol

from airflow_provider_gridaware.ledger.records import LedgerRecord
from airflow_provider_gridaware.ledger.slo import SloMetric
from airflow_provider_gridaware.reporting.daily import (
    PERCENTILE_METHOD,
    SAVINGS_METHOD,
    DailyReport,
    GroupRow,
)
from airflow_provider_gridaware.reporting.slo import ReportedSlo
from airflow_provider_gridaware.times import format_time

log = logging.getLogger(__name__)

HTML_FILE = "report.html"
CSV_FILE = "records.csv"
JSON_FILE = "summary.json"
#: bump when a field of summary.json changes meaning or goes away.
SUMMARY_VERSION = 1

CSV_COLUMNS = (
    "dag_id", "run_id", "task_id", "map_index", "try_number", "operator", "priority_class", "state", "placement",
    "zone", "start", "end", "energy_kwh", "energy_method", "energy_source", "intensity_kind", "intensity_g_per_kwh",
    "emissions_g", "price_per_mwh", "currency", "cost",
    "counterfactual_zone", "counterfactual_start", "counterfactual_end", "counterfactual_intensity_kind",
    "counterfactual_intensity_g_per_kwh", "counterfactual_emissions_g", "counterfactual_price_per_mwh",
    "counterfactual_cost", "saved_g", "saved_cost", "waited_s", "deadline", "missed_deadline",
    "planned_start", "planned_end", "reason", "signal_source", "basis", "finalised", "notes", "recorded_at",
)  # fmt: skip


def _t(value: Any) -> str:
    return format_time(value) if value is not None else ""


def _csv_row(r: LedgerRecord) -> list[Any]:
    a, cf = r.actual, r.counterfactual

    def cf_value(name: str) -> Any:
        value = getattr(cf, name) if cf is not None else None
        return _t(value) if name in ("start", "end") else value

    row = [
        r.key.dag_id, r.key.run_id, r.key.task_id, r.key.map_index, r.key.try_number, r.operator, r.priority_class,
        r.state, r.placement, a.zone, _t(a.start), _t(a.end), a.energy_kwh, r.energy_method.value, r.energy_source,
        a.intensity_kind, a.intensity_g_per_kwh, a.emissions_g, a.price_per_mwh, a.currency, a.cost,
        cf_value("zone"), cf_value("start"), cf_value("end"), cf_value("intensity_kind"),
        cf_value("intensity_g_per_kwh"), cf_value("emissions_g"), cf_value("price_per_mwh"), cf_value("cost"),
        r.saved_g, r.saved_cost, r.waited_s, _t(r.deadline), r.missed_deadline, _t(r.planned_start),
        _t(r.planned_end), r.reason, r.signal_source, r.basis.value, r.finalised, "; ".join(r.notes),
        _t(r.recorded_at),
    ]  # fmt: skip
    return ["" if value is None else value for value in row]


def records_csv(report: DailyReport) -> bytes:
    """One row per try (``CSV_COLUMNS``); the header alone on an empty day."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(r) for r in report.records)
    return buffer.getvalue().encode("utf-8")


def _group_dict(row: GroupRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "intensity_kind": row.kind,
        "tries": row.tries,
        "succeeded": row.succeeded,
        "energy_kwh": row.energy_kwh,
        "emissions_kg": row.emissions_kg,
        "mean_intensity_g_per_kwh": row.mean_intensity_g_per_kwh,
        "saved_kg": row.saved_kg,
        "costs": row.costs,
    }


def summary_dict(report: DailyReport, files: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON summary: every figure of the report, machine-readable.

    :param report: the report.
    :param files: the report's file names (listed in the summary).
    """
    return {
        "version": SUMMARY_VERSION,
        "day": report.day.isoformat(),
        "timezone": "UTC",
        "since": format_time(report.since),
        "until": format_time(report.until),
        "generated_at": format_time(report.generated_at),
        "headline": report.headline(),
        "tries": len(report.records),
        "empty": report.empty,
        "energy_kwh": report.energy_kwh,
        "carbon": [
            {
                "intensity_kind": t.kind,
                "tries": t.tries,
                "energy_kwh": t.energy_kwh,
                "emissions_kg": t.emissions_kg,
                "compared_tries": t.compared_tries,
                "compared_actual_kg": t.compared_actual_kg,
                "counterfactual_kg": t.counterfactual_kg,
                "saved_kg": t.saved_kg,
                "saved_percent": t.saved_percent,
            }
            for t in report.by_kind
        ],
        "cost": [
            {
                "currency": c.currency,
                "tries": c.tries,
                "cost": c.cost,
                "compared_tries": c.compared_tries,
                "compared_cost": c.compared_cost,
                "counterfactual_cost": c.counterfactual_cost,
                "saved": c.saved,
            }
            for c in report.costs
        ],
        "savings_method": SAVINGS_METHOD,
        "per_dag": [_group_dict(row) for row in report.per_dag],
        "per_zone": [_group_dict(row) for row in report.per_zone],
        "waiting": {
            "method": PERCENTILE_METHOD,
            "tasks": [
                {
                    "dag_id": w.dag_id,
                    "task_id": w.task_id,
                    "tries": w.tries,
                    "median_s": w.median_s,
                    "p95_s": w.p95_s,
                    "max_s": w.max_s,
                    "deadline_misses": w.deadline_misses,
                }
                for w in report.waiting
            ],
        },
        "deadline_misses": [
            {
                "dag_id": r.key.dag_id,
                "run_id": r.key.run_id,
                "task_id": r.key.task_id,
                "map_index": r.key.map_index,
                "try_number": r.key.try_number,
                "deadline": _t(r.deadline),
                "end": _t(r.actual.end),
                "late_s": (r.actual.end - r.deadline).total_seconds() if r.deadline else None,
            }
            for r in report.deadline_misses
        ],
        "grid_events": [
            {
                "source": e.source,
                "event_id": e.event_id,
                "modification_number": e.modification_number,
                "program": e.program,
                "status": e.status.value,
                "start": _t(e.start),
                "end": _t(e.end),
                "signals": [s.kind.value for s in e.signals],
                "test_event": e.test_event,
            }
            for e in report.events
        ],
        "paused": None
        if report.paused is None
        else [
            {
                "at": _t(p.at),
                "action": p.action,
                "target": p.target,
                "event": p.event,
                "result": p.result,
                "detail": p.detail,
            }
            for p in report.paused
        ],
        "curves": [
            {
                "zone": c.zone,
                "intensity_kind": c.kind,
                "source": c.source,
                "points": len(c.series.points) if c.series is not None else 0,
                "missing_s": sum((b - a).total_seconds() for a, b in c.missing_periods(report.since, report.until)),
                "note": c.note,
            }
            for c in report.curves
        ],
        "slos": [s.to_json() for s in report.slos],
        "data_quality": list(report.quality_notes),
        "files": sorted(files),
    }


# -- HTML ------------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1040px;
color:#1f2933;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #d9e2ec;padding-bottom:.2em}
.sub{color:#52606d;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid #d9e2ec;border-radius:8px;padding:10px 16px;min-width:170px;background:#f8fafc}
.card .v{font-size:1.5em;font-weight:600}.card .l{color:#52606d;font-size:.85em}.good{color:#1d7a4d}.bad{color:#b42318}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:8px 0}th,td{padding:4px 8px;border-bottom:1px solid #e4e7eb;
text-align:right}th{background:#f0f4f8}td.t,th.t{text-align:left}.method{background:#f8fafc;border-left:3px solid #9fb3c8;
padding:8px 12px;font-size:.88em;color:#334e68}img{max-width:100%;border:1px solid #e4e7eb;margin:6px 0}
ul.notes li{margin:2px 0}.empty{font-size:1.2em;padding:16px;background:#f8fafc;border-radius:8px}
footer{margin-top:2em;color:#7b8794;font-size:.8em}
"""


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _dur(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], text_columns: int = 1) -> str:
    def cells(values: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="t">{v}</{tag}>' if i < text_columns else f"<{tag}>{v}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table><thead><tr>{cells(headers, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def _costs(costs: dict[str, float]) -> str:
    return ", ".join(f"{v:,.2f} {escape(c)}" for c, v in costs.items()) or "-"


def _group_table(rows: Sequence[GroupRow], first: str) -> str:
    return _table(
        [first, "intensity", "tries (ok)", "energy kWh", "kgCO2e", "mean gCO2e/kWh", "saved kgCO2e", "cost"],
        (
            [
                escape(r.name),
                escape(r.kind or "none"),
                f"{r.tries} ({r.succeeded})",
                _num(r.energy_kwh),
                _num(r.emissions_kg, 3),
                _num(r.mean_intensity_g_per_kwh, 0),
                _num(r.saved_kg, 3),
                _costs(r.costs),
            ]
            for r in rows
        ),
        text_columns=2,
    )


def _card(value: str, label: str, css: str = "") -> str:
    return f'<div class="card"><div class="v {css}">{value}</div><div class="l">{label}</div></div>'


def _totals_html(report: DailyReport) -> str:
    cards = [_card(f"{len(report.records)}", "tries ran"), _card(_num(report.energy_kwh, 1), "kWh (all tries)")]
    for t in report.by_kind:
        cards.append(_card(_num(t.emissions_kg, 2), f"kgCO2e ({escape(t.kind)} intensity)"))
        share = f" ({t.saved_percent:.1f} %)" if t.saved_percent is not None else ""
        css = "good" if t.saved_kg >= 0 else "bad"
        cards.append(_card(f"{_num(t.saved_kg, 2)}{share}", f"kgCO2e saved ({escape(t.kind)})", css))
    for c in report.costs:
        cards.append(_card(f"{_num(c.cost)} {escape(c.currency)}", "cost"))
        cards.append(_card(f"{_num(c.saved)} {escape(c.currency)}", "cost saved", "good" if c.saved >= 0 else "bad"))
    misses = len(report.deadline_misses)
    cards.append(_card(str(misses), "deadline misses", "good" if misses == 0 else "bad"))
    carbon = _table(
        [
            "intensity",
            "tries",
            "energy kWh",
            "kgCO2e",
            "compared tries",
            "counterfactual kgCO2e",
            "saved kgCO2e",
            "saved %",
        ],
        (
            [
                escape(t.kind),
                str(t.tries),
                _num(t.energy_kwh),
                _num(t.emissions_kg, 3),
                str(t.compared_tries),
                _num(t.counterfactual_kg, 3),
                _num(t.saved_kg, 3),
                _num(t.saved_percent, 1),
            ]
            for t in report.by_kind
        ),
    )
    cost = (
        _table(
            ["currency", "tries", "cost", "compared tries", "counterfactual cost", "saved"],
            (
                [
                    escape(c.currency),
                    str(c.tries),
                    _num(c.cost),
                    str(c.compared_tries),
                    _num(c.counterfactual_cost),
                    _num(c.saved),
                ]
                for c in report.costs
            ),
        )
        if report.costs
        else "<p>No price signal was configured for these tries: no cost figures.</p>"
    )
    return (
        f'<div class="cards">{"".join(cards)}</div><h2>Totals and savings</h2>{carbon}{cost}'
        f'<p class="method"><b>Method.</b> {escape(SAVINGS_METHOD)}</p>'
    )


def _waiting_html(report: DailyReport) -> str:
    table = _table(
        ["DAG", "task", "tries", "median wait", "p95 wait", "longest", "deadline misses"],
        (
            [
                escape(w.dag_id),
                escape(w.task_id),
                str(w.tries),
                _dur(w.median_s),
                _dur(w.p95_s),
                _dur(w.max_s),
                str(w.deadline_misses),
            ]
            for w in report.waiting
        ),
        text_columns=2,
    )
    if report.deadline_misses:
        misses = _table(
            ["DAG", "task", "run", "try", "deadline", "ended", "late by"],
            (
                [
                    escape(r.key.dag_id),
                    escape(r.key.task_id),
                    escape(r.key.run_id),
                    str(r.key.try_number),
                    _t(r.deadline),
                    _t(r.actual.end),
                    _dur((r.actual.end - r.deadline).total_seconds()) if r.deadline else "-",
                ]
                for r in report.deadline_misses
            ),
            text_columns=3,
        )
        count = len(report.deadline_misses)
        verdict = (
            f'<p class="bad"><b>{count} {"try" if count == 1 else "tries"} ended after the deadline:</b></p>{misses}'
        )
    else:
        verdict = '<p class="good">No deadline was missed.</p>'
    return f"<h2>Waiting added per task</h2><p>Waiting: {PERCENTILE_METHOD}.</p>{table}{verdict}"


def _events_html(report: DailyReport) -> str:
    if report.events:
        events = _table(
            ["source", "event", "status at the end of the day", "start", "end", "signals"],
            (
                [
                    escape(e.source),
                    escape(e.event_id + (" (test)" if e.test_event else "")),
                    escape(e.status_at(report.until).value),
                    _t(e.start),
                    _t(e.end),
                    escape(", ".join(s.kind.value for s in e.signals) or "-"),
                ]
                for e in report.events
            ),
            text_columns=3,
        )
    else:
        events = "<p>No grid event was in force this day.</p>"
    if report.paused is None:
        paused = "<p>No record of grid-event responses was given to this report: what was paused is not shown.</p>"
    elif not report.paused:
        paused = "<p>Nothing was paused, checkpointed or resumed for a grid event.</p>"
    else:
        paused = _table(
            ["at", "action", "work", "grid event", "result", "detail"],
            (
                [_t(p.at), escape(p.action), escape(p.target), escape(p.event), escape(p.result), escape(p.detail)]
                for p in report.paused
            ),
            text_columns=6,
        )
    return f"<h2>Grid events</h2>{events}<h3>Paused for grid events</h3>{paused}"


def _slo_value(reported: ReportedSlo, value: float | None) -> str:
    if value is None:
        return "-"
    metric = reported.status.slo.metric
    if metric is SloMetric.CLEAN_SHARE:
        return f"{value:.0%}"
    if metric is SloMetric.KG_PER_MONTH:
        return f"{value:,.1f} kgCO2e / 30 days"
    return f"{value:,.0f} gCO2e/kWh"


def _slos_html(report: DailyReport) -> str:
    if not report.slos:
        return (
            "<h2>Sustainability SLOs</h2><p>No sustainability SLO was given to this report "
            "(<code>[gridaware] slos</code>, or the operator's <code>slos</code>).</p>"
        )
    rows = []
    for r in report.slos:
        slo, status = r.status.slo, r.status
        bound = "at least" if slo.metric.at_least else "at most"
        css = {"met": "good", "breached": "bad"}.get(r.verdict, "")
        covers = ", ".join([*slo.dag_ids, *(f"tag {t}" for t in slo.tags)])
        rows.append(
            [
                f'{escape(slo.name)}<div class="l">{escape(covers)}</div>',
                escape(slo.metric.value),
                f"{bound} {_slo_value(r, slo.target)}",
                _slo_value(r, status.value),
                f"{_t(r.since)[:10]} to {_t(r.until)[:10]}",
                str(status.runs),
                f'<b class="{css}">{escape(r.verdict)}</b>',
            ]
        )
    table = _table(["SLO", "metric", "target", "measured", "window (UTC)", "runs", "status"], rows, text_columns=2)
    sentences = "".join(f"<li>{escape(r.describe())}</li>" for r in report.slos)
    kinds = sorted({r.status.slo.intensity_kind for r in report.slos})
    return (
        f'<h2>Sustainability SLOs</h2>{table}<ul class="notes">{sentences}</ul>'
        f"<p>Each SLO is measured over its own window, ending with this day, from the ledger's "
        f"{escape(' and '.join(kinds))} intensities (never mixed); the day's tries count as finalised here.</p>"
    )


def _notes_html(notes: Sequence[str]) -> str:
    if not notes:
        return "<h2>Data quality</h2><p>Nothing to note: every figure is measured and finalised with actuals.</p>"
    items = "".join(f"<li>{escape(n)}</li>" for n in notes)
    return f'<h2>Data quality</h2><ul class="notes">{items}</ul>'


def report_html(report: DailyReport, charts: Sequence[tuple[str, str]] = ()) -> str:
    """The report page.

    :param report: the report.
    :param charts: ``(relative file name, zone)`` of each chart to show.
    """
    day = report.day.isoformat()
    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Carbon report {day}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>'
        f"<h1>Carbon report, {day}</h1>"
        f'<p class="sub">Grid-aware tasks whose run started {day} 00:00 to 24:00 UTC. Generated '
        f"{_t(report.generated_at.replace(microsecond=0))}.</p>"
    )
    files = (
        f'<p>Files: <a href="{CSV_FILE}">{CSV_FILE}</a> (one row per try), <a href="{JSON_FILE}">{JSON_FILE}</a>.</p>'
    )
    footer = "<footer>airflow-provider-gridaware daily carbon report</footer></body></html>"
    if report.empty:
        body = f'<p class="empty">No grid-aware task ran on {day}: nothing was scheduled, waited or saved.</p>'
        notes = _notes_html(report.quality_notes) if report.quality_notes else ""
        return head + body + _events_html(report) + _slos_html(report) + notes + files + footer
    figures = "".join(f'<img src="{escape(name)}" alt="carbon intensity in {escape(zone)}">' for name, zone in charts)
    sections = [
        _totals_html(report),
        "<h2>Per DAG</h2>" + _group_table(report.per_dag, "DAG"),
        "<h2>Per zone (where the tries ran)</h2>" + _group_table(report.per_zone, "zone"),
        "<h2>Signal curves and run windows</h2>"
        + (figures or "<p>No chart (see data quality).</p>")
        + "<p>Shaded: when tries ran. Hatched: when they would have run had they started at once (home zone). "
        "Grey: no actual signal.</p>",
        _waiting_html(report),
        _slos_html(report),
        _events_html(report),
        _notes_html(report.quality_notes),
        files,
    ]
    return head + "".join(sections) + footer


def render_report_files(
    report: DailyReport, *, draw_charts: Callable[[DailyReport], dict[str, bytes]] | None = None
) -> dict[str, bytes]:
    """All the report's files: relative name -> bytes.

    :param report: the report.
    :param draw_charts: the chart renderer (default :func:`~airflow_provider_gridaware.reporting.charts.render_charts`).
        Without matplotlib the report is written without charts and says why.
    """
    from airflow_provider_gridaware.reporting.charts import ChartsUnavailableError, chart_file_name, render_charts

    charts: dict[str, bytes] = {}
    if not report.empty:
        try:
            charts = (draw_charts or render_charts)(report)
        except ChartsUnavailableError as exc:
            log.warning("Daily report %s without charts: %s", report.day, exc)
            from dataclasses import replace

            report = replace(report, quality_notes=(*report.quality_notes, f"Charts not drawn: {exc}."))
    shown = [(chart_file_name(c.zone), c.zone) for c in report.curves if chart_file_name(c.zone) in charts]
    files: dict[str, bytes] = {HTML_FILE: report_html(report, shown).encode("utf-8"), CSV_FILE: records_csv(report)}
    files.update(charts)
    files[JSON_FILE] = (json.dumps(summary_dict(report, [*files, JSON_FILE]), indent=2) + "\n").encode("utf-8")
    return files


class WritableDirectory(Protocol):
    """What :func:`write_report_files` writes into: a :class:`pathlib.Path` or an Airflow ``ObjectStoragePath``."""

    def __truediv__(self, name: str) -> Any: ...


def write_report_files(files: Mapping[str, bytes], directory: WritableDirectory) -> list[Any]:
    """Write ``files`` (relative name -> bytes) under ``directory``, creating sub-folders; the HTML last, so a
    reader never finds a page whose charts are not there yet.

    :param files: what :func:`render_report_files` made.
    :param directory: a local ``Path`` or an ``ObjectStoragePath`` (``file://``, ``s3://``, ``gs://`` ...).
    :returns: the paths written.
    """
    written = []
    for name in sorted(files, key=lambda n: (n == HTML_FILE, n)):
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        written.append(path)
    return written
