"""PNG charts of the daily report: each zone's actual intensity curve with the run windows drawn on it.

matplotlib (the ``[report]`` extra) is imported only here, only when a chart is drawn, with the Agg
backend (no display; safe in a worker).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.reporting.daily import DailyReport, ZoneCurve

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord

RUN_COLOUR = "#2a9d8f"
COUNTERFACTUAL_COLOUR = "#e76f51"
CURVE_COLOUR = "#264653"
#: more runs than this in one zone: no per-run labels (they would overlap).
MAX_LABELLED_RUNS = 10
#: more windows than this in one zone: draw how many tries were running over time instead of each window.
MAX_DRAWN_WINDOWS = 60


class ChartsUnavailableError(RuntimeError):
    """matplotlib is not installed: install the provider's ``[report]`` extra."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ChartsUnavailableError(
            "the daily report's charts need matplotlib: pip install 'airflow-provider-gridaware[report]'"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def chart_file_name(zone: str) -> str:
    """The chart's file name for ``zone`` (safe in a URL and on any file system)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in zone)
    return f"charts/intensity-{safe}.png"


def zone_chart_png(report: DailyReport, curve: ZoneCurve) -> bytes:
    """One zone's chart: the actual intensity over the day, the runs in it shaded, the counterfactual
    windows of tries whose home zone it is outlined.

    :param report: the report (its records give the windows).
    :param curve: the zone's curve.
    """
    plt = _pyplot()
    import matplotlib.dates as mdates

    since, until = report.since, report.until
    runs = [r for r in report.records if r.actual.zone == curve.zone]
    homes = [r for r in report.records if r.counterfactual is not None and r.counterfactual.zone == curve.zone]
    figure, axes = plt.subplots(figsize=(10, 3.8), dpi=100)
    try:
        if curve.series is not None and curve.series.points:
            xs: list[datetime] = []
            ys: list[float] = []
            for point in curve.series.points:
                if xs and point.start > xs[-1]:  # a gap: break the line instead of drawing across it
                    xs.append(xs[-1])
                    ys.append(math.nan)
                xs += [point.start, point.end]
                ys += [point.value, point.value]
            axes.plot(
                xs, ys, color=CURVE_COLOUR, linewidth=1.6, label=f"actual {curve.kind} intensity ({curve.source})"
            )
            top = max(p.value for p in curve.series.points)
            for index, (gap_start, gap_end) in enumerate(curve.missing_periods(since, until)):
                label = "no actual signal" if index == 0 else None
                axes.axvspan(gap_start, gap_end, color="#bbbbbb", alpha=0.35, linewidth=0, label=label)
        else:
            top = 1.0
            axes.text(0.5, 0.5, f"no actual intensity for {curve.zone}", transform=axes.transAxes, ha="center")
        if len(runs) + len(homes) <= MAX_DRAWN_WINDOWS:
            _draw_windows(axes, runs, homes)
            handles, labels = axes.get_legend_handles_labels()
        else:
            handles, labels = _draw_concurrency(axes, runs, homes)
        axes.set_xlim(since, until)
        axes.set_ylim(0, top * 1.25)  # headroom for the run labels
        axes.set_title(f"{curve.zone}: actual carbon intensity and runs, {report.day.isoformat()} (UTC)", fontsize=11)
        axes.set_ylabel("gCO2e/kWh")
        axes.xaxis.set_major_locator(mdates.HourLocator(interval=3))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        axes.grid(axis="y", color="#dddddd", linewidth=0.6)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        axes.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False, ncol=4)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def merged_windows(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of ``windows`` as disjoint spans, in time order (a busy zone draws a few spans, not thousands)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _draw_windows(axes: Any, runs: list[LedgerRecord], homes: list[LedgerRecord]) -> None:
    from matplotlib.dates import date2num

    for index, (start, end) in enumerate(merged_windows((r.actual.start, r.actual.end) for r in runs)):
        label = "run (actual window)" if index == 0 else None
        axes.axvspan(date2num(start), date2num(end), color=RUN_COLOUR, alpha=0.28, linewidth=0, label=label)
    if len(runs) <= MAX_LABELLED_RUNS:
        for index, record in enumerate(runs):
            axes.annotate(
                record.key.task_id,
                xy=(date2num(record.actual.start), 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -12 - 10 * (index % 3)),
                textcoords="offset points",
                fontsize=7,
                color="#1d6f65",
            )
    counterfactuals = ((r.counterfactual.start, r.counterfactual.end) for r in homes if r.counterfactual is not None)
    for index, (start, end) in enumerate(merged_windows(counterfactuals)):
        axes.axvspan(
            date2num(start),
            date2num(end),
            facecolor="none",
            edgecolor=COUNTERFACTUAL_COLOUR,
            hatch="///",
            linewidth=0.8,
            alpha=0.6,
            label="had it started at once (counterfactual)" if index == 0 else None,
        )


def running_counts(windows: Iterable[tuple[datetime, datetime]]) -> tuple[list[datetime], list[int]]:
    """How many windows are open over time, as a step function: ``counts[i]`` holds from ``times[i]`` on."""
    changes: dict[datetime, int] = {}
    for start, end in windows:
        changes[start] = changes.get(start, 0) + 1
        changes[end] = changes.get(end, 0) - 1
    times, counts, running = [], [], 0
    for when in sorted(changes):
        running += changes[when]
        times.append(when)
        counts.append(running)
    return times, counts


def _draw_concurrency(axes: Any, runs: list[LedgerRecord], homes: list[LedgerRecord]) -> tuple[list[Any], list[str]]:
    """A busy zone: tries running over time (right axis), and as many had they started at once (dashed)."""
    twin = axes.twinx()
    times, counts = running_counts((r.actual.start, r.actual.end) for r in runs)
    if times:
        twin.fill_between(times, counts, step="post", color=RUN_COLOUR, alpha=0.3, linewidth=0, label="tries running")
    cf_times, cf_counts = running_counts(
        (r.counterfactual.start, r.counterfactual.end) for r in homes if r.counterfactual is not None
    )
    if cf_times:
        twin.step(
            cf_times,
            cf_counts,
            where="post",
            color=COUNTERFACTUAL_COLOUR,
            linestyle="--",
            linewidth=1.1,
            label="had they started at once (counterfactual)",
        )
    twin.set_ylim(0, max([*counts, *cf_counts, 1]) * 1.25)
    twin.set_ylabel("tries running")
    twin.spines["top"].set_visible(False)
    axes.set_zorder(twin.get_zorder() + 1)  # the intensity curve over the shading
    axes.patch.set_visible(False)
    handles, labels = axes.get_legend_handles_labels()
    twin_handles, twin_labels = twin.get_legend_handles_labels()
    return [*handles, *twin_handles], [*labels, *twin_labels]


def render_charts(report: DailyReport) -> dict[str, bytes]:
    """Every chart of ``report``: file name (``charts/intensity-<zone>.png``) -> PNG bytes."""
    return {chart_file_name(curve.zone): zone_chart_png(report, curve) for curve in report.curves}
