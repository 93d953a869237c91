"""The backtest's policies: ours, which is the product's own :func:`~airflow_provider_gridaware.planning.decision.decide`,
and the peers it is compared with.

``gridaware`` asks ``decide()`` at every wake-up, with what a live trigger would know then (actuals so
far, the newest vintage, the own forecaster beyond, on the same kind of planning grid), releases when it
says so and otherwise sleeps until the wake-up it names: the same code, the same refresh schedule and the
same hysteresis as the deferrable trigger, so its figures are figures of what ships. The peers are what
other tools do:

* ``run-now``: start at submission in the home zone;
* ``oracle``: perfect knowledge of the actual signal (the best any policy could do);
* ``decide-once``: the GSF Carbon Aware SDK / carbonaware.dev way: one rolling-mean argmin over all
  zones at submission with the information then, then sleep until that start; no runtime margin;
* ``threshold``: start as soon as the latest actual is below a percentile of the trailing week (or at
  the latest start), in the candidate zone with the lowest latest value.

"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from airflow_provider_gridaware.planning.core import INVALID, ObjectiveGrid, best_windows, cheapest_chunks
from airflow_provider_gridaware.planning.decision import Progress, Window, decide, needs_signals
from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster
from airflow_provider_gridaware.planning.job import DEFAULT_MIN_GAIN, DEFAULT_RUNTIME_MARGIN, Job
from airflow_provider_gridaware.planning.planner import DEFAULT_HYSTERESIS, DEFAULT_OPTIMISM, PlannerSettings
from airflow_provider_gridaware.planning.replay import DAY_S, Replay
from airflow_provider_gridaware.times import from_epoch

POLICY_NAMES = ("gridaware", "run-now", "oracle", "decide-once", "threshold")


# -- backtest policies ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayJob:
    """A job as the backtest replays it.

    :param job_id: identifier.
    :param submit_s: submission (earliest start), epoch seconds.
    :param estimate_s: the run time the policies are told.
    :param actual_s: the run time it really takes.
    :param deadline_s: completion deadline.
    :param interruptible: whether it may be paused and resumed.
    :param zones: candidate zones, home first.
    """

    job_id: str
    submit_s: int
    estimate_s: int
    actual_s: int
    deadline_s: int
    interruptible: bool
    zones: tuple[str, ...]


@dataclass(frozen=True)
class PolicySettings:
    """Knobs of the policies.

    :param runtime_margin: ours: relative runtime allowance kept before the deadline (the job's declared margin).
    :param min_gain: ours: relative gain below which the job starts now.
    :param replan_s: ours: the refresh interval; threshold: its polling interval.
    :param min_chunk_s: interruptible jobs: minimum run length.
    :param resume_cost_s: interruptible jobs: extra run time per resume, charged at the signal then.
    :param threshold_percentile: threshold peer: start below this percentile of the trailing window.
    :param threshold_window_s: threshold peer: the trailing window.
    :param peer_margin: runtime margin of the peers (the SDK has none).
    :param hysteresis: ours: relative improvement a new window needs to replace the committed one.
    :param optimism: ours: how many expected forecast errors a future slot is credited (the value of waiting).
    """

    runtime_margin: float = DEFAULT_RUNTIME_MARGIN
    min_gain: float = DEFAULT_MIN_GAIN
    replan_s: int = 1800
    min_chunk_s: int = 0
    resume_cost_s: int = 0
    threshold_percentile: float = 30.0
    threshold_window_s: int = 7 * DAY_S
    peer_margin: float = 0.0
    hysteresis: float = DEFAULT_HYSTERESIS
    optimism: float = DEFAULT_OPTIMISM


@dataclass(frozen=True)
class Execution:
    """What a policy ran for a job.

    :param job_id: the job.
    :param zone: where it ran.
    :param runs: ``(start_s, end_s)`` contiguous runs with the actual run time.
    :param resumes: start times of runs that were resumes (charged ``resume_cost_s``).
    :param decisions: how many plans the policy made for the job.
    """

    job_id: str
    zone: str
    runs: tuple[tuple[int, int], ...]
    resumes: tuple[int, ...] = ()
    decisions: int = 0

    @property
    def start_s(self) -> int:
        return self.runs[0][0]

    @property
    def end_s(self) -> int:
        return self.runs[-1][1]


@dataclass
class _Context:
    replay: Replay
    settings: PolicySettings
    thresholds: dict[tuple[str, int], float] = field(default_factory=dict)


Policy = Callable[[_Context, ReplayJob], Execution]


def _floor(replay: Replay, t_s: int) -> int:
    step = replay.config.step_s
    return t_s - (t_s - replay.origin_s) % step


def _peer_latest_start(replay: Replay, job: ReplayJob, margin: float) -> int:
    # The peers' own rule: they start at submission or on grid boundaries, never after this.
    latest = job.deadline_s - math.ceil(job.estimate_s * (1 + margin))
    return max(job.submit_s, _floor(replay, latest))


def _next_replan(t_s: int, every_s: int) -> int:
    return t_s - t_s % every_s + every_s


def _contiguous(job: ReplayJob, zone: str, start_s: int, decisions: int) -> Execution:
    return Execution(job.job_id, zone, ((start_s, start_s + job.actual_s),), (), decisions)


def _outlook_grid(
    replay: Replay, zones: tuple[str, ...], t_s: int, until_s: int, *, truth: bool = False, optimism: float = 0.0
) -> ObjectiveGrid:
    c = replay.slot_of(t_s)
    slots = max(1, replay.slot_of(until_s) - c + 2)
    if truth:
        values = np.stack([replay.truth(z, c, slots) for z in zones])
    else:
        values = np.stack([replay.outlook(z, t_s, slots) for z in zones])
        if optimism:
            values = values - optimism * np.stack([replay.spread(z, t_s, slots) for z in zones])
    return ObjectiveGrid.from_values(values, origin_s=replay.slot_start(c), step_s=replay.config.step_s)


def run_now(ctx: _Context, job: ReplayJob) -> Execution:
    """Start at submission in the home zone."""
    return _contiguous(job, job.zones[0], job.submit_s, 0)


def oracle(ctx: _Context, job: ReplayJob) -> Execution:
    """The best execution with perfect knowledge of the actual signal (and the actual run time).

    Every start in its range is tried exactly (:func:`exact_best_start`), and the range covers every other
    policy's (up to ``deadline - estimate``, or ``deadline - actual`` when the run is shorter than told),
    so no policy beats it by more than the planning grid's fixed point (slot values are compared in units of
    1/65,536 of the typical level, so two windows closer than that tie and the earlier is taken).
    Interruptible jobs take the better of the best chunk set and the best contiguous window.
    """
    replay = ctx.replay
    latest = max(job.submit_s, job.deadline_s - min(job.estimate_s, job.actual_s))
    grid = _outlook_grid(replay, job.zones, job.submit_s, max(job.deadline_s, latest + job.actual_s), truth=True)
    zone, start = exact_best_start(grid, job.submit_s, latest, job.actual_s)
    best = _contiguous(job, job.zones[zone], start, 1)
    if not job.interruptible:
        return best
    chunked = _chunked_oracle(ctx, job)
    if chunked is not None and objective_cost(replay, chunked, ctx.settings) < objective_cost(
        replay, best, ctx.settings
    ):
        return chunked
    return best


def exact_best_start(grid: ObjectiveGrid, earliest_s: int, latest_s: int, duration_s: int) -> tuple[int, int]:
    """The zone index and start in ``[earliest, latest]`` with the lowest exact integral over the run.

    On a step-wise signal the integral over ``[s, s + duration]`` is piecewise linear in ``s`` with kinks
    where the start or the *end* crosses a slot boundary, so its minimum lies at a range end, a
    start-aligned or an end-aligned start: trying all of them is exact (the planner's own candidates, only
    start-aligned ones, can miss a better end-aligned start). Ties go to the earliest start, then the lower
    zone index (the home zone is 0). Without any usable window: the earliest start in the home zone.

    :param grid: the objective grid (actual values for the oracle).
    :param earliest_s: earliest start (epoch seconds).
    :param latest_s: latest start (epoch seconds).
    :param duration_s: run time in seconds.
    """
    step, origin = grid.step_s, grid.origin_s
    latest_s = max(latest_s, earliest_s)

    def aligned(lo: int, hi: int, shift: int) -> np.ndarray:
        first, last = -(-(lo - origin) // step), (hi - origin) // step
        return origin + step * np.arange(first, last + 1, dtype=np.int64) - shift

    starts = np.unique(
        np.concatenate(
            [
                np.array([earliest_s, latest_s], np.int64),
                aligned(earliest_s, latest_s, 0),
                aligned(earliest_s + duration_s, latest_s + duration_s, duration_s),
            ]
        )
    )
    zones = np.arange(grid.zones, dtype=np.int64)[None, :]
    totals, usable = grid.integral(zones, starts[:, None], starts[:, None] + duration_s)
    scores = np.where(usable, totals, INVALID)
    best = int(np.argmin(scores))  # row-major: the earliest start first, then the lower zone index
    start_index, zone = divmod(best, grid.zones)
    if scores[start_index, zone] >= INVALID:
        return 0, earliest_s
    return int(zone), int(starts[start_index])


def _chunked_oracle(ctx: _Context, job: ReplayJob) -> Execution | None:
    replay = ctx.replay
    step = replay.config.step_s
    grid = _outlook_grid(replay, job.zones, job.submit_s, job.deadline_s, truth=True)
    best: tuple[int, Execution] | None = None
    for index, zone in enumerate(job.zones):
        planned = _plan_chunks(ctx, grid, index, job.submit_s, job.actual_s, job.deadline_s, running=0, started=False)
        if planned is None:
            continue
        cost, runs = planned
        slots = [(job.submit_s + a * step, job.submit_s + b * step) for a, b in runs]
        execution = _execute_slots(job, zone, slots, job.actual_s, 1)
        if best is None or cost < best[0]:
            best = (cost, execution)
    return None if best is None else best[1]


def decide_once(ctx: _Context, job: ReplayJob) -> Execution:
    """One rolling-mean argmin over all zones at submission, then sleep until that start (GSF SDK)."""
    replay = ctx.replay
    latest = _peer_latest_start(replay, job, ctx.settings.peer_margin)
    grid = _outlook_grid(replay, job.zones, job.submit_s, job.deadline_s)
    choice = best_windows(
        grid, duration_s=[job.estimate_s], earliest_s=[job.submit_s], latest_start_s=[latest], min_gain=0.0
    )
    return _contiguous(job, job.zones[int(choice.zone[0])], int(choice.start_s[0]), 1)


def threshold(ctx: _Context, job: ReplayJob) -> Execution:
    """Start when the latest actual is under the trailing percentile, or at the latest start."""
    replay, settings = ctx.replay, ctx.settings
    latest = _peer_latest_start(replay, job, settings.peer_margin)
    t, decisions = job.submit_s, 0
    while True:
        decisions += 1
        current = {z: replay.latest_actual(z, t) for z in job.zones}
        known = {z: v for z, v in current.items() if math.isfinite(v)}
        if t >= latest:
            zone = min(known, key=lambda z: known[z]) if known else job.zones[0]
            return _contiguous(job, zone, t, decisions)
        under = {z: v for z, v in known.items() if v <= _threshold_of(ctx, z, t)}
        if under:
            return _contiguous(job, min(under, key=lambda z: under[z]), t, decisions)
        t = min(_next_replan(t, settings.replan_s), latest)


def _threshold_of(ctx: _Context, zone: str, t_s: int) -> float:
    key = (zone, ctx.replay.slot_of(t_s))
    value = ctx.thresholds.get(key)
    if value is None:
        window = ctx.replay.trailing_actuals(zone, t_s, ctx.settings.threshold_window_s)
        window = window[np.isfinite(window)]
        value = float(np.percentile(window, ctx.settings.threshold_percentile)) if window.size else -math.inf
        if len(ctx.thresholds) > 100_000:
            ctx.thresholds.clear()
        ctx.thresholds[key] = value
    return value


def gridaware(ctx: _Context, job: ReplayJob) -> Execution:
    """Ours: the product's ``decide()`` at every wake-up it asks for (see the module docstring)."""
    if job.interruptible:
        return _gridaware_chunks(ctx, job)
    replay = ctx.replay
    typed = _typed_job(ctx, job, duration_s=job.estimate_s, earliest_s=job.submit_s)
    refresh, settings = timedelta(seconds=ctx.settings.replan_s), _planner_settings(ctx)
    t, decisions, previous = job.submit_s, 0, None
    while True:
        decisions += 1
        now = from_epoch(t)
        grid = replay.planning_grid(job.zones, t, job.deadline_s) if needs_signals(typed, now) else None
        decision = decide(typed, grid, now, previous, refresh=refresh, settings=settings)
        if decision.release:
            return _contiguous(job, decision.plan.zone, t, decisions)
        if not decision.fallback:
            previous = decision.window
        t = _wake_s(decision.wake_at, t)


