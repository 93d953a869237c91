"""A try's ledger record computed from its run, its power and the grid signals over it (pure).

The carbon intensity over a run is the energy-weighted mean of the signal over the intervals the run
overlaps (time-weighted when the power is constant). Actual values win over forecast values for the same
interval; what was used is the record's ``basis`` (``mixed`` when both). Average and marginal intensity
are never mixed: a record's figures are in the kind of its zone's carbon signal, and the counterfactual
gets emissions only when its zone's signal is of the same kind.

:func:`finalise` recomputes a record's grid figures from actuals that arrived later (the daily report
calls it); the energy stays what was recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_gridaware.ledger.energy import PowerDraw
from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, RunFigures, TryKey, ValueBasis
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.signals.units import SeriesType, SignalKind
from airflow_provider_gridaware.times import format_duration, parse_time

CARBON_UNIT = "gCO2eq/kWh"
#: The source name of the planner's expected values standing in for a forecast (never in the archive).
PLANNER_SOURCE = "planner"
#: A gap in a run's signal coverage shorter than this is not worth a note (rounding at interval edges).
NOTE_GAP_S = 60.0
#: The span a zero-length run's signal values are read over.
INSTANT = timedelta(seconds=1)


@dataclass(frozen=True)
class ZoneSignals:
    """The signals of one zone the ledger computes from: actuals and the forecast, carbon and price.

    :param carbon_actual: measured carbon intensity (gCO2eq/kWh), if any.
    :param carbon_forecast: forecast carbon intensity, if any.
    :param price_actual: settled prices, if any.
    :param price_forecast: forecast or day-ahead prices, if any.
    """

    carbon_actual: SignalSeries | None = None
    carbon_forecast: SignalSeries | None = None
    price_actual: SignalSeries | None = None
    price_forecast: SignalSeries | None = None

    @property
    def source(self) -> str:
        """``source:zone`` of each series, deduplicated (``ukci:GB``)."""
        names: list[str] = []
        for series in (self.carbon_actual, self.carbon_forecast, self.price_actual, self.price_forecast):
            if series is not None and f"{series.source}:{series.zone}" not in names:
                names.append(f"{series.source}:{series.zone}")
        return ", ".join(names)


@dataclass(frozen=True)
class _Piece:
    start: datetime
    end: datetime
    value: float
    actual: bool


def _subtract(
    start: datetime, end: datetime, taken: Sequence[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` minus the (sorted, non-overlapping) ``taken`` intervals."""
    free: list[tuple[datetime, datetime]] = []
    at = start
    for a, b in taken:
        if b <= at or a >= end:
            continue
        if a > at:
            free.append((at, a))
        at = max(at, b)
    if at < end:
        free.append((at, end))
    return free


def _pieces(actual: SignalSeries | None, forecast: SignalSeries | None, start: datetime, end: datetime) -> list[_Piece]:
    """Signal values over ``[start, end)``: actual points, and forecast points where no actual covers."""
    pieces = [
        _Piece(max(p.start, start), min(p.end, end), p.value, True)
        for p in (actual.points if actual is not None else ())
        if p.end > start and p.start < end
    ]
    taken = sorted((p.start, p.end) for p in pieces)
    for point in forecast.points if forecast is not None else ():
        if point.end <= start or point.start >= end:
            continue
        for a, b in _subtract(max(point.start, start), min(point.end, end), taken):
            pieces.append(_Piece(a, b, point.value, False))
    return sorted(pieces, key=lambda p: p.start)


@dataclass(frozen=True)
class _Weighted:
    mean: float | None  # energy-weighted mean over the covered part
    covered: float  # fraction of the run's energy (or time) covered by a value
    actual_share: float  # fraction of the covered part that was actuals
    missing_s: float  # seconds of the run without a value


