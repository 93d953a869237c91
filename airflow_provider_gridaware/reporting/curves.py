"""Each zone's actual carbon-intensity curve for a report's day, read from the forecast archive.

The hooks record every actual they return in the archive (``hooks/store.py``), so the archive is where a
day's actuals are; the report operator can fetch them through a hook first (which archives them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from airflow_provider_gridaware.ledger.records import LedgerRecord
from airflow_provider_gridaware.reporting.daily import ZoneCurve, day_bounds
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.signals.units import CarbonMetric, SignalKind

if TYPE_CHECKING:
    from airflow_provider_gridaware.store.archive import ForecastArchive

DEFAULT_KIND = CarbonMetric.AVERAGE.value


def source_names(signal_source: str) -> list[str]:
    """The source names in a record's ``signal_source`` (``"ukci:GB, watttime:CAISO_NORTH"`` -> ukci, watttime)."""
    return [part.strip().split(":", 1)[0] for part in signal_source.split(",") if part.strip()]


def report_zones(records: Sequence[LedgerRecord]) -> dict[str, tuple[str, list[str]]]:
    """Zone -> (intensity kind, preferred sources) for every zone a try ran in or would have run in.

    :param records: the day's records.
    """
    zones: dict[str, tuple[str, list[str]]] = {}
    for record in records:
        for figures in (record.actual, record.counterfactual):
            if figures is None:
                continue
            kind, sources = zones.get(figures.zone, (None, []))
            kind = kind or figures.intensity_kind or record.actual.intensity_kind
            sources = sources + [s for s in source_names(record.signal_source) if s not in sources]
            zones[figures.zone] = (kind or "", sources)
    return {zone: (kind or DEFAULT_KIND, sources) for zone, (kind, sources) in sorted(zones.items())}


def load_actual_curves(
    archive: ForecastArchive | None,
    records: Sequence[LedgerRecord],
    day: date,
    *,
    fetched: Mapping[str, SignalSeries] | None = None,
) -> list[ZoneCurve]:
    """The actual intensity curve of every zone of ``records`` over ``day``.

    :param archive: the forecast archive (``None``: only ``fetched`` is used).
    :param records: the day's records (their zones, kinds and signal sources choose the curves).
    :param day: the UTC day.
    :param fetched: zone -> actuals already fetched (through a hook); used before the archive.
    """
    since, until = day_bounds(day)
    curves = []
    for zone, (kind, preferred) in report_zones(records).items():
        given = (fetched or {}).get(zone)
        if given is not None and given.points and given.metric is not None and given.metric.value == kind:
            curves.append(ZoneCurve(zone, kind, given.between(since, until), given.source))
            continue
        if archive is None:
            curves.append(ZoneCurve(zone, kind, None, note="no forecast archive to read actuals from"))
            continue
        curves.append(_archived_curve(archive, zone, kind, preferred, since, until))
    return curves


def _archived_curve(
    archive: ForecastArchive, zone: str, kind: str, preferred: list[str], since: datetime, until: datetime
) -> ZoneCurve:
    candidates = [
        info
        for info in archive.signals(zone=zone, kind=SignalKind.CARBON_INTENSITY)
        if info.metric is not None and info.metric.value == kind
    ]
    if not candidates:
        return ZoneCurve(zone, kind, None, note=f"the archive holds no {kind} intensity signal for {zone}")
    chosen = next((c for c in candidates if c.source in preferred), candidates[0])
    note = ""
    if len(candidates) > 1:
        others = ", ".join(c.source for c in candidates if c is not chosen)
        note = f"curve from {chosen.source} (also archived: {others})"
    series = archive.actuals(chosen.source, zone, SignalKind.CARBON_INTENSITY, since, until, metric=chosen.metric)
    if series is None or not series.points:
        return ZoneCurve(zone, kind, None, chosen.source, note=f"no {chosen.source} actuals archived for the day")
    return ZoneCurve(zone, kind, series, chosen.source, note)
