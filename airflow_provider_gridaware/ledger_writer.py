"""The carbon ledger seen from a task: write each executed try's record from the try's own end path.

Why our end paths and not an Airflow listener alone (see shared DESIGN.md section 3): a try ended by
``TaskSuccessEvent`` fires no success hook, a SIGKILLed task no failed hook, a deferred try fires
``running`` twice. So the code that knows the run writes its record:

* ``@task.gridaware`` around the callable (success and failure);
* the dispatch operators from their Kubernetes Job's or AWS Batch job's own start and end times;
* ``GridWindowSensor`` when it releases (on a worker, or from the triggerer with ``end_from_trigger``):
  its record is the guarded work's *planned* run (release + duration), on the planner's forecast, to be
  finalised with actuals by the daily report.

Energy is measured when the task names a ``power_conn_id`` (a Prometheus/DCGM query,
:class:`~airflow_provider_gridaware.hooks.power.GridPowerHook`), else estimated from the declared profile
(``gpu_model``, ``gpu_count``, ``gpu_utilisation``, ``power_w``, ``pue``). Grid figures come from the actuals
the task's own signal connections return for the run, and where they have none yet, from the planner's
expected values in the release decision (``basis`` says which).

Writing never fails the task (the work is done): a problem is logged with the try that was lost
(docs/ledger.md says how to find such tries: :meth:`~airflow_provider_gridaware.store.ledger.LedgerStore.keys`
against the REST API's task-instance tries).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.energy import EnergyProfile, PowerDraw
    from airflow_provider_gridaware.ledger.figures import ZoneSignals
    from airflow_provider_gridaware.ledger.records import LedgerRecord, TryKey
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.window import GridWindowArgs

log = logging.getLogger(__name__)

#: Reading the run's actual signals may take at most this long (then the planner's values stand in).
SIGNAL_BUDGET_S = 20.0
#: Actuals are asked for this much beyond the run on both sides (sources answer whole intervals).
QUERY_PAD = timedelta(minutes=30)


@dataclass(frozen=True)
class LedgerSpec:
    """What the ledger needs of a task's arguments, plain enough to travel in a trigger's request.

    :param operator: ``decorator``, ``sensor``, ``kubernetes`` or ``batch``.
    :param priority_class: the task's priority class.
    :param duration_s: the work's declared duration (``None`` for ``duration="auto"``).
    :param deadline: the resolved deadline (ISO 8601), if known.
    :param profile: the energy profile's fields (:class:`~airflow_provider_gridaware.ledger.energy.EnergyProfile`).
    :param power_conn_id: a power connection, if the energy is measured.
    :param sources: the task's signal sources as ``(conn_id, zone, kind)``.
    """

    operator: str
    priority_class: str
    duration_s: float | None = None
    deadline: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    power_conn_id: str | None = None
    sources: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def of(cls, args: GridWindowArgs, *, operator: str, run_start: datetime) -> LedgerSpec:
        """The spec of a task's window arguments.

        :param args: the task's arguments.
        :param operator: what runs the task.
        :param run_start: the DAG run's start (a relative deadline counts from it).
        """
        from airflow_provider_gridaware.times import format_time

        try:
            deadline: str | None = format_time(args.deadline_at(run_start))
        except ValueError:
            deadline = None  # an unrendered template: the record goes without it
        return cls(
            operator=operator,
            priority_class=str(args.priority_class),
            duration_s=args.duration.total_seconds() if isinstance(args.duration, timedelta) else None,
            deadline=deadline,
            profile=asdict(args.energy_profile()),
            power_conn_id=args.power_conn_id,
            sources=tuple((s.conn_id, s.zone, s.kind) for s in args.signal_sources()),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [list(s) for s in self.sources]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerSpec:
        return cls(
            operator=str(data["operator"]),
            priority_class=str(data.get("priority_class") or "flexible"),
            duration_s=None if data.get("duration_s") is None else float(data["duration_s"]),
            deadline=data.get("deadline"),
            profile=dict(data.get("profile") or {}),
            power_conn_id=data.get("power_conn_id"),
            sources=tuple((str(c), str(z), str(k)) for c, z, k in data.get("sources") or ()),
        )

    def energy_profile(self) -> EnergyProfile:
        from airflow_provider_gridaware.ledger.energy import EnergyProfile

        return EnergyProfile(**self.profile)


def try_key(ti: Any) -> TryKey:
    """The ledger key of a task instance (worker's ``RuntimeTaskInstance`` or the triggerer's)."""
    from airflow_provider_gridaware.ledger.records import TryKey

    map_index = getattr(ti, "map_index", -1)
    return TryKey(
        dag_id=str(ti.dag_id),
        run_id=str(ti.run_id),
        task_id=str(ti.task_id),
        map_index=-1 if map_index is None else int(map_index),
        try_number=int(getattr(ti, "try_number", 1) or 1),
    )


# -- writing from a worker ----------------------------------------------------------------------------
def record_try(
    context: Mapping[str, Any],
    spec: LedgerSpec,
    *,
    state: str,
    zone: str | None,
    started_at: datetime,
    ended_at: datetime,
    released: Mapping[str, Any] | None,
    placement: str | None = None,
    running: Sequence[tuple[datetime, datetime]] | None = None,
    logger: Any = None,
) -> LedgerRecord | None:
    """Write the record of the try now ending, after its work ran from ``started_at`` to ``ended_at``.

    Errors are logged, never raised (the work is done; a lost record is found by reconciliation).

    :param context: the task context (its task instance names the try).
    :param spec: the task's ledger spec.
    :param state: the try's final state (``success``, ``failed``).
    :param zone: the zone it ran in (default: the plan's, else the first source's).
    :param started_at: when the work started (the planner's clock).
    :param ended_at: when it ended.
    :param released: the release decision (payload) it ran under.
    :param placement: the cluster or queue.
    :param running: the pieces the work ran in when it paused in between (``None``: all of it); an estimated
        energy counts only these.
    :param logger: where to log (the operator's log).
    :returns: the record written, or ``None`` if none was.
    """
    logger = logger or log
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        logger.debug("no task instance in the context: no ledger record")
        return None
    try:
        from airflow_provider_gridaware.hooks.store import GridStoreHook
        from airflow_provider_gridaware.ledger.figures import Released, build_record

        key = try_key(ti)
        facts = Released.from_payload(released)
        run_zone = zone or _plan_zone(released) or _first_zone(spec)
        notes: list[str] = []
        draw = _power_draw(spec, key, started_at, ended_at, notes, logger, running)
        periods = {run_zone: (started_at, ended_at)}
        if facts.waiting_since is not None:
            home = facts.home_zone or run_zone
            periods.setdefault(home, (facts.waiting_since, facts.waiting_since + (ended_at - started_at)))
            if home == run_zone:  # one fetch covering both runs
                first = min(started_at, facts.waiting_since)
                periods[home] = (first, max(ended_at, facts.waiting_since + (ended_at - started_at)))
        store_url = GridStoreHook().get_url()
        signals = _read_actuals(spec, periods, notes)
        signals = _with_planner_values(signals, released, run_zone, started_at, ended_at, store_url)
        record = build_record(
            key,
            operator=spec.operator,
            priority_class=spec.priority_class,
            state=state,
            zone=run_zone,
            start=started_at,
            end=ended_at,
            draw=draw,
            signals=signals,
            released=facts,
            placement=placement,
            deadline=_deadline(spec),
            notes=notes,
        )
        written = GridStoreHook().get_ledger_store().write(record)
    except Exception as exc:  # the work is done: a ledger problem must not fail it
        logger.warning(
            "carbon ledger: could not record %s try %s (%s: %s); the try is missing from the ledger until "
            "reconciled (docs/ledger.md)",
            getattr(ti, "task_id", "?"),
            getattr(ti, "try_number", "?"),
            type(exc).__name__,
            exc,
        )
        return None
    logger.info("carbon ledger: %s", describe(written))
    return written


def record_released_try(
    context: Mapping[str, Any], spec: LedgerSpec, released: Mapping[str, Any] | None, *, logger: Any = None
) -> LedgerRecord | None:
    """A sensor's try: the guarded work's planned run from the release, on the planner's values; never raises.

    :param context: the task context.
    :param spec: the sensor's ledger spec.
    :param released: the release payload.
    :param logger: where to log.
    """
    logger = logger or log
    ti = context.get("ti") or context.get("task_instance")
    if ti is None or not released:
        return None
    try:
        from airflow_provider_gridaware.hooks.store import GridStoreHook

        url = GridStoreHook().get_url()
        written = _write_released(url, ti, spec, released)
    except Exception as exc:
        _log_lost(logger, ti, exc)
        return None
    logger.info("carbon ledger: %s", describe(written))
    return written


async def arecord_released_try(
    ti: Any, spec: LedgerSpec, released: Mapping[str, Any] | None, *, logger: Any = None
) -> LedgerRecord | None:
    """:func:`record_released_try` from the triggerer (the try ends there): the store work runs in a thread.

    :param ti: the trigger's task instance.
    :param spec: the ledger spec the request carried.
    :param released: the release payload.
    :param logger: the trigger's log.
    """
    logger = logger or log
    if ti is None or not released:
        logger.warning("carbon ledger: the trigger has no task instance or no decision: no record written")
        return None
    try:
        from airflow_provider_gridaware.hooks.store import GridStoreHook

        url = await GridStoreHook().aget_url()
        written = await asyncio.to_thread(_write_released, url, ti, spec, released)
    except Exception as exc:
        _log_lost(logger, ti, exc)
        return None
    logger.info("carbon ledger: %s", describe(written))
    return written


def _write_released(url: str, ti: Any, spec: LedgerSpec, released: Mapping[str, Any]) -> LedgerRecord:
    from airflow_provider_gridaware.hooks.store import shared_ledger_store
    from airflow_provider_gridaware.ledger.energy import estimated_draw
    from airflow_provider_gridaware.ledger.figures import Released, build_record
    from airflow_provider_gridaware.times import parse_time

    facts = Released.from_payload(released)
    zone = _plan_zone(released) or _first_zone(spec)
    start = parse_time(str(released.get("released_at") or facts.planned_start), what="released_at")
    if spec.duration_s is not None:
        end = start + timedelta(seconds=spec.duration_s)
    elif facts.planned_start is not None and facts.planned_end is not None:
        end = start + (facts.planned_end - facts.planned_start)
    else:
        end = start
    profile = spec.energy_profile()
    draw = estimated_draw(profile, start, end) if profile.declared else None
    signals = _with_planner_values({}, released, zone, start, end, url)
    record = build_record(
        try_key(ti),
        operator=spec.operator,
        priority_class=spec.priority_class,
        state="success",
        zone=zone,
        start=start,
        end=end,
        draw=draw,
        signals=signals,
        released=facts,
        deadline=_deadline(spec),
        notes=["sensor: the guarded work's planned run from the release (its real times are the next task's)"],
    )
    return shared_ledger_store(url).write(record)


def _log_lost(logger: Any, ti: Any, exc: BaseException) -> None:
    logger.warning(
        "carbon ledger: could not record %s try %s (%s: %s); the try is missing from the ledger until reconciled",
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        type(exc).__name__,
        exc,
    )


def describe(record: LedgerRecord) -> str:
    """One line about a written record, for the task log."""
    a = record.actual
    parts = [f"{record.key.task_id} try {record.key.try_number} {record.state} in {a.zone}"]
    if a.energy_kwh is not None:
        parts.append(f"{a.energy_kwh:.3f} kWh ({record.energy_method.value})")
    if a.intensity_g_per_kwh is not None:
        parts.append(f"{a.intensity_g_per_kwh:.0f} gCO2eq/kWh {a.intensity_kind or ''}".rstrip())
    if a.emissions_g is not None:
        parts.append(f"{a.emissions_g / 1000:.3f} kgCO2eq")
    if record.saved_g is not None:
        parts.append(f"saved {record.saved_g / 1000:.3f} kgCO2eq against starting when the wait began")
    parts.append(f"basis {record.basis.value}")
    return ", ".join(parts)


# -- power ----------------------------------------------------------------------------------------------
def _power_draw(
    spec: LedgerSpec,
    key: TryKey,
    start: datetime,
    end: datetime,
    notes: list[str],
    logger: Any,
    running: Sequence[tuple[datetime, datetime]] | None = None,
) -> PowerDraw | None:
    from airflow_provider_gridaware.ledger.energy import estimated_draw

    profile = spec.energy_profile()
    if spec.power_conn_id and end > start:
        from airflow_provider_gridaware.hooks.power import GridPowerHook

        try:
            return GridPowerHook(spec.power_conn_id).get_draw(start, end, pue=profile.facility_pue, labels=asdict(key))
        except Exception as exc:
            fallback = "the declared profile" if profile.declared else "nothing (energy unknown)"
            notes.append(f"power measurement failed ({type(exc).__name__}: {exc}): fell back to {fallback}")
            logger.warning(
                "carbon ledger: power from %s failed (%s); falling back to %s", spec.power_conn_id, exc, fallback
            )
    if profile.declared:
        # A measured series already shows a pause as idle; an estimate must be told where the work ran.
        return estimated_draw(profile, start, end, running)  # a zero-length run (whole seconds) draws 0 kWh
    return None


# -- signals ----------------------------------------------------------------------------------------------
def _read_actuals(
    spec: LedgerSpec, periods: Mapping[str, tuple[datetime, datetime]], notes: list[str]
) -> dict[str, ZoneSignals]:
    """The zones' measured carbon and price over their periods, read in parallel within :data:`SIGNAL_BUDGET_S`."""
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.ledger.figures import ZoneSignals
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery
    from airflow_provider_gridaware.window import call_in_parallel

    wanted = [(c, z, k) for c, z, k in spec.sources if z in periods]

    def fetch(item: tuple[str, str, str]) -> SignalSeries:
        conn_id, zone, kind = item
        start, end = periods[zone]
        # Padded: the intervals holding the run's ends, also for a run too short for its times to differ.
        return hook_for_connection(conn_id).get_signal(
            SignalQuery(zone, SignalKind(kind), forecast=False, start=start - QUERY_PAD, end=end + QUERY_PAD)
        )

    got: dict[tuple[str, str], SignalSeries] = {}
    answers = call_in_parallel(fetch, wanted, SIGNAL_BUDGET_S)
    for conn_id, zone, kind in wanted:
        answer = answers.get((conn_id, zone, kind))
        if answer is None:
            notes.append(f"{zone}: measured {kind} from {conn_id} did not answer within {SIGNAL_BUDGET_S:.0f} s")
        elif isinstance(answer, Exception):
            notes.append(f"{zone}: measured {kind} not read from {conn_id} ({type(answer).__name__}: {answer})")
        else:
            got[(zone, kind)] = answer
    return {
        zone: ZoneSignals(carbon_actual=got.get((zone, "carbon_intensity")), price_actual=got.get((zone, "price")))
        for zone in periods
    }


def _with_planner_values(
    signals: Mapping[str, ZoneSignals],
    released: Mapping[str, Any] | None,
    zone: str,
    start: datetime,
    end: datetime,
    store_url: str,
) -> dict[str, ZoneSignals]:
    """Fill in, as forecasts, the planner's expected means: for the run (if it ran in the planned zone) and
    for the counterfactual; actuals read for the same periods win over them."""
    from dataclasses import replace

    from airflow_provider_gridaware.ledger.figures import Released, ZoneSignals

    filled = dict(signals)
    if not released:
        return filled
    facts = Released.from_payload(released)
    expected: list[tuple[str, datetime, datetime, Mapping[str, float]]] = []
    if _plan_zone(released) == zone and facts.expected_signals:
        expected.append((zone, start, end, facts.expected_signals))
    counterfactual = released.get("counterfactual")
    if isinstance(counterfactual, Mapping) and facts.waiting_since is not None:
        home = facts.home_zone or zone
        values: Mapping[str, float] = {str(k): float(v) for k, v in dict(counterfactual.get("signals") or {}).items()}
        expected.append((home, facts.waiting_since, facts.waiting_since + (end - start), values))
    for where, a, b, values in expected:
        held = filled.get(where) or ZoneSignals()
        carbon, price = _planner_series(where, a, b, values, held, store_url)
        filled[where] = replace(
            held,
            carbon_forecast=_joined(held.carbon_forecast, carbon),
            price_forecast=_joined(held.price_forecast, price),
        )
    return filled


def _joined(held: SignalSeries | None, more: SignalSeries | None) -> SignalSeries | None:
    """Two planner series of one zone (the run and the counterfactual) as one, when they do not overlap."""
    if held is None or more is None:
        return held or more
    points = sorted((*held.points, *more.points), key=lambda p: p.start)
    if any(b.start < a.end for a, b in itertools.pairwise(points)):
        return held  # overlapping periods (the run started when the wait began): the run's value stands
    return held.model_copy(update={"points": tuple(points)})


def _planner_series(
    zone: str, start: datetime, end: datetime, values: Mapping[str, float], held: ZoneSignals, store_url: str
) -> tuple[SignalSeries | None, SignalSeries | None]:
    """One-point forecast series of the planner's expected carbon and price over ``[start, end)``."""
    from airflow_provider_gridaware.ledger.figures import INSTANT, PLANNER_SOURCE
    from airflow_provider_gridaware.signals.models import build_series
    from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind

    end = max(end, start + INSTANT)  # a zero-length run takes the value at its start
    carbon = price = None
    for unit, value in values.items():
        if unit == "gCO2eq/kWh":
            metric = held.carbon_actual.metric if held.carbon_actual is not None else _archived_metric(store_url, zone)
            if metric is None:
                continue  # the kind of intensity is unknown: better no figure than a mixed one
            carbon = build_series(
                kind=SignalKind.CARBON_INTENSITY,
                zone=zone,
                source=PLANNER_SOURCE,
                series_type=SeriesType.FORECAST,
                unit=unit,
                metric=CarbonMetric(metric),
                points=[(start, end, value)],
                issued_at=start,
            )
        elif unit.endswith("/MWh"):
            price = build_series(
                kind=SignalKind.PRICE,
                zone=zone,
                source=PLANNER_SOURCE,
                series_type=SeriesType.FORECAST,
                unit=unit,
                currency=unit.split("/")[0],
                points=[(start, end, value)],
                issued_at=start,
            )
    return carbon, price


def _archived_metric(store_url: str, zone: str) -> str | None:
    """The carbon metric the archive holds for ``zone`` (what the planner read), if exactly one."""
    from airflow_provider_gridaware.hooks.store import shared_archive
    from airflow_provider_gridaware.signals.units import SignalKind

    try:
        infos = shared_archive(store_url).signals(zone=zone, kind=SignalKind.CARBON_INTENSITY)
    except Exception:
        return None
    metrics = {info.metric.value for info in infos if info.metric is not None}
    return metrics.pop() if len(metrics) == 1 else None


def _plan_zone(released: Mapping[str, Any] | None) -> str | None:
    plan = (released or {}).get("plan")
    return str(plan["zone"]) if isinstance(plan, Mapping) and plan.get("zone") else None


def _first_zone(spec: LedgerSpec) -> str:
    return spec.sources[0][1] if spec.sources else "unknown"


def _deadline(spec: LedgerSpec) -> datetime | None:
    from airflow_provider_gridaware.times import parse_time

    return parse_time(spec.deadline, what="deadline") if spec.deadline else None


def spec_of(operator: Any, context: Mapping[str, Any], kind: str) -> LedgerSpec | None:
    """The ledger spec of a grid-aware operator in a running try, or ``None`` (logged) if it cannot be made.

    :param operator: a :class:`~airflow_provider_gridaware.window.GridWindowMixin` operator.
    :param context: the task context.
    :param kind: ``decorator``, ``kubernetes`` or ``batch``.
    """
    from airflow_provider_gridaware.window import run_start_from_context

    try:
        return LedgerSpec.of(operator.window_args(), operator=kind, run_start=run_start_from_context(context))
    except Exception as exc:
        operator.log.warning("carbon ledger: cannot describe this task (%s); no record for this try", exc)
        return None


__all__: Sequence[str] = (
    "LedgerSpec",
    "arecord_released_try",
    "describe",
    "record_released_try",
    "record_try",
    "spec_of",
    "try_key",
)