def _weighted(pieces: Sequence[_Piece], draw: PowerDraw, start: datetime, end: datetime) -> _Weighted:
    segments = draw.segments or ()
    # Without power (energy unknown) weigh by time: the intensity seen is still worth recording.
    weights = [(s.start, s.end, s.watts) for s in segments] if segments else [(start, end, 1.0)]
    total = sum(w * (b - a).total_seconds() for a, b, w in weights)
    weighted_sum = covered = actual = 0.0
    covered_s = 0.0
    for piece in pieces:
        covered_s += (piece.end - piece.start).total_seconds()
        for a, b, watts in weights:
            overlap = (min(b, piece.end) - max(a, piece.start)).total_seconds()
            if overlap > 0:
                weight = watts * overlap
                weighted_sum += weight * piece.value
                covered += weight
                actual += weight if piece.actual else 0.0
    missing = max(0.0, (end - start).total_seconds() - covered_s)
    if covered <= 0:
        return _Weighted(None, 0.0, 0.0, missing)
    return _Weighted(weighted_sum / covered, covered / total if total else 1.0, actual / covered, missing)


def _basis(*shares: float | None) -> ValueBasis:
    known = [s for s in shares if s is not None]
    if not known:
        return ValueBasis.NONE
    if all(s >= 1.0 - 1e-9 for s in known):
        return ValueBasis.ACTUAL
    if all(s <= 1e-9 for s in known):
        return ValueBasis.FORECAST
    return ValueBasis.MIXED


def run_figures(
    zone: str, start: datetime, end: datetime, draw: PowerDraw | None, signals: ZoneSignals | None
) -> tuple[RunFigures, ValueBasis, list[str]]:
    """One run's figures in ``zone`` over ``[start, end)``, with its basis and data-quality notes.

    :param zone: the zone it ran in.
    :param start: run start.
    :param end: run end.
    :param draw: its power, or ``None`` when unknown (intensity and price are still recorded).
    :param signals: the zone's signals, or ``None`` when none could be read.
    """
    original_end = end
    notes: list[str] = []
    signals = signals or ZoneSignals()
    energy = draw.energy_kwh if draw is not None else None
    # Weigh by power where it was drawn over time; a run without (or with an instantaneous) power curve by time.
    timed = draw is not None and any(segment.end > segment.start for segment in draw.segments)
    weight_draw = draw if draw is not None and timed else PowerDraw((), EnergyMethod.UNKNOWN, "")
    # A run too short for its times to differ (Kubernetes stamps whole seconds) takes the values at its start.
    end = end if end > start else start + INSTANT
    intensity = kind = emissions = None
    carbon_share: float | None = None
    carbon = signals.carbon_actual or signals.carbon_forecast
    if carbon is not None and carbon.kind is not SignalKind.CARBON_INTENSITY:
        notes.append(f"{zone}: {carbon.source} gives a {carbon.kind.value}, not an intensity: no emissions")
    elif carbon is not None and carbon.unit != CARBON_UNIT:
        notes.append(f"{zone}: carbon signal in {carbon.unit}, not {CARBON_UNIT}: no emissions")
    elif carbon is not None:
        got = _weighted(_pieces(signals.carbon_actual, signals.carbon_forecast, start, end), weight_draw, start, end)
        if got.mean is not None:
            intensity, kind, carbon_share = got.mean, carbon.metric.value if carbon.metric else None, got.actual_share
            emissions = energy * intensity if energy is not None else None
        if got.missing_s > NOTE_GAP_S:
            notes.append(
                f"{zone}: no carbon value for {format_duration(got.missing_s)} of the run"
                + ("; the mean over the rest is used" if got.mean is not None else "")
            )
    else:
        notes.append(f"{zone}: no carbon signal read for the run")
    price = currency = cost = None
    price_share: float | None = None
    priced = signals.price_actual or signals.price_forecast
    if priced is not None:
        got = _weighted(_pieces(signals.price_actual, signals.price_forecast, start, end), weight_draw, start, end)
        if got.mean is not None:
            price, currency, price_share = got.mean, priced.currency, got.actual_share
            cost = energy / 1000.0 * price if energy is not None else None
        if got.missing_s > NOTE_GAP_S:
            notes.append(f"{zone}: no price for {format_duration(got.missing_s)} of the run")
    figures = RunFigures(
        zone=zone,
        start=start,
        end=max(start, original_end),
        energy_kwh=energy,
        intensity_g_per_kwh=intensity,
        intensity_kind=kind,
        emissions_g=emissions,
        price_per_mwh=price,
        currency=currency,
        cost=cost,
    )
    return figures, _basis(carbon_share, price_share), notes


