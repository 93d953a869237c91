"""When to release a job: our receding-horizon policy and the peers it is compared with.

``gridaware`` re-plans at every wake-up with what is known then and releases only when the plan says
"now" (or at the latest start). Between wake-ups it sleeps until the earlier of the planned start and
the next re-plan, so a better forecast can still move the job, and a worse one cannot push it past its
latest start. The peers are what other tools do:

* ``run-now``: start at submission in the home zone;
* ``oracle``: perfect knowledge of the actual signal (the best any policy could do);
* ``decide-once``: the GSF Carbon Aware SDK / carbonaware.dev way: one rolling-mean argmin over all
  zones at submission with the information then, then sleep until that start; no runtime margin;
* ``threshold``: start as soon as the latest actual is below a percentile of the trailing week (or at
  the latest start), in the candidate zone with the lowest latest value.

:func:`next_action` is the same release rule for live triggers, on a typed :class:`Plan`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from airflow_provider_gridaware.planning.core import INVALID, ObjectiveGrid, best_windows, cheapest_chunks
from airflow_provider_gridaware.planning.job import DEFAULT_MIN_GAIN, DEFAULT_RUNTIME_MARGIN
from airflow_provider_gridaware.planning.plan import Plan
from airflow_provider_gridaware.planning.replay import DAY_S, Replay

POLICY_NAMES = ("gridaware", "run-now", "oracle", "decide-once", "threshold")
# Tuned once on DE, GB and FR 2020 at round values, then left alone: see docs/planner.md.
DEFAULT_OPTIMISM = 0.3
DEFAULT_HYSTERESIS = 0.05


# -- live release rule ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What a waiting task does next.

    :param release: start the job now (in ``plan.zone``).
    :param wake_at: when to wake up and re-plan (``None`` when releasing).
    """

    release: bool
    wake_at: datetime | None = None


def next_action(plan: Plan, now: datetime, *, replan_every: timedelta = timedelta(minutes=30)) -> Action:
    """The receding-horizon rule: release when the plan says now or the latest start is reached, else sleep.

    :param plan: the plan just made at ``now``.
    :param now: the current time (aware).
    :param replan_every: the longest sleep before re-planning with fresher signals.
    """
    # Not ``plan.run_now``: it means "at the earliest allowed start", which may still be ahead.
    if now >= plan.latest_start or plan.start <= now:
        return Action(release=True)
    return Action(release=False, wake_at=min(plan.start, now + replan_every, plan.latest_start))


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

    :param runtime_margin: ours: relative runtime allowance kept before the deadline.
    :param min_gain: ours: relative gain below which the job starts now.
    :param replan_s: ours and threshold: longest sleep between decisions.
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


