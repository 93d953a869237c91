"""The typed planner: signal series and jobs in, :class:`Plan` s out.

Two steps, so a trigger refreshing its forecasts can plan many jobs cheaply:

1. :func:`prepare` puts every zone's signals on one regular grid from "now" (provider forecast where it
   has values, the own :class:`SeasonalForecaster` from recent actuals for gaps and beyond its horizon),
   checks the signals are comparable and records each slot's expected forecast error.
2. :func:`plan_job` / :func:`plan_jobs` place jobs on that grid with the vectorised core.

:func:`plan` does both for one job. Nothing here imports Airflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from airflow_provider_gridaware.planning import core
from airflow_provider_gridaware.planning.calibration import ForecastCalibration
from airflow_provider_gridaware.planning.core import INVALID, QUANTUM, ObjectiveGrid
from airflow_provider_gridaware.planning.decision import Window, fixed_plan
from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster, SeasonalModel
from airflow_provider_gridaware.planning.grid import floor_to, from_seconds, resample_series, to_seconds
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.objective import Objective, check_comparable, typical_level
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.times import format_time, parse_time

FloatArray = npt.NDArray[np.float64]
DAY_S = 86_400
# Tuned once on DE, GB and FR 2020 at round values, then left alone: see docs/planner.md.
DEFAULT_OPTIMISM = 0.3
DEFAULT_HYSTERESIS = 0.05
_STATUS = {
    core.SHIFTED: PlanStatus.SHIFTED,
    core.BEST_NOW: PlanStatus.BEST_NOW,
    core.NOT_WORTH_WAITING: PlanStatus.NOT_WORTH_WAITING,
    core.NO_SIGNAL: PlanStatus.NO_SIGNAL,
    core.DEADLINE_AT_RISK: PlanStatus.DEADLINE_AT_RISK,
}


@dataclass(frozen=True)
class ZoneSignals:
    """What is known about one candidate zone at planning time.

    :param zone: the zone name jobs use.
    :param carbon: carbon forecast (or any series reaching into the future), or ``None``.
    :param price: price forecast or published day-ahead prices, or ``None``.
    :param carbon_history: recent carbon actuals, for the own forecaster (a few weeks is best).
    :param price_history: recent price actuals.
    :param carbon_calibration: the carbon forecast source's track record (see
        :func:`~airflow_provider_gridaware.planning.calibration.calibrate_series`): the forecast is corrected
        and blended with the own forecaster, and its measured error becomes the slots' spread.
    :param price_calibration: the same for the price forecast.
    """

    zone: str
    carbon: SignalSeries | None = None
    price: SignalSeries | None = None
    carbon_history: SignalSeries | None = None
    price_history: SignalSeries | None = None
    carbon_calibration: ForecastCalibration | None = None
    price_calibration: ForecastCalibration | None = None


@dataclass(frozen=True)
class PlannerSettings:
    """Grid and decision settings.

    :param step: planning grid step (candidate starts are its boundaries); must divide the forecaster step.
    :param forecaster: the own forecaster (its step must divide a day).
    :param optimism: future slots are credited this many expected forecast errors (the value of waiting).
    :param hysteresis: relative gain a new window needs to replace the previous plan's window.
    """

    step: timedelta = timedelta(minutes=5)
    forecaster: SeasonalForecaster = field(default_factory=SeasonalForecaster)
    optimism: float = DEFAULT_OPTIMISM
    hysteresis: float = DEFAULT_HYSTERESIS

    def __post_init__(self) -> None:
        step_s = int(self.step.total_seconds())
        if step_s <= 0 or self.forecaster.step_s % step_s:
            raise ValueError(f"step {self.step} must divide the forecaster step ({self.forecaster.step_s} s)")


@dataclass(frozen=True)
class PlanningGrid:
    """All zones' signals on one grid from ``origin``, ready for many plans.

    :param origin_s: epoch seconds of slot 0 (the planning time floored to the step).
    :param step_s: slot length.
    :param slots: number of slots.
    :param zones: zone names, in row order.
    :param carbon: ``(Z, n)`` carbon values (NaN = unusable), or ``None`` if no zone has carbon.
    :param price: ``(Z, n)`` price values, or ``None``.
    :param carbon_spread: ``(Z, n)`` expected absolute forecast error of ``carbon``.
    :param price_spread: ``(Z, n)`` the same for ``price``.
    :param carbon_unit: e.g. ``gCO2eq/kWh``.
    :param price_unit: e.g. ``EUR/MWh``.
    :param sources: per zone, one line on where the values come from.
    """

    origin_s: int
    step_s: int
    slots: int
    zones: tuple[str, ...]
    carbon: FloatArray | None
    price: FloatArray | None
    carbon_spread: FloatArray | None
    price_spread: FloatArray | None
    carbon_unit: str | None = None
    price_unit: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    _cache: dict[tuple[float, float, float], tuple[ObjectiveGrid, ObjectiveGrid]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def end_s(self) -> int:
        return self.origin_s + self.slots * self.step_s

    def objective_grids(self, objective: Objective, optimism: float) -> tuple[ObjectiveGrid, ObjectiveGrid]:
        """The expected objective grid and the optimistic one decisions use (cached per weights).

        :param objective: the weights.
        :param optimism: expected errors credited to each slot.
        """
        key = (objective.carbon_weight, objective.price_weight, optimism)
        if key not in self._cache:
            shape = (len(self.zones), self.slots)
            scales = {"carbon_scale": _scale(self.carbon), "price_scale": _scale(self.price)}
            values = objective.combine(self.carbon, self.price, shape=shape, **scales)
            spread = objective.combine(self.carbon_spread, self.price_spread, shape=shape, **scales)
            spread = np.where(np.isfinite(spread), spread, 0.0)
            expected = ObjectiveGrid.from_values(values, origin_s=self.origin_s, step_s=self.step_s)
            hopeful = ObjectiveGrid.from_values(values - optimism * spread, origin_s=self.origin_s, step_s=self.step_s)
            self._cache[key] = (expected, hopeful)
        return self._cache[key]

    def blocked(self, spans: Mapping[str, Sequence[tuple[int, int]]]) -> PlanningGrid:
        """A copy with every slot that overlaps a span of its zone unusable (NaN), as if it had no signal.

        Grid events use it: flexible work is not placed inside a called event. A job whose every slot is
        blocked falls back like one with no signal (it still starts by its latest start).

        :param spans: per zone, ``(start_s, end_s)`` epoch seconds.
        """
        mask = np.zeros((len(self.zones), self.slots), dtype=bool)
        for row, zone in enumerate(self.zones):
            for start_s, end_s in spans.get(zone, ()):
                first = max((start_s - self.origin_s) // self.step_s, 0)
                last = min(-(-(end_s - self.origin_s) // self.step_s), self.slots)
                if first < last:
                    mask[row, first:last] = True
        if not mask.any():
            return self

        def cut(values: FloatArray | None) -> FloatArray | None:
            return None if values is None else np.where(mask, np.nan, values)

        return dataclasses.replace(
            self,
            carbon=cut(self.carbon),
            price=cut(self.price),
            carbon_spread=cut(self.carbon_spread),
            price_spread=cut(self.price_spread),
            _cache={},
        )


def _scale(values: FloatArray | None) -> float:
    return 1.0 if values is None else typical_level(values)


def prepare(
    signals: Sequence[ZoneSignals],
    *,
    now: datetime,
    until: datetime,
    settings: PlannerSettings | None = None,
) -> PlanningGrid:
    """Put every zone's signals on one grid covering ``[now, until]``.

    Provider values are used where they fully cover a slot; other slots come from the own forecaster fitted
    on the zone's history (only points that ended by ``now``). Slots neither can fill stay unusable.

    :param signals: one entry per candidate zone.
    :param now: the planning time (aware).
    :param until: the last time any job may need (its deadline).
    :param settings: grid and forecaster settings.
    :raises IncomparableSignalsError: average with marginal carbon, or several currencies, across zones.
    """
    settings = settings or PlannerSettings()
    now = parse_time(now, what="now")
    until = parse_time(until, what="until")
    step_s = int(settings.step.total_seconds())
    origin_s = floor_to(to_seconds(now), step_s)
    slots = max(1, -(-(to_seconds(until) - origin_s) // step_s) + 1)
    zones = tuple(s.zone for s in signals)
    if len(set(zones)) != len(zones):
        raise ValueError(f"zones repeat in the signals: {zones}")
    carbon_family = check_comparable([x for s in signals for x in (s.carbon, s.carbon_history) if x], role="carbon")
    price_family = check_comparable([x for s in signals for x in (s.price, s.price_history) if x], role="price")
    sources: dict[str, str] = {}
    rows: dict[str, list[tuple[FloatArray, FloatArray]]] = {"carbon": [], "price": []}
    for zone_signals in signals:
        notes = []
        for kind, forecast, history, calibration in (
            ("carbon", zone_signals.carbon, zone_signals.carbon_history, zone_signals.carbon_calibration),
            ("price", zone_signals.price, zone_signals.price_history, zone_signals.price_calibration),
        ):
            values, spread, note = _zone_row(
                forecast,
                history,
                now_s=to_seconds(now),
                origin_s=origin_s,
                step_s=step_s,
                slots=slots,
                settings=settings,
                kind=kind,
                calibration=calibration,
            )
            rows[kind].append((values, spread))
            if note:
                notes.append(f"{kind}: {note}")
        sources[zone_signals.zone] = "; ".join(notes) or "no signal"

    def stack(kind: str, family: object) -> tuple[FloatArray | None, FloatArray | None]:
        if family is None:
            return None, None
        return np.stack([v for v, _ in rows[kind]]), np.stack([s for _, s in rows[kind]])

    carbon, carbon_spread = stack("carbon", carbon_family)
    price, price_spread = stack("price", price_family)
    return PlanningGrid(
        origin_s=origin_s,
        step_s=step_s,
        slots=slots,
        zones=zones,
        carbon=carbon,
        price=price,
        carbon_spread=carbon_spread,
        price_spread=price_spread,
        carbon_unit=carbon_family.unit if carbon_family else None,
        price_unit=price_family.unit if price_family else None,
        sources=sources,
    )


def _zone_row(
    forecast: SignalSeries | None,
    history: SignalSeries | None,
    *,
    now_s: int,
    origin_s: int,
    step_s: int,
    slots: int,
    settings: PlannerSettings,
    kind: str,
    calibration: ForecastCalibration | None = None,
) -> tuple[FloatArray, FloatArray, str]:
    """One zone's values and spreads for one signal, and a note on their sources.

    With a ``calibration`` that has history, the provider's slots are corrected and blended with the own
    forecast, and get the blend's measured error as spread instead of the own forecaster's residuals.
    """
    values = np.full(slots, np.nan)
    notes = []
    if forecast is not None and len(forecast):
        values = resample_series(forecast, origin_s=origin_s, step_s=step_s, slots=slots)
        covered = np.isfinite(values)
        if covered.any():
            last = origin_s + step_s * (int(np.flatnonzero(covered)[-1]) + 1)
            notes.append(f"{forecast.source} to {format_time(from_seconds(last))}")
    model, predicted, level = _own_forecast(
        history, now_s=now_s, origin_s=origin_s, step_s=step_s, slots=slots, settings=settings, kind=kind
    )
    calibrated_spread = None
    if calibration is not None and forecast is not None and len(forecast):
        if calibration.has_history:
            issued_s = to_seconds(forecast.issued_at) if forecast.issued_at is not None else now_s
            centres_s = origin_s + step_s * np.arange(slots) + step_s // 2
            values, calibrated_spread = calibration.apply(centres_s - issued_s, values, predicted, centres_s - now_s)
        notes.append(calibration.reason())
    missing = ~np.isfinite(values)
    if predicted is not None and missing.any():
        values = np.where(missing, predicted, values)
        notes.append(f"own forecast for {int((missing & np.isfinite(predicted)).sum())} slots")
    # Expected forecast error per slot, growing with the lead; without a fitted error model there is no
    # credit for waiting, so an uninformed forecast keeps "earliest wins" and a flat one runs now.
    spread = np.zeros(slots)
    if model is not None and model.error is not None and level is not None:
        fc = settings.forecaster
        lead_s = origin_s + step_s * np.arange(slots) - now_s + step_s // 2
        coarse = np.maximum(lead_s // fc.step_s, 0)
        spread = fc.uncertainty(model, int(coarse.max()) + 1)[coarse] * level
    if calibrated_spread is not None:
        spread = np.where(np.isfinite(calibrated_spread), calibrated_spread, spread)
    return values, spread, ", ".join(notes)


def _own_forecast(
    history: SignalSeries | None,
    *,
    now_s: int,
    origin_s: int,
    step_s: int,
    slots: int,
    settings: PlannerSettings,
    kind: str,
) -> tuple[SeasonalModel | None, FloatArray | None, float | None]:
    """Fit the own forecaster on ``history`` (points ended by now) and map it onto the planning grid."""
    if history is None or not len(history):
        return None, None, None
    fc = settings.forecaster
    if kind == "price" and fc.nonnegative:
        fc = SeasonalForecaster(
            step_s=fc.step_s,
            horizon_slots=fc.horizon_slots,
            training_days=fc.training_days,
            ridge=fc.ridge,
            nonnegative=False,
        )
    known = history.between(history.start or from_seconds(now_s), from_seconds(now_s))
    known_points = tuple(p for p in known.points if to_seconds(p.end) <= now_s)
    if not known_points:
        return None, None, None
    known = known.model_copy(update={"points": known_points})
    coarse_step = fc.step_s
    first = to_seconds(known_points[0].start)
    fc_origin = first - first % DAY_S  # the forecaster's grid starts at a UTC midnight
    cutoff = (now_s - fc_origin) // coarse_step
    end_slot = -(-(origin_s + slots * step_s - fc_origin) // coarse_step)
    y = resample_series(known, origin_s=fc_origin, step_s=coarse_step, slots=max(cutoff, 1))
    finite = np.isfinite(y)
    if not finite.any():
        return None, None, None
    model = fc.fit(y, cutoff)
    predicted_coarse = model.predict(y, cutoff, max(end_slot - cutoff, 1))
    fine_times = origin_s + step_s * np.arange(slots)
    index = (fine_times - fc_origin) // coarse_step - cutoff
    predicted = np.where(index >= 0, predicted_coarse[np.clip(index, 0, predicted_coarse.size - 1)], np.nan)
    recent = y[max(0, cutoff - 7 * DAY_S // coarse_step) : cutoff]
    recent = recent[np.isfinite(recent)]
    level = float(np.mean(np.abs(recent))) if recent.size else None
    return model, predicted, level


def plan(
    job: Job,
    signals: Sequence[ZoneSignals],
    *,
    now: datetime,
    previous: Window | None = None,
    settings: PlannerSettings | None = None,
) -> Plan:
    """Prepare the job's zones and plan it (the one-job convenience).

    :param job: the job.
    :param signals: signals of (at least) the job's zones.
    :param now: the planning time.
    :param previous: the window chosen at the previous wake-up, if any (kept unless clearly beaten).
    :param settings: grid and decision settings.
    """
    wanted = [s for s in signals if s.zone in job.zones]
    missing = [z for z in job.zones if z not in {s.zone for s in wanted}]
    wanted += [ZoneSignals(zone=z) for z in missing]
    grid = prepare(wanted, now=now, until=max(job.deadline, parse_time(now, what="now")), settings=settings)
    return plan_job(job, grid, now=now, previous=previous, settings=settings)


def plan_job(
    job: Job,
    grid: PlanningGrid,
    *,
    now: datetime | None = None,
    previous: Window | None = None,
    settings: PlannerSettings | None = None,
    running_s: int = 0,
    started: bool = False,
) -> Plan:
    """Plan one job on a prepared grid.

    :param job: the job.
    :param grid: the prepared signals (must contain the job's zones; others are ignored).
    :param now: the planning time (default: the grid's origin).
    :param previous: the previous window of this job: it is kept unless a new one is better by
        ``settings.hysteresis``, so forecast noise does not make the job chase a moving minimum.
    :param settings: decision settings.
    :param running_s: interruptible jobs: how long the run in progress has been going (0 = paused).
    :param started: interruptible jobs: whether the job has run before (its next start is a resume).
    """
    if job.interruptible:
        settings = settings or PlannerSettings()
        now_s = grid.origin_s if now is None else to_seconds(parse_time(now, what="now"))
        return _plan_interruptible(job, grid, now_s, settings, running_s=running_s, started=started)
    return plan_jobs([job], grid, now=now, previous=[previous], settings=settings)[0]


def plan_jobs(
    jobs: Sequence[Job],
    grid: PlanningGrid,
    *,
    now: datetime | None = None,
    previous: Sequence[Window | None] | None = None,
    settings: PlannerSettings | None = None,
) -> list[Plan]:
    """Plan many jobs on one prepared grid; non-interruptible jobs are planned in one vectorised call.

    :param jobs: the jobs.
    :param grid: the prepared signals.
    :param now: the planning time (default: the grid's origin).
    :param previous: per job, its previous window or ``None``.
    :param settings: decision settings.
    """
    settings = settings or PlannerSettings()
    now_s = grid.origin_s if now is None else to_seconds(parse_time(now, what="now"))
    previous = list(previous) if previous is not None else [None] * len(jobs)
    index_of = {z: i for i, z in enumerate(grid.zones)}
    for job in jobs:
        unknown = [z for z in job.zones if z not in index_of]
        if unknown:
            raise ValueError(f"job {job.job_id}: zones {unknown} are not in the prepared grid {grid.zones}")
    plans: list[Plan | None] = [None] * len(jobs)
    groups: dict[tuple[float, float], list[int]] = {}
    for k, job in enumerate(jobs):
        if job.interruptible:
            plans[k] = _plan_interruptible(job, grid, now_s, settings)
        else:
            groups.setdefault((job.carbon_weight, job.price_weight), []).append(k)
    for (carbon_weight, price_weight), members in groups.items():
        objective = Objective(carbon_weight, price_weight)
        expected, hopeful = grid.objective_grids(objective, settings.optimism)
        batch = [jobs[k] for k in members]
        for k, made in zip(
            members,
            _plan_windows(batch, [previous[k] for k in members], grid, expected, hopeful, now_s, settings),
            strict=True,
        ):
            plans[k] = made
    return [p for p in plans if p is not None]


def _plan_windows(
    jobs: Sequence[Job],
    previous: Sequence[Window | None],
    grid: PlanningGrid,
    expected: ObjectiveGrid,
    hopeful: ObjectiveGrid,
    now_s: int,
    settings: PlannerSettings,
) -> list[Plan]:
    index_of = {z: i for i, z in enumerate(grid.zones)}
    count, zones = len(jobs), len(grid.zones)
    duration = np.array([_seconds(j.duration) for j in jobs], np.int64)
    earliest = np.array([max(now_s, to_seconds(j.earliest_start)) for j in jobs], np.int64)
    latest = np.array([to_seconds(j.latest_start) for j in jobs], np.int64)
    zone_ok = np.zeros((count, zones), bool)
    penalty = np.zeros((count, zones))
    for k, job in enumerate(jobs):
        for zone in job.zones:
            zone_ok[k, index_of[zone]] = True
            penalty[k, index_of[zone]] = job.zone_penalty.get(zone, 0.0)
    home = np.array([index_of[j.home_zone] for j in jobs], np.int64)
    choice = core.best_windows(
        hopeful,
        duration_s=duration,
        earliest_s=earliest,
        latest_start_s=latest,
        zone_ok=zone_ok,
        home_zone=home,
        penalty=penalty,
        min_gain=np.array([j.min_gain for j in jobs]),
    )
    plans = []
    for k, job in enumerate(jobs):
        row, start, status = int(choice.zone[k]), int(choice.start_s[k]), _STATUS[int(choice.status[k])]
        kept = _keep_previous(
            previous[k],
            job,
            hopeful,
            index_of,
            int(earliest[k]),
            int(latest[k]),
            int(choice.score[k]),
            row,
            start,
            settings,
        )
        if kept is not None:
            row, start = kept
            status = PlanStatus.BEST_NOW if start <= earliest[k] else PlanStatus.SHIFTED
            start = max(start, int(earliest[k]))
        plans.append(
            _window_plan(
                job,
                grid,
                expected,
                row,
                start,
                int(earliest[k]),
                int(latest[k]),
                int(home[k]),
                status,
                settings,
                now_s,
            )
        )
    return plans


def _keep_previous(
    previous: Window | None,
    job: Job,
    hopeful: ObjectiveGrid,
    index_of: dict[str, int],
    earliest: int,
    latest: int,
    new_score: int,
    new_zone: int,
    new_start: int,
    settings: PlannerSettings,
) -> tuple[int, int] | None:
    """The previous window if it is still allowed and the new one is not better by the hysteresis."""
    if previous is None or previous.zone not in index_of or previous.zone not in job.zones:
        return None
    zone = index_of[previous.zone]
    start = max(to_seconds(previous.start), earliest)
    if start > latest or (zone, start) == (new_zone, new_start) or earliest >= latest:
        return None
    total, ok = hopeful.integral(zone, start, start + _seconds(job.duration))
    if not bool(ok):
        return None
    old = int(total)
    return None if new_score < old - settings.hysteresis * abs(old) else (zone, start)


def _window_plan(
    job: Job,
    grid: PlanningGrid,
    expected: ObjectiveGrid,
    zone: int,
    start: int,
    earliest: int,
    latest: int,
    home: int,
    status: PlanStatus,
    settings: PlannerSettings,
    now_s: int,
) -> Plan:
    duration = _seconds(job.duration)
    chunks = ((start, start + duration),)
    objective, signals = _expected(grid, expected, zone, chunks)
    now_objective, now_signals = _expected(grid, expected, home, ((earliest, earliest + duration),))
    zone_name = grid.zones[zone]
    latest_start = max(latest, earliest)
    run_now = start <= earliest
    reason = _reason(
        job, grid, zone_name, start, run_now, status, objective, now_objective, signals, now_signals, latest_start
    )
    return Plan(
        zone=zone_name,
        chunks=tuple(Chunk(from_seconds(a), from_seconds(b)) for a, b in chunks),
        run_now=run_now,
        latest_start=from_seconds(latest_start),
        planned_at=from_seconds(max(now_s, grid.origin_s)),
        status=status,
        reason=reason,
        expected_objective=objective,
        now_objective=now_objective,
        expected_signals=signals,
        now_signals=now_signals,
        job_id=job.job_id,
    )


def _expected(
    grid: PlanningGrid, expected: ObjectiveGrid, zone: int, spans: Sequence[tuple[int, int]]
) -> tuple[float | None, dict[str, float]]:
    """Mean objective (normalised) and mean physical signals over ``spans`` in ``zone``; ``None`` if unusable."""
    seconds = sum(b - a for a, b in spans)
    total, usable = 0, True
    for a, b in spans:
        part, ok = expected.integral(zone, a, b)
        usable = usable and bool(ok)
        total += int(part)
    objective = total / (QUANTUM * seconds) if usable and seconds else None
    signals = {}
    for values, unit in ((grid.carbon, grid.carbon_unit), (grid.price, grid.price_unit)):
        if values is None or unit is None:
            continue
        mean = _physical_mean(values[zone], grid.origin_s, grid.step_s, spans)
        if mean is not None:
            signals[unit] = mean
    return objective, signals


def _physical_mean(values: FloatArray, origin_s: int, step_s: int, spans: Sequence[tuple[int, int]]) -> float | None:
    total, seconds = 0.0, 0
    for a, b in spans:
        first, last = (a - origin_s) // step_s, -(-(b - origin_s) // step_s)
        if first < 0 or last > values.size:
            return None
        edges = np.minimum(np.maximum(origin_s + step_s * np.arange(first, last + 1), a), b)
        part = values[first:last] * np.diff(edges)
        if not np.isfinite(part).all():
            return None
        total += float(part.sum())
        seconds += b - a
    return total / seconds if seconds else None


def _reason(
    job: Job,
    grid: PlanningGrid,
    zone: str,
    start: int,
    run_now: bool,
    status: PlanStatus,
    objective: float | None,
    now_objective: float | None,
    signals: dict[str, float],
    now_signals: dict[str, float],
    latest_start: int,
) -> str:
    """One sentence for the log and the UI: what was chosen, what it is expected to save, and why."""
    where = f" in {zone}" if len(job.zones) > 1 else ""
    shown = ", ".join(f"{v:.0f} {u}" for u, v in signals.items()) or "no signal"
    against = ", ".join(f"{v:.0f} {u}" for u, v in now_signals.items())
    by = format_time(from_seconds(latest_start))
    if status is PlanStatus.NO_SIGNAL:
        return f"runs at once: no usable signal for any window in {', '.join(job.zones)}"
    if status is PlanStatus.DEADLINE_AT_RISK:
        return f"runs at once{where}: the latest start with the runtime margin has passed ({shown})"
    if status is PlanStatus.NOT_WORTH_WAITING:
        return f"runs at once{where}: the best later window gains less than min_gain {job.min_gain:.1%} ({shown})"
    gain = None if objective is None or not now_objective else (now_objective - objective) / abs(now_objective)
    if run_now:
        if gain and zone != job.home_zone:
            return f"runs at once{where}: {shown}, {gain:.0%} lower than {job.home_zone} now ({against})"
        return f"runs at once{where}: now is the best window ({shown})"
    text = f"starts {format_time(from_seconds(start))}{where}: expected {shown}"
    if gain is not None and against:
        text += f" vs {against} now in {job.home_zone} ({gain:.0%} lower)"
    return f"{text}; latest start {by}"


def _plan_interruptible(
    job: Job, grid: PlanningGrid, now_s: int, settings: PlannerSettings, *, running_s: int = 0, started: bool = False
) -> Plan:
    """Chunks for an interruptible job: the dynamic programme per candidate zone, the cheapest wins."""
    objective = Objective(job.carbon_weight, job.price_weight)
    expected, _ = grid.objective_grids(objective, settings.optimism)
    index_of = {z: i for i, z in enumerate(grid.zones)}
    step = grid.step_s
    earliest = max(now_s, to_seconds(job.earliest_start))
    duration = _seconds(job.duration)
    need = -(-duration // step)
    end_limit = to_seconds(job.latest_end)
    count = (end_limit - earliest) // step
    latest = to_seconds(job.latest_start)
    if count < need:
        return fixed_plan(
            job,
            from_seconds(now_s),
            PlanStatus.DEADLINE_AT_RISK,
            "the margin before the deadline is too short to pause: runs at once",
            start=from_seconds(earliest),
        )
    starts = earliest + step * np.arange(count, dtype=np.int64)
    final_len = duration - (need - 1) * step
    best: tuple[float, int, tuple[tuple[int, int], ...]] | None = None
    now_cost: float | None = None
    for zone in job.zones:
        z = index_of[zone]
        costs = expected.slot_costs(z, earliest, step, count)
        final_total, final_ok = expected.integral(z, starts, starts + final_len)
        final = np.where(final_ok, final_total, INVALID)
        resume = None
        if job.resume_cost > timedelta(0):
            resume_total, resume_ok = expected.integral(z, starts, starts + _seconds(job.resume_cost))
            resume = np.where(resume_ok, resume_total, INVALID // 4)
        penalty = round(job.zone_penalty.get(zone, 0.0) * QUANTUM) * duration
        chosen = core.cheapest_chunks(
            costs,
            need=need,
            min_chunk=-(-_seconds(job.min_chunk) // step),
            resume_costs=resume,
            final_costs=final,
            running=-(-running_s // step) if running_s > 0 else 0,
            started=started,
        )
        if zone == job.home_zone:
            straight = int(costs[: need - 1].sum()) + int(final[need - 1])
            now_cost = float(straight) if straight < INVALID else None
        if chosen is not None and (best is None or chosen.cost + penalty < best[0]):
            best = (float(chosen.cost + penalty), z, chosen.runs)
    home = index_of[job.home_zone]
    if best is None:
        return fixed_plan(
            job,
            from_seconds(now_s),
            PlanStatus.NO_SIGNAL,
            f"no usable signal for {', '.join(job.zones)}",
            start=from_seconds(earliest),
        )
    cost, zone_index, runs = best
    if (
        now_cost is not None
        and (now_cost - cost) < job.min_gain * abs(now_cost)
        and not (zone_index != home and now_cost > cost)
    ):
        zone_index, runs, status = home, ((0, need),), PlanStatus.NOT_WORTH_WAITING
    else:
        status = (
            PlanStatus.BEST_NOW if runs[0][0] == 0 and len(runs) == 1 and zone_index == home else PlanStatus.SHIFTED
        )
    spans = [(earliest + a * step, earliest + b * step) for a, b in runs]
    objective_value, signals = _expected(grid, expected, zone_index, spans)
    now_value, now_signals = _expected(grid, expected, home, ((earliest, earliest + duration),))
    run_now = spans[0][0] <= earliest
    zone_name = grid.zones[zone_index]
    pieces = ", ".join(f"{format_time(from_seconds(a))}-{from_seconds(b):%H:%M}" for a, b in spans)
    reason = f"runs in {len(spans)} chunk(s) in {zone_name} ({pieces}): expected " + (
        ", ".join(f"{v:.0f} {u}" for u, v in signals.items()) or "no signal"
    )
    if status is PlanStatus.NOT_WORTH_WAITING:
        reason = f"runs at once: pausing gains less than min_gain {job.min_gain:.1%}"
    return Plan(
        zone=zone_name,
        chunks=tuple(Chunk(from_seconds(a), from_seconds(b)) for a, b in spans),
        run_now=run_now,
        latest_start=from_seconds(max(latest, earliest)),
        planned_at=from_seconds(now_s),
        status=status,
        reason=reason,
        expected_objective=objective_value,
        now_objective=now_value,
        expected_signals=signals,
        now_signals=now_signals,
        job_id=job.job_id,
    )


def _seconds(delta: timedelta) -> int:
    return max(1, round(delta.total_seconds()))
