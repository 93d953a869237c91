"""One UTC day of the carbon ledger, aggregated into the figures the daily report shows.

Every figure is computed here, once, from :class:`~airflow_provider_gridaware.ledger.records.LedgerRecord`
values; rendering (HTML, CSV, JSON) only formats them. Carbon figures are grouped by intensity kind
(``average`` or ``marginal``) and never added across kinds; costs are grouped by currency.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar

from airflow_provider_gridaware.ledger.energy import ESTIMATED_NOTE
from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, ValueBasis
from airflow_provider_gridaware.signals.grid_event import GridEvent
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.times import UTC, current_clock, format_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.reporting.slo import ReportedSlo

#: What "saved" means, stated in every report (HTML, JSON) so the figure can be defended.
SAVINGS_METHOD = (
    "Saved = counterfactual emissions - actual emissions, summed over the tries that have both. The counterfactual "
    "of a try is the same energy drawn had the task started when it was released to wait, in its home zone, priced "
    "with the same signal source and intensity kind as the run that happened. Emissions = energy (kWh, facility side, "
    "PUE applied) x the energy-weighted mean carbon intensity over the run (gCO2e/kWh). Average (location-based) and "
    "marginal intensities answer different questions: their totals are shown apart and never added. Tries without a "
    "counterfactual of the same kind are counted in the totals but not in the savings. Cost saved is computed the "
    "same way from the price signal, per currency."
)
#: How the waiting percentiles are computed, stated in the report.
PERCENTILE_METHOD = "median and p95 by linear interpolation between the closest ranks"

_K = TypeVar("_K", str, tuple[str, str])

#: The finaliser seam: recompute one record from the actual signal series of its zones (zone -> series).
Finaliser = Callable[[LedgerRecord, Mapping[str, SignalSeries]], LedgerRecord]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[00:00, 24:00)`` UTC of ``day``: the runs a report covers started in it."""
    since = datetime.combine(day, time(0), tzinfo=UTC)
    return since, since + timedelta(days=1)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) by linear interpolation between closest ranks (numpy's default method).

    :param values: at least one value.
    :param q: the quantile.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class ZoneCurve:
    """The actual carbon-intensity curve of one zone over the report's day.

    :param zone: the zone.
    :param kind: ``average`` or ``marginal``.
    :param series: the actuals (``None`` when none were found).
    :param source: the source they came from.
    :param note: why there is no curve, or which source was chosen among several.
    """

    zone: str
    kind: str
    series: SignalSeries | None
    source: str = ""
    note: str = ""

    def missing_periods(self, since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
        """The parts of ``[since, until)`` no actual point covers, merged."""
        points = self.series.points if self.series is not None else ()
        gaps: list[tuple[datetime, datetime]] = []
        cursor = since
        for point in points:
            if point.end <= cursor:
                continue
            if point.start >= until:
                break
            if point.start > cursor:
                gaps.append((cursor, point.start))
            cursor = max(cursor, point.end)
        if cursor < until:
            gaps.append((cursor, until))
        return gaps


@dataclass(frozen=True)
class PausedWork:
    """One thing the grid-event response did to work (a pause or a resume), as the report lists it.

    :param at: when it was applied (or asked for, if never applied).
    :param action: ``pause``, ``checkpoint``, ``resume`` ...
    :param target: the work, in words (``kubernetes_job k8s_paris/ml/train-7``, ``dag nightly_export``).
    :param event: the grid event it answered (``source event_id``).
    :param result: how it went (``paused``, ``resumed``, ``failed`` ...).
    :param detail: why, or anything else worth a line (how long the work was held).
    """

    at: datetime
    action: str
    target: str
    event: str
    result: str = ""
    detail: str = ""


@dataclass(frozen=True)
class KindTotals:
    """The day's carbon figures for one intensity kind.

    :param kind: ``average`` or ``marginal``.
    :param tries: tries with emissions of this kind.
    :param energy_kwh: their energy.
    :param emissions_kg: their emissions, kgCO2e.
    :param compared_tries: of these, tries with a counterfactual of the same kind.
    :param compared_actual_kg: the compared tries' actual emissions.
    :param counterfactual_kg: the compared tries' counterfactual emissions.
    """

    kind: str
    tries: int
    energy_kwh: float
    emissions_kg: float
    compared_tries: int
    compared_actual_kg: float
    counterfactual_kg: float

    @property
    def saved_kg(self) -> float:
        return self.counterfactual_kg - self.compared_actual_kg

    @property
    def saved_percent(self) -> float | None:
        """Saved as a share of the compared tries' counterfactual emissions."""
        return 100.0 * self.saved_kg / self.counterfactual_kg if self.counterfactual_kg > 0 else None


@dataclass(frozen=True)
class CostTotals:
    """The day's cost in one currency.

    :param currency: ISO 4217 code.
    :param tries: tries with a cost in it.
    :param cost: their cost.
    :param compared_tries: tries with a counterfactual cost in the same currency.
    :param compared_cost: their actual cost.
    :param counterfactual_cost: their counterfactual cost.
    """

    currency: str
    tries: int
    cost: float
    compared_tries: int
    compared_cost: float
    counterfactual_cost: float

    @property
    def saved(self) -> float:
        return self.counterfactual_cost - self.compared_cost


@dataclass(frozen=True)
class GroupRow:
    """One row of the per-DAG or per-zone table: the tries of one DAG (zone) in one intensity kind.

    :param name: the DAG id or zone.
    :param kind: the intensity kind (``None``: tries without a carbon figure).
    :param tries: tries.
    :param succeeded: of which ended ``success``.
    :param energy_kwh: energy of the tries with a figure (``None``: none has one).
    :param emissions_kg: emissions, kgCO2e.
    :param mean_intensity_g_per_kwh: energy-weighted mean intensity.
    :param saved_kg: saved against the counterfactual (tries with one of the same kind).
    :param costs: cost per currency.
    """

    name: str
    kind: str | None
    tries: int
    succeeded: int
    energy_kwh: float | None
    emissions_kg: float | None
    mean_intensity_g_per_kwh: float | None
    saved_kg: float | None
    costs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WaitingRow:
    """Waiting added to one task's tries by grid-aware scheduling.

    :param dag_id: the DAG.
    :param task_id: the task.
    :param tries: tries that ran.
    :param median_s: median wait.
    :param p95_s: 95th percentile wait.
    :param max_s: longest wait.
    :param deadline_misses: tries that ended after their deadline.
    """

    dag_id: str
    task_id: str
    tries: int
    median_s: float
    p95_s: float
    max_s: float
    deadline_misses: int


@dataclass(frozen=True)
class DailyReport:
    """Everything the daily report shows, computed.

    :param day: the UTC day.
    :param generated_at: when the report was made.
    :param records: the day's records (newest version of each try), in start order.
    :param by_kind: carbon totals per intensity kind.
    :param costs: cost totals per currency.
    :param energy_kwh: energy of every try with an energy figure (kind-independent).
    :param per_dag: the per-DAG table.
    :param per_zone: the per-zone table (zone the try ran in).
    :param waiting: waiting per task.
    :param deadline_misses: tries that ended after their deadline.
    :param curves: each zone's actual signal curve.
    :param events: grid events active during the day (latest state of each).
    :param paused: what the grid-event response did; ``None`` when no response record was given.
    :param quality_notes: data-quality notes, one line each.
    :param slos: the sustainability SLOs, each over its window ending with the day (empty: none configured).
    """

    day: date
    generated_at: datetime
    records: tuple[LedgerRecord, ...]
    by_kind: tuple[KindTotals, ...]
    costs: tuple[CostTotals, ...]
    energy_kwh: float
    per_dag: tuple[GroupRow, ...]
    per_zone: tuple[GroupRow, ...]
    waiting: tuple[WaitingRow, ...]
    deadline_misses: tuple[LedgerRecord, ...]
    curves: tuple[ZoneCurve, ...]
    events: tuple[GridEvent, ...]
    paused: tuple[PausedWork, ...] | None
    quality_notes: tuple[str, ...]
    slos: tuple[ReportedSlo, ...] = ()

    @property
    def empty(self) -> bool:
        """No grid-aware try ran that day."""
        return not self.records

    @property
    def since(self) -> datetime:
        return day_bounds(self.day)[0]

    @property
    def until(self) -> datetime:
        return day_bounds(self.day)[1]

    def headline(self) -> str:
        """The report in one line (log, notification subject)."""
        if self.empty:
            return f"{self.day.isoformat()}: no grid-aware task ran" + self._slo_headline()
        tries = len(self.records)
        unknown = sum(1 for r in self.records if r.actual.energy_kwh is None)
        parts = [f"{tries} {'try' if tries == 1 else 'tries'}"]
        if unknown == tries:
            parts.append("energy unknown (no power source or energy profile declared)")
        else:
            without = f" ({unknown} of {tries} without an energy figure)" if unknown else ""
            parts.append(f"{self.energy_kwh:.1f} kWh{without}")
        for totals in self.by_kind:
            saved = f"{totals.saved_kg:+.2f}".lstrip("+")
            share = f" ({totals.saved_percent:.1f} %)" if totals.saved_percent is not None else ""
            parts.append(f"{totals.emissions_kg:.2f} kgCO2e {totals.kind}, saved {saved} kg{share}")
        for cost in self.costs:
            parts.append(f"cost {cost.cost:.2f} {cost.currency}, saved {cost.saved:.2f}")
        return f"{self.day.isoformat()}: " + "; ".join(parts) + self._slo_headline()

    def _slo_headline(self) -> str:
        breached = [s.status.slo.name for s in self.slos if s.verdict == "breached"]
        return f"; SLO breached: {', '.join(breached)}" if breached else ""


# -- building -------------------------------------------------------------------------------------------
def _kind(record: LedgerRecord) -> str | None:
    """The intensity kind of a record with an emissions figure, else ``None``."""
    actual = record.actual
    if actual.emissions_g is None or actual.intensity_kind is None:
        return None
    return actual.intensity_kind


def _compared_g(record: LedgerRecord) -> tuple[float, float] | None:
    """(actual, counterfactual) emissions in g when both exist and are of the same kind."""
    cf, kind = record.counterfactual, _kind(record)
    if kind is None or cf is None or cf.emissions_g is None or cf.intensity_kind != kind:
        return None
    assert record.actual.emissions_g is not None
    return record.actual.emissions_g, cf.emissions_g


def _compared_cost(record: LedgerRecord) -> tuple[float, float] | None:
    cf, actual = record.counterfactual, record.actual
    if (
        actual.cost is None
        or actual.currency is None
        or cf is None
        or cf.cost is None
        or cf.currency != actual.currency
    ):
        return None
    return actual.cost, cf.cost


def _grouped(
    records: Iterable[LedgerRecord], key: Callable[[LedgerRecord], _K | None]
) -> list[tuple[_K, list[LedgerRecord]]]:
    """Records grouped by ``key`` (``None``: left out), groups in key order."""
    grouped: dict[_K, list[LedgerRecord]] = defaultdict(list)
    for record in records:
        value = key(record)
        if value is not None:
            grouped[value].append(record)
    return sorted(grouped.items())


def _currency(record: LedgerRecord) -> str | None:
    return record.actual.currency if record.actual.cost is not None and record.actual.currency else None


def _compared_groups(
    records: Sequence[LedgerRecord],
    key: Callable[[LedgerRecord], _K | None],
    compare: Callable[[LedgerRecord], tuple[float, float] | None],
) -> list[tuple[_K, list[LedgerRecord], int, float, float]]:
    """The groups of :func:`_grouped`, each with how many of its records ``compare`` pairs and the sums of
    their actual and counterfactual sides."""
    groups = []
    for value, members in _grouped(records, key):
        compared = [pair for pair in map(compare, members) if pair is not None]
        groups.append((value, members, len(compared), sum(a for a, _ in compared), sum(c for _, c in compared)))
    return groups


def _kind_totals(records: Sequence[LedgerRecord]) -> tuple[KindTotals, ...]:
    return tuple(
        KindTotals(
            kind=kind,
            tries=len(members),
            energy_kwh=sum(r.actual.energy_kwh or 0.0 for r in members),
            emissions_kg=sum(r.actual.emissions_g or 0.0 for r in members) / 1000.0,
            compared_tries=compared_tries,
            compared_actual_kg=actual_g / 1000.0,
            counterfactual_kg=counterfactual_g / 1000.0,
        )
        for kind, members, compared_tries, actual_g, counterfactual_g in _compared_groups(records, _kind, _compared_g)
    )


def _cost_totals(records: Sequence[LedgerRecord]) -> tuple[CostTotals, ...]:
    return tuple(
        CostTotals(
            currency=currency,
            tries=len(members),
            cost=sum(r.actual.cost or 0.0 for r in members),
            compared_tries=compared_tries,
            compared_cost=actual_cost,
            counterfactual_cost=counterfactual_cost,
        )
        for currency, members, compared_tries, actual_cost, counterfactual_cost in _compared_groups(
            records, _currency, _compared_cost
        )
    )


def _group_rows(records: Sequence[LedgerRecord], name_of: Callable[[LedgerRecord], str]) -> tuple[GroupRow, ...]:
    rows = []
    for (name, kind), members in _grouped(records, lambda r: (name_of(r), _kind(r) or "")):
        with_energy = [r.actual.energy_kwh for r in members if r.actual.energy_kwh is not None]
        costs: dict[str, float] = defaultdict(float)
        for r in members:
            if r.actual.cost is not None and r.actual.currency:
                costs[r.actual.currency] += r.actual.cost
        emissions_kg = mean = saved = None
        if kind:
            emissions_g = sum(r.actual.emissions_g or 0.0 for r in members)
            energy = sum(r.actual.energy_kwh or 0.0 for r in members)
            emissions_kg = emissions_g / 1000.0
            mean = emissions_g / energy if energy > 0 else None
            compared = [pair for pair in map(_compared_g, members) if pair is not None]
            saved = sum(c - a for a, c in compared) / 1000.0 if compared else None
        rows.append(
            GroupRow(
                name=name,
                kind=kind or None,
                tries=len(members),
                succeeded=sum(1 for r in members if r.state == "success"),
                energy_kwh=sum(with_energy) if with_energy else None,
                emissions_kg=emissions_kg,
                mean_intensity_g_per_kwh=mean,
                saved_kg=saved,
                costs=dict(sorted(costs.items())),
            )
        )
    return tuple(rows)


def _waiting_rows(records: Sequence[LedgerRecord]) -> tuple[WaitingRow, ...]:
    rows = []
    for (dag_id, task_id), members in _grouped(records, lambda r: (r.key.dag_id, r.key.task_id)):
        waits = [max(0.0, r.waited_s) for r in members]
        rows.append(
            WaitingRow(
                dag_id=dag_id,
                task_id=task_id,
                tries=len(members),
                median_s=percentile(waits, 0.5),
                p95_s=percentile(waits, 0.95),
                max_s=max(waits),
                deadline_misses=sum(1 for r in members if r.missed_deadline),
            )
        )
    return tuple(rows)


def _tries(count: int) -> str:
    return f"{count} {'try' if count == 1 else 'tries'}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _quality_notes(
    records: Sequence[LedgerRecord], curves: Sequence[ZoneCurve], since: datetime, until: datetime
) -> list[str]:
    notes: list[str] = []
    total = len(records)
    methods = Counter(r.energy_method for r in records)
    if methods[EnergyMethod.ESTIMATED]:
        notes.append(
            f"Energy estimated from a declared profile (GPU model and count, utilisation, PUE), not measured, for "
            f"{methods[EnergyMethod.ESTIMATED]} of {_tries(total)}."
        )
    if methods[EnergyMethod.UNKNOWN]:
        notes.append(
            f"No energy figure (no power source and no profile) for {methods[EnergyMethod.UNKNOWN]} of "
            f"{_tries(total)}: left out of energy, emissions and cost."
        )
    bases = Counter(r.basis for r in records)
    if bases[ValueBasis.FORECAST] or bases[ValueBasis.MIXED]:
        notes.append(
            f"Figures still based on forecasts for {bases[ValueBasis.FORECAST]} and partly on forecasts for "
            f"{bases[ValueBasis.MIXED]} of {_tries(total)} (actuals had not arrived when they were finalised)."
        )
    if bases[ValueBasis.NONE]:
        notes.append(f"No signal covered the run of {bases[ValueBasis.NONE]} of {_tries(total)}.")
    unfinalised = sum(1 for r in records if not r.finalised)
    if unfinalised:
        notes.append(f"{unfinalised} of {_tries(total)} not finalised with actuals.")
    with_emissions = [r for r in records if _kind(r) is not None]
    uncompared = sum(1 for r in with_emissions if _compared_g(r) is None)
    if uncompared:
        notes.append(
            f"{uncompared} of {_tries(len(with_emissions))} with emissions have no counterfactual of the same "
            "intensity kind: counted in the totals, not in the savings."
        )
    kinds = {_kind(r) for r in with_emissions}
    if len(kinds) > 1:
        notes.append("Both average and marginal intensities appear: their totals are shown apart and never added.")
    no_price = sum(1 for r in records if r.actual.energy_kwh is not None and r.actual.cost is None)
    if no_price:
        notes.append(f"No price signal for {no_price} of {_tries(total)}: no cost figure.")
    for curve in curves:
        if curve.series is None or not curve.series.points:
            notes.append(
                f"{curve.zone}: no actual {curve.kind} intensity for the day ({curve.note or 'none archived'})."
            )
            continue
        gaps = curve.missing_periods(since, until)
        missing_s = sum((end - start).total_seconds() for start, end in gaps)
        if missing_s:
            spans = ", ".join(f"{format_time(a)[11:16]}-{format_time(b)[11:16]}" for a, b in gaps[:6])
            more = f" and {len(gaps) - 6} more" if len(gaps) > 6 else ""
            notes.append(
                f"{curve.zone}: actual {curve.kind} intensity missing for {_hours(missing_s)} ({spans}{more} UTC)."
            )
        if curve.note:
            notes.append(f"{curve.zone}: {curve.note}")
    own = Counter(note for r in records for note in r.notes if note != ESTIMATED_NOTE)  # summarised above
    for note, count in sorted(own.items(), key=lambda item: (-item[1], item[0])):
        notes.append(f"{note} ({_tries(count)})")
    return notes


def events_of_day(events: Iterable[GridEvent], since: datetime, until: datetime) -> list[GridEvent]:
    """The events (latest states) that overlap ``[since, until)``, or that arrived then without intervals."""
    kept = []
    for event in events:
        start, end = event.start, event.end
        if start is not None and end is not None:
            if start < until and end > since:
                kept.append(event)
        elif since <= event.received_at < until:
            kept.append(event)
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(kept, key=lambda e: (e.start or far_future, e.source, e.event_id))


def build_daily_report(
    day: date,
    records: Iterable[LedgerRecord],
    *,
    curves: Sequence[ZoneCurve] = (),
    events: Iterable[GridEvent] = (),
    paused: Sequence[PausedWork] | None = None,
    extra_notes: Sequence[str] = (),
    generated_at: datetime | None = None,
    slos: Sequence[ReportedSlo] = (),
) -> DailyReport:
    """Aggregate one day's records into a :class:`DailyReport`.

    :param day: the UTC day.
    :param records: the day's records (newest version of each try; those not started that day are ignored).
    :param curves: each zone's actual intensity curve for the day.
    :param events: grid events (latest states); those overlapping the day are kept.
    :param paused: what the grid-event response did that day; ``None`` if no response record is available.
    :param extra_notes: data-quality notes from the caller (finalising, fetching actuals).
    :param generated_at: when (default: now, on the provider's clock); a day not over yet is checked for
        missing signal periods only up to then.
    :param slos: the sustainability SLOs measured for the day (:func:`~airflow_provider_gridaware.reporting.slo.measure_slos`).
    """
    since, until = day_bounds(day)
    generated = generated_at or current_clock().now()
    kept = tuple(sorted((r for r in records if since <= r.actual.start < until), key=lambda r: r.actual.start))
    return DailyReport(
        day=day,
        generated_at=generated,
        records=kept,
        by_kind=_kind_totals(kept),
        costs=_cost_totals(kept),
        energy_kwh=sum(r.actual.energy_kwh or 0.0 for r in kept),
        per_dag=_group_rows(kept, lambda r: r.key.dag_id),
        per_zone=_group_rows(kept, lambda r: r.actual.zone),
        waiting=_waiting_rows(kept),
        deadline_misses=tuple(r for r in kept if r.missed_deadline),
        curves=tuple(curves),
        events=tuple(events_of_day(events, since, until)),
        paused=tuple(sorted(paused, key=lambda p: p.at)) if paused is not None else None,
        quality_notes=(
            *extra_notes,
            *(_quality_notes(kept, curves, since, max(since, min(until, generated))) if kept else ()),
        ),
        slos=tuple(slos),
    )


def finalise_records(
    records: Sequence[LedgerRecord], curves: Sequence[ZoneCurve], finaliser: Finaliser
) -> tuple[list[LedgerRecord], list[str]]:
    """Recompute every record not yet finalised from the actual curves of its zones (run and home zone).

    A record whose finalising fails is kept as it was, and the failure becomes a data-quality note.

    :param records: the day's records.
    :param curves: the zones' actual curves.
    :param finaliser: ``finaliser(record, {zone: actual series})`` returns the finalised record.
    :returns: the records (finalised where possible) and notes on those that could not be.
    """
    actuals = {c.zone: c.series for c in curves if c.series is not None and c.series.points}
    out: list[LedgerRecord] = []
    notes: list[str] = []
    for record in records:
        if record.finalised:
            out.append(record)
            continue
        zones = {record.actual.zone} | ({record.counterfactual.zone} if record.counterfactual else set())
        available = {zone: actuals[zone] for zone in sorted(zones) if zone in actuals}
        key = record.key
        name = f"{key.dag_id}.{key.task_id} run {key.run_id} try {key.try_number}"
        if not available:
            notes.append(f"{name}: not finalised, no actuals for {', '.join(sorted(zones))}.")
            out.append(record)
            continue
        try:
            out.append(finaliser(record, available))
        except Exception as exc:  # one bad record must not lose the day's report
            notes.append(f"{name}: finalising failed ({type(exc).__name__}: {exc}); figures as written.")
            out.append(record)
    return out, notes