def _latest_release(replay: Replay, job: ReplayJob, margin: float) -> int:
    # Releases happen at submission or on grid boundaries, never after the latest start.
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

    Its start range covers every other policy's (up to ``deadline - estimate``), so no policy beats it.
    Interruptible jobs take the better of the best chunk set and the best contiguous window.
    """
    replay = ctx.replay
    latest = _latest_release(replay, job, 0.0)
    grid = _outlook_grid(replay, job.zones, job.submit_s, max(job.deadline_s, latest + job.actual_s), truth=True)
    choice = best_windows(
        grid, duration_s=[job.actual_s], earliest_s=[job.submit_s], latest_start_s=[latest], min_gain=0.0
    )
    best = _contiguous(job, job.zones[int(choice.zone[0])], int(choice.start_s[0]), 1)
    if not job.interruptible:
        return best
    chunked = _chunked_oracle(ctx, job)
    if chunked is not None and objective_cost(replay, chunked, ctx.settings) < objective_cost(
        replay, best, ctx.settings
    ):
        return chunked
    return best


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
    latest = _latest_release(replay, job, ctx.settings.peer_margin)
    grid = _outlook_grid(replay, job.zones, job.submit_s, job.deadline_s)
    choice = best_windows(
        grid, duration_s=[job.estimate_s], earliest_s=[job.submit_s], latest_start_s=[latest], min_gain=0.0
    )
    return _contiguous(job, job.zones[int(choice.zone[0])], int(choice.start_s[0]), 1)


def threshold(ctx: _Context, job: ReplayJob) -> Execution:
    """Start when the latest actual is under the trailing percentile, or at the latest start."""
    replay, settings = ctx.replay, ctx.settings
    latest = _latest_release(replay, job, settings.peer_margin)
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
    """Ours: receding horizon with a committed plan.

    At every wake-up the outlook is re-read (actuals so far, the newest vintage, the own forecaster beyond)
    and the best window re-planned. Future slots are credited ``optimism`` x their expected forecast error:
    forecasts regress to the mean with the lead, so a far dip is usually deeper than forecast, and waiting
    keeps the option to choose with a better forecast later. The committed window is replaced only by one
    better by ``hysteresis`` (relative), so forecast noise does not make the job chase a receding minimum.
    The job starts when its committed window arrives, or at the latest start.
    """
    if job.interruptible:
        return _gridaware_chunks(ctx, job)
    replay, settings = ctx.replay, ctx.settings
    latest = _latest_release(replay, job, settings.runtime_margin)
    t, decisions = job.submit_s, 0
    committed: tuple[int, int] | None = None  # (zone index, start)
    while True:
        decisions += 1
        grid = _outlook_grid(replay, job.zones, t, job.deadline_s, optimism=settings.optimism)
        choice = best_windows(
            grid, duration_s=[job.estimate_s], earliest_s=[t], latest_start_s=[latest], min_gain=settings.min_gain
        )
        best = (int(choice.zone[0]), int(choice.start_s[0]))
        if (
            committed is None
            or t >= latest
            or (
                best != committed
                and _switch(grid, committed, int(choice.score[0]), job.estimate_s, settings.hysteresis)
            )
        ):
            committed = best
        if committed[1] <= t:
            return _contiguous(job, job.zones[committed[0]], t, decisions)
        t = min(committed[1], _next_replan(t, settings.replan_s), latest)


def _switch(
    grid: ObjectiveGrid, committed: tuple[int, int], new_score: int, duration_s: int, hysteresis: float
) -> bool:
    """Whether a new best window (``new_score``) beats the committed one, re-scored now, by ``hysteresis``."""
    total, ok = grid.integral(committed[0], committed[1], committed[1] + duration_s)
    if not bool(ok):
        return True  # the committed window lost its signal: take the new best
    old_score = int(total)
    return new_score < old_score - hysteresis * abs(old_score)


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
    """Interruptible: re-plan the remaining work's chunks every ``replan_s``; run the slots the plan runs now."""
    replay, settings = ctx.replay, ctx.settings
    step = replay.config.step_s
    end_limit = job.deadline_s - math.ceil(job.estimate_s * settings.runtime_margin)
    replan_slots = max(1, settings.replan_s // step)
    done, running, started, decisions = 0, 0, False, 0
    zone: str | None = None
    executed: list[tuple[int, int]] = []
    planned: set[int] = set()
    plan_from = 0
    i = 0
    while done < job.actual_s:
        t = job.submit_s + i * step
        remaining_est = job.estimate_s - done
        run = False
        if remaining_est <= 0:
            run = True  # ran longer than estimated: keep going until done
        else:
            if i == plan_from or (i - plan_from) >= replan_slots or not planned:
                decisions += 1
                plan = _replan_chunks(ctx, job, t, remaining_est, end_limit, zone, running, started)
                if plan is None:
                    planned = set(range(i, i + -(-remaining_est // step)))  # cannot plan: run straight through
                    zone = zone or job.zones[0]
                else:
                    zone, runs = plan
                    planned = {i + k for a, b in runs for k in range(a, b)}
                plan_from = i
            run = i in planned
        if run:
            amount = min(step, job.actual_s - done)
            executed.append((t, t + amount))
            done += amount
            running += 1
            started = True
        else:
            running = 0
        i += 1
    return _merge(job, zone or job.zones[0], executed, decisions)


def _replan_chunks(
    ctx: _Context,
    job: ReplayJob,
    t_s: int,
    remaining_s: int,
    end_limit_s: int,
    zone: str | None,
    running: int,
    started: bool,
) -> tuple[str, tuple[tuple[int, int], ...]] | None:
    replay, settings = ctx.replay, ctx.settings
    zones = (zone,) if zone is not None else job.zones
    grid = _outlook_grid(replay, zones, t_s, max(end_limit_s, t_s + remaining_s))
    step = replay.config.step_s
    need = -(-remaining_s // step)
    best: tuple[int, str, tuple[tuple[int, int], ...]] | None = None
    for index, candidate in enumerate(zones):
        planned = _plan_chunks(ctx, grid, index, t_s, remaining_s, end_limit_s, running=running, started=started)
        if planned is not None and (best is None or planned[0] < best[0]):
            best = (planned[0], candidate, planned[1])
    if best is None:
        return None
    # "Now" straight through in the home (or current) zone: keep it unless the chunks gain min_gain.
    now_total, now_ok = grid.integral(0, t_s, t_s + remaining_s)
    if bool(now_ok[()] if np.ndim(now_ok) == 0 else now_ok.reshape(-1)[0]):
        now_cost = int(np.asarray(now_total).reshape(-1)[0])
        gain = (now_cost - best[0]) / max(abs(now_cost), 1)
        if gain < settings.min_gain:
            return zones[0], ((0, need),)
    return best[1], best[2]


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