def _combined_basis(*bases: ValueBasis) -> ValueBasis:
    known = {b for b in bases if b is not ValueBasis.NONE}
    if not known:
        return ValueBasis.NONE
    return known.pop() if len(known) == 1 else ValueBasis.MIXED


@dataclass(frozen=True)
class Released:
    """What a try's release decision says, as the ledger keeps it (from the release payload).

    :param planned_start: the window's start.
    :param planned_end: the window's end.
    :param expected_signals: the planner's expected mean signal per unit.
    :param reason: the decision in plain words.
    :param waited_s: how long the task waited.
    :param waiting_since: when the wait began (the counterfactual's start).
    :param home_zone: the counterfactual's zone.
    :param fallback_notes: fallbacks the decision used.
    """

    planned_start: datetime | None = None
    planned_end: datetime | None = None
    expected_signals: Mapping[str, float] = dataclasses.field(default_factory=dict)
    reason: str = ""
    waited_s: float = 0.0
    waiting_since: datetime | None = None
    home_zone: str | None = None
    fallback_notes: tuple[str, ...] = ()

    @classmethod
    def from_payload(cls, payload: Mapping[str, object] | None) -> Released:
        """Read the release payload of :func:`~airflow_provider_gridaware.planning.decision.release_payload`
        (tolerant: a missing part is left empty, never guessed).

        :param payload: the decision the task was released with.
        """
        if not payload:
            return cls()
        plan = payload.get("plan") if isinstance(payload.get("plan"), Mapping) else {}
        assert isinstance(plan, Mapping)
        chunks = plan.get("chunks") or []
        start = end = None
        if isinstance(chunks, Sequence) and chunks and isinstance(chunks[0], Mapping):
            start = parse_time(str(chunks[0]["start"]), what="plan start")
            last = chunks[-1]
            end = parse_time(str(last["end"]), what="plan end") if isinstance(last, Mapping) else None
        counterfactual = payload.get("counterfactual")
        waiting = payload.get("waiting_since")
        home = None
        if isinstance(counterfactual, Mapping):
            home = str(counterfactual.get("zone")) if counterfactual.get("zone") else None
            waiting = waiting or counterfactual.get("planned_at")
        expected = plan.get("expected_signals") or {}
        notes: list[str] = []
        if payload.get("fallback"):
            notes.append("released by the no-signal fallback")
        problems = payload.get("problems")
        if isinstance(problems, Sequence) and not isinstance(problems, str):
            notes += [f"signal problem at decision: {p}" for p in problems]
        waited = payload.get("waited_seconds")
        return cls(
            planned_start=start,
            planned_end=end,
            expected_signals={str(k): float(v) for k, v in dict(expected).items()}
            if isinstance(expected, Mapping)
            else {},
            reason=str(payload.get("reason") or plan.get("reason") or ""),
            waited_s=float(waited) if isinstance(waited, (int, float)) else 0.0,
            waiting_since=parse_time(str(waiting), what="waiting_since") if waiting else None,
            home_zone=home,
            fallback_notes=tuple(notes),
        )