def _typed_job(ctx: _Context, job: ReplayJob, *, duration_s: int, earliest_s: int) -> Job:
    """The product's :class:`Job` for (the rest of) a replayed job, as a task would declare it."""
    settings, weights = ctx.settings, ctx.replay.objective
    return Job(
        duration=timedelta(seconds=duration_s),
        earliest_start=from_epoch(earliest_s),
        deadline=from_epoch(job.deadline_s),
        zones=job.zones,
        interruptible=job.interruptible,
        min_chunk=timedelta(seconds=settings.min_chunk_s),
        resume_cost=timedelta(seconds=settings.resume_cost_s),
        carbon_weight=weights.carbon_weight,
        price_weight=weights.price_weight,
        min_gain=settings.min_gain,
        runtime_margin=settings.runtime_margin,
        job_id=job.job_id,
    )


def _planner_settings(ctx: _Context) -> PlannerSettings:
    config = ctx.replay.config
    return PlannerSettings(
        step=timedelta(seconds=config.step_s),
        forecaster=SeasonalForecaster(step_s=config.forecaster_step_s),
        optimism=ctx.settings.optimism,
        hysteresis=ctx.settings.hysteresis,
    )


def _wake_s(wake_at: datetime | None, t_s: int) -> int:
    """The next decision time in whole seconds (always later than ``t_s``)."""
    if wake_at is None:
        raise RuntimeError("a waiting decision names no wake-up")
    return max(t_s + 1, math.ceil(wake_at.timestamp()))