def build_record(
    key: TryKey,
    *,
    operator: str,
    priority_class: str,
    state: str,
    zone: str,
    start: datetime,
    end: datetime,
    draw: PowerDraw | None,
    signals: Mapping[str, ZoneSignals],
    released: Released,
    placement: str | None = None,
    deadline: datetime | None = None,
    notes: Sequence[str] = (),
    recorded_at: datetime | None = None,
) -> LedgerRecord:
    """One try's record: the run, and the counterfactual start-when-the-wait-began in the home zone.

    :param key: which try.
    :param operator: ``decorator``, ``sensor``, ``kubernetes`` or ``batch``.
    :param priority_class: the task's priority class.
    :param state: the try's final state.
    :param zone: the zone it ran in.
    :param start: when the work started.
    :param end: when it ended.
    :param draw: its power (``None``: unknown, no emissions).
    :param signals: signals per zone (the run's and the home zone).
    :param released: what the release decision said.
    :param placement: the cluster or queue.
    :param deadline: the task's deadline.
    :param notes: notes from the caller (signals that could not be read ...).
    :param recorded_at: when this version is written.
    """
    actual, actual_basis, all_notes = run_figures(zone, start, end, draw, signals.get(zone))
    counterfactual = None
    cf_basis = ValueBasis.NONE
    if released.waiting_since is not None:
        home = released.home_zone or zone
        cf_start = released.waiting_since
        cf_end = cf_start + (end - start)
        cf_draw = _shifted(draw, start, cf_start) if draw is not None else None
        counterfactual, cf_basis, cf_notes = run_figures(home, cf_start, cf_end, cf_draw, signals.get(home))
        all_notes += [f"counterfactual: {n}" for n in cf_notes]
        counterfactual, kind_note = _same_kind(actual, counterfactual)
        if kind_note:
            all_notes.append(kind_note)
    all_notes += list(released.fallback_notes) + list(notes) + (list(draw.notes) if draw is not None else [])
    if draw is None:
        all_notes.append("no power source or profile declared: energy, emissions and cost unknown")
    return LedgerRecord(
        key=key,
        operator=operator,
        priority_class=priority_class,
        state=state,
        actual=actual,
        counterfactual=counterfactual,
        placement=placement,
        planned_start=released.planned_start,
        planned_end=released.planned_end,
        expected_signals=dict(released.expected_signals),
        reason=released.reason,
        waited_s=released.waited_s,
        deadline=deadline,
        energy_method=draw.method if draw is not None else EnergyMethod.UNKNOWN,
        energy_source=draw.source if draw is not None else "",
        signal_source=_sources(signals, zone, counterfactual.zone if counterfactual else None),
        basis=_combined_basis(actual_basis, cf_basis),
        finalised=False,
        notes=tuple(dict.fromkeys(all_notes)),
        recorded_at=recorded_at,
    )


def zone_signals(series: Iterable[SignalSeries]) -> dict[str, ZoneSignals]:
    """Series of any zones, kinds and types sorted into :class:`ZoneSignals` per zone (the last of a slot wins).

    :param series: carbon-intensity and price series, actual or forecast.
    """
    by_zone: dict[str, ZoneSignals] = {}
    for one in series:
        held = by_zone.get(one.zone) or ZoneSignals()
        actual = one.series_type is SeriesType.ACTUAL
        if one.kind is SignalKind.PRICE:
            slot = "price_actual" if actual else "price_forecast"
        else:
            slot = "carbon_actual" if actual else "carbon_forecast"
        by_zone[one.zone] = dataclasses.replace(held, **{slot: one})
    return by_zone


def finalise(
    record: LedgerRecord,
    signals: Mapping[str, ZoneSignals] | Iterable[SignalSeries],
    *,
    recorded_at: datetime | None = None,
) -> LedgerRecord:
    """The record with its grid figures recomputed from ``signals`` (actuals that arrived since).

    The energy stays what was recorded (spread evenly over the run: a measured power curve is not kept).
    ``finalised`` is set when every figure now rests on actuals covering the whole run; otherwise the
    record says what is missing (pass forecasts too, to fill the gaps meanwhile).

    :param record: a stored record.
    :param signals: signals per zone, with actuals for the run's and the counterfactual's periods (or the
        series themselves: see :func:`zone_signals`).
    :param recorded_at: when the finalised version is written.
    """
    if not isinstance(signals, Mapping):
        signals = zone_signals(signals)
    a = record.actual
    draw = None
    if a.energy_kwh is not None:
        draw = PowerDraw.constant(a.start, a.end, a.energy_kwh, record.energy_method, record.energy_source)
    actual, actual_basis, notes = run_figures(a.zone, a.start, a.end, draw, signals.get(a.zone))
    actual, actual_basis = _kept_unless_recomputed(a, actual, actual_basis, record.basis)
    counterfactual = record.counterfactual
    cf_basis = ValueBasis.NONE
    if counterfactual is not None:
        c = counterfactual
        cf_draw = None
        if a.energy_kwh is not None:
            cf_draw = PowerDraw.constant(c.start, c.end, a.energy_kwh, record.energy_method, record.energy_source)
        counterfactual, cf_basis, cf_notes = run_figures(c.zone, c.start, c.end, cf_draw, signals.get(c.zone))
        counterfactual, cf_basis = _kept_unless_recomputed(c, counterfactual, cf_basis, record.basis)
        notes += [f"counterfactual: {n}" for n in cf_notes]
        counterfactual, kind_note = _same_kind(actual, counterfactual)
        if kind_note:
            notes.append(kind_note)
    basis = _combined_basis(actual_basis, cf_basis)
    kept = [n for n in record.notes if not n.startswith(("counterfactual: ", f"{a.zone}: no "))]
    if counterfactual is not None:
        kept = [n for n in kept if not n.startswith(f"{counterfactual.zone}: no ")]
    return dataclasses.replace(
        record,
        actual=actual,
        counterfactual=counterfactual,
        basis=basis,
        finalised=basis is ValueBasis.ACTUAL and not notes,  # every figure on actuals, nothing missing
        signal_source=_sources(signals, a.zone, counterfactual.zone if counterfactual else None)
        or record.signal_source,
        notes=tuple(dict.fromkeys([*kept, *notes])),
        recorded_at=recorded_at,
    )


def _kept_unless_recomputed(
    recorded: RunFigures, recomputed: RunFigures, basis: ValueBasis, recorded_basis: ValueBasis
) -> tuple[RunFigures, ValueBasis]:
    """The recomputed figures, unless the signals given do not cover the run (no intensity where the record
    had one): then the recorded figures stay, so finalising early (before the actuals are in) loses nothing."""
    if recomputed.intensity_g_per_kwh is None and recorded.intensity_g_per_kwh is not None:
        return recorded, ValueBasis.FORECAST if recorded_basis is ValueBasis.ACTUAL else recorded_basis
    return recomputed, basis


def _shifted(draw: PowerDraw, start: datetime, to: datetime) -> PowerDraw:
    """The same power curve, started at ``to`` instead of ``start``."""
    offset: timedelta = to - start
    segments = tuple(dataclasses.replace(s, start=s.start + offset, end=s.end + offset) for s in draw.segments)
    return dataclasses.replace(draw, segments=segments)


def _same_kind(actual: RunFigures, counterfactual: RunFigures) -> tuple[RunFigures, str | None]:
    """The counterfactual without emissions when its intensity is of another kind than the run's."""
    if (
        actual.intensity_kind is not None
        and counterfactual.intensity_kind is not None
        and actual.intensity_kind != counterfactual.intensity_kind
    ):
        note = (
            f"counterfactual zone {counterfactual.zone} has {counterfactual.intensity_kind} intensity, the run "
            f"{actual.intensity_kind}: not compared"
        )
        stripped = dataclasses.replace(counterfactual, emissions_g=None, intensity_g_per_kwh=None, intensity_kind=None)
        return stripped, note
    return counterfactual, None


def _sources(signals: Mapping[str, ZoneSignals], *zones: str | None) -> str:
    names: list[str] = []
    for zone in zones:
        if zone is not None and zone in signals:
            names += [n for n in signals[zone].source.split(", ") if n and n not in names]
    return ", ".join(names)