def _plan_chunks(
    ctx: _Context,
    grid: ObjectiveGrid,
    zone_index: int,
    t_s: int,
    remaining_s: int,
    end_limit_s: int,
    *,
    running: int,
    started: bool,
) -> tuple[int, tuple[tuple[int, int], ...]] | None:
    """The cheapest chunk set for ``remaining_s`` of work from ``t_s`` (job-aligned slots), or ``None``."""
    step = ctx.replay.config.step_s
    need = -(-remaining_s // step)
    count = (end_limit_s - t_s) // step
    if need <= 0 or count < need:
        return None
    costs = grid.slot_costs(zone_index, t_s, step, count)
    final_len = remaining_s - (need - 1) * step
    starts = t_s + step * np.arange(count, dtype=np.int64)
    final_total, final_ok = grid.integral(zone_index, starts, starts + final_len)
    final = np.where(final_ok, final_total, INVALID)
    resume = None
    if ctx.settings.resume_cost_s > 0:
        resume_total, resume_ok = grid.integral(zone_index, starts, starts + ctx.settings.resume_cost_s)
        resume = np.where(resume_ok, resume_total, INVALID // 4)
    min_chunk = -(-ctx.settings.min_chunk_s // step)
    choice = cheapest_chunks(
        costs, need=need, min_chunk=min_chunk, resume_costs=resume, running=running, started=started, final_costs=final
    )
    if choice is None:
        return None
    return choice.cost, choice.runs


def _gridaware_chunks(ctx: _Context, job: ReplayJob) -> Execution:
    """Interruptible: ``decide()`` on the remaining work; run while it says run, pause while it says wait."""
    replay = ctx.replay
    refresh, settings = timedelta(seconds=ctx.settings.replan_s), _planner_settings(ctx)
    done, running, decisions, t = 0, 0, 0, job.submit_s
    zone: str | None = None
    previous: Window | None = None
    executed: list[tuple[int, int]] = []
    while done < job.actual_s:
        remaining = job.estimate_s - done
        if remaining <= 0 or t >= job.deadline_s:
            executed.append((t, t + job.actual_s - done))  # ran longer than declared: go on to the end
            break
        typed = _typed_job(ctx, job, duration_s=remaining, earliest_s=t)
        decisions += 1
        now = from_epoch(t)
        zones = (zone,) if zone is not None else job.zones
        grid = replay.planning_grid(zones, t, job.deadline_s) if needs_signals(typed, now) else None
        progress = Progress(running_s=running, started=done > 0, zone=zone)
        decision = decide(typed, grid, now, previous, refresh=refresh, progress=progress, settings=settings)
        if decision.release:
            zone = decision.plan.zone
            until = job.actual_s - done if decision.wake_at is None else _wake_s(decision.wake_at, t) - t
            amount = min(until, job.actual_s - done)
            executed.append((t, t + amount))
            done, running, t = done + amount, running + amount, t + amount
        else:
            if not decision.fallback:
                previous = decision.window
            running = 0
            t = _wake_s(decision.wake_at, t)
    return _merge(job, zone or job.zones[0], executed, decisions)


def _execute_slots(job: ReplayJob, zone: str, slots: list[tuple[int, int]], work_s: int, decisions: int) -> Execution:
    executed: list[tuple[int, int]] = []
    done = 0
    for a, b in slots:
        if done >= work_s:
            break
        amount = min(b - a, work_s - done)
        executed.append((a, a + amount))
        done += amount
    if done < work_s and executed:  # runs on past the reserved slots
        a, b = executed[-1]
        executed[-1] = (a, b + work_s - done)
    return _merge(job, zone, executed, decisions)


def _merge(job: ReplayJob, zone: str, pieces: list[tuple[int, int]], decisions: int) -> Execution:
    runs: list[tuple[int, int]] = []
    for a, b in pieces:
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    resumes = tuple(a for a, _ in runs[1:])
    return Execution(job.job_id, zone, tuple(runs), resumes, decisions)


def objective_cost(replay: Replay, execution: Execution, settings: PolicySettings) -> float:
    """The actual normalised objective of an execution (value x hours), resume overheads included.

    :param replay: the replay (reads the actuals).
    :param execution: what ran.
    :param settings: for the resume cost.
    """
    weights = replay.objective
    total = 0.0
    spans = list(execution.runs)
    if settings.resume_cost_s:
        spans += [(r, r + settings.resume_cost_s) for r in execution.resumes]
    for kind, weight in (("carbon", weights.carbon_weight), ("price", weights.price_weight)):
        if weight:
            scale = replay.scales.get(kind, 1.0)
            total += weight * sum(replay.integral(execution.zone, kind, a, b) for a, b in spans) / scale
    return total


POLICIES: dict[str, Policy] = {
    "gridaware": gridaware,
    "run-now": run_now,
    "oracle": oracle,
    "decide-once": decide_once,
    "threshold": threshold,
}


def replay_policy(replay: Replay, name: str, jobs: list[ReplayJob], settings: PolicySettings) -> list[Execution]:
    """Run policy ``name`` over ``jobs`` (in submission order, so caches stay warm).

    :param replay: the world.
    :param name: one of :data:`POLICY_NAMES`.
    :param jobs: the jobs.
    :param settings: the knobs.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICY_NAMES)}")
    ctx = _Context(replay, settings)
    policy = POLICIES[name]
    order = sorted(range(len(jobs)), key=lambda k: jobs[k].submit_s)
    results: list[Execution | None] = [None] * len(jobs)
    for k in order:
        results[k] = policy(ctx, jobs[k])
    return [r for r in results if r is not None]
