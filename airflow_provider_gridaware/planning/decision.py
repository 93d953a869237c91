"""The one release rule: :func:`decide` says whether a job starts now, and if not, when to look again.

Everything that holds grid-aware work calls this function and nothing else decides: the deferrable
trigger, the sensor's poke, the worker's first plan before deferring (``@task.gridaware`` and the
dispatch operators) and the backtest's ``gridaware`` policy. So what the backtest measures is what ships.

It owns, in this order:

* **critical work** never waits (but never starts before its earliest start);
* **the latest start** (``deadline - duration x (1 + runtime_margin)``): reached, the job is released,
  in the zone it was committed to;
* **no usable signal**: flexible and batch work falls back to running by its latest start, asking again
  for signals every :data:`RETRY_WITHOUT_SIGNAL` meanwhile;
* otherwise the planner's best window (with hysteresis against the previous window): released when it
  starts now, else wait until the earlier of its start, the next refresh and the latest start.

Pure: no Airflow, no I/O; numpy loads only when a plan is made.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.times import format_duration, format_time, from_epoch, parse_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.planner import PlannerSettings, PlanningGrid

#: Without any usable signal, ask again this often (bounded by the latest start).
RETRY_WITHOUT_SIGNAL = timedelta(minutes=5)
#: Re-plans of many jobs after one refresh are spread over at most this long, so a triggerer holding
#: thousands does not plan them all in the same instant; they all still use the same fresh data.
REFRESH_SPREAD = timedelta(seconds=60)


class Action(str, Enum):
    """What the job does now."""

    RELEASE = "release"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Window:
    """The window a job is committed to: all that hysteresis needs of the previous decision.

    :param zone: the zone.
    :param start: the planned start.
    """

    zone: str
    start: datetime


@dataclass(frozen=True)
class Progress:
    """Work already done by an interruptible job (the backtest's executor, a paused and resumed job).

    :param running_s: how long the run in progress has been going (0 = paused).
    :param started: whether the job has run at all (its next start is then a resume).
    :param zone: the zone it runs in once started (it stays there).
    """

    running_s: int = 0
    started: bool = False
    zone: str | None = None


@dataclass(frozen=True)
class Decision:
    """The answer of :func:`decide`.

    :param action: release now, or wait.
    :param plan: where and when the job runs (for a wait: the window it waits for).
    :param decided_at: the time of the decision.
    :param wake_at: when to decide again (``None`` when released; for a released interruptible job,
        when its current chunk ends or the next refresh comes).
    :param reason: one plain sentence for the log, the XCom and the UI.
    :param fallback: no usable signal: the priority class's fallback was applied.
    """

    action: Action
    plan: Plan
    decided_at: datetime
    wake_at: datetime | None
    reason: str
    fallback: bool = False

    @property
    def release(self) -> bool:
        return self.action is Action.RELEASE

    @property
    def window(self) -> Window:
        """The committed window, to pass as ``previous`` to the next decision."""
        return Window(self.plan.zone, self.plan.start)

    def summary(self) -> dict[str, Any]:
        """The decision in a few JSON fields: what a waiting task's trigger keeps for the Grid page."""
        return {
            "decided_at": format_time(self.decided_at),
            "action": self.action.value,
            "reason": self.reason,
            "zone": self.plan.zone,
            "start": format_time(self.plan.start),
            "end": format_time(self.plan.end),
            "expected_signals": {unit: float(value) for unit, value in self.plan.expected_signals.items()},
            "fallback": self.fallback,
        }


def needs_signals(job: Job, now: datetime) -> bool:
    """Whether :func:`decide` would look at signals now (callers skip fetching them otherwise).

    :param job: the job.
    :param now: the decision time.
    """
    if job.priority_class is PriorityClass.CRITICAL:
        return False
    return now < job.latest_start or now < job.earliest_start


def refresh_boundary(now: datetime, refresh: timedelta) -> datetime:
    """The start of the refresh period ``now`` is in: a re-plan uses signals fetched since then.

    Periods are aligned to the epoch, the same for every job, so one upstream request per period serves
    all of them and no plan runs on data from before the current period.

    :param now: the time.
    :param refresh: the refresh interval.
    """
    period = refresh.total_seconds()
    return from_epoch(now.timestamp() // period * period)


def next_refresh(now: datetime, refresh: timedelta, job_id: str | None) -> datetime:
    """When the job next re-plans: just after the next refresh boundary, at a small per-job offset.

    :param now: the time.
    :param refresh: the refresh interval.
    :param job_id: spreads jobs over :data:`REFRESH_SPREAD` (or half the interval if shorter); every offset
        stays inside the period, so each re-plan still uses that period's data.
    """
    period = refresh.total_seconds()
    spread = min(REFRESH_SPREAD.total_seconds(), period / 2)
    offset = zlib.crc32((job_id or "").encode()) % 10_000 / 10_000 * spread
    boundary = now.timestamp() // period * period
    at = boundary + offset
    return from_epoch(at if at > now.timestamp() else at + period)


def decide(
    job: Job,
    grid: PlanningGrid | None,
    now: datetime,
    previous: Window | None = None,
    *,
    refresh: timedelta = timedelta(minutes=15),
    problems: Sequence[str] = (),
    progress: Progress | None = None,
    settings: PlannerSettings | None = None,
) -> Decision:
    """Release the job now, or say until when it waits. See the module docstring for the rules.

    :param job: the job (for an interruptible job in progress: the remaining work, from now).
    :param grid: the signals of the job's zones on a planning grid, or ``None`` when none is usable.
    :param now: the decision time (aware).
    :param previous: the window of the previous decision, kept unless a new one is clearly better.
    :param refresh: how often signals are refreshed (the longest wait between two decisions).
    :param problems: what went wrong reading signals (named in a no-signal fallback's reason); at the latest
        start, where no signals are read, the problems of the last read say whether it was a fallback.
    :param progress: for an interruptible job, what it has done so far.
    :param settings: planner settings.
    """
    now = parse_time(now, what="now")
    latest = job.latest_start
    if progress is not None and progress.zone is not None and progress.zone in job.zones:
        job = _pinned(job, progress.zone)
    if now < job.earliest_start and (job.priority_class is PriorityClass.CRITICAL or latest <= job.earliest_start):
        plan = fixed_plan(
            job, now, PlanStatus.BEST_NOW, "nothing to decide before the earliest start", start=job.earliest_start
        )
        return _wait(plan, now, job.earliest_start, f"waiting for the earliest start {format_time(job.earliest_start)}")
    if job.priority_class is PriorityClass.CRITICAL:
        plan = fixed_plan(job, now, PlanStatus.CRITICAL, "priority class critical: never waits")
        return _release(job, plan, now, plan.reason, refresh)
    if now >= latest:
        zone = previous.zone if previous is not None and previous.zone in job.zones else job.home_zone
        if grid is None and problems:
            reason = f"no usable signal ({_problems(problems)}): released at the latest start {format_time(latest)}"
            plan = fixed_plan(job, now, PlanStatus.NO_SIGNAL, reason, zone=zone)
            return _release(job, plan, now, reason, refresh, fallback=True)
        reason = f"latest start {format_time(latest)} reached: released to keep the deadline"
        plan = fixed_plan(job, now, PlanStatus.DEADLINE_AT_RISK, reason, zone=zone)
        return _release(job, plan, now, reason, refresh)
    chosen: Plan | None = None
    if grid is not None:
        from airflow_provider_gridaware.planning import planner

        chosen = planner.plan_job(
            job,
            grid,
            now=now,
            previous=previous,
            settings=settings,
            running_s=progress.running_s if progress else 0,
            started=progress.started if progress else False,
        )
        if chosen.status is PlanStatus.NO_SIGNAL:
            problems = [*problems, chosen.reason]
            chosen = None
    if chosen is None:
        wake = min(now + RETRY_WITHOUT_SIGNAL, latest)
        reason = (
            f"no usable signal ({_problems(problems)}): {job.priority_class.value} fallback, runs by the latest "
            f"start {format_time(latest)}; next try {format_time(wake)}"
        )
        fallback = fixed_plan(job, now, PlanStatus.NO_SIGNAL, reason, start=max(latest, job.earliest_start))
        return _wait(fallback, now, wake, reason, fallback=True)
    if chosen.start <= now:
        return _release(job, chosen, now, chosen.reason, refresh)
    wake = min(chosen.start, next_refresh(now, refresh, job.job_id), latest)
    return _wait(chosen, now, wake, f"waiting {format_duration((chosen.start - now).total_seconds())}: {chosen.reason}")


def _release(
    job: Job, plan: Plan, now: datetime, reason: str, refresh: timedelta, *, fallback: bool = False
) -> Decision:
    wake = None
    if job.interruptible and plan.chunks[0].end < plan.end:
        # A chunked plan runs its first chunk, then decides again (pause or go on).
        wake = min(plan.chunks[0].end, next_refresh(now, refresh, job.job_id))
    return Decision(Action.RELEASE, plan, now, wake, reason, fallback)


def _wait(plan: Plan, now: datetime, wake: datetime, reason: str, *, fallback: bool = False) -> Decision:
    return Decision(Action.WAIT, plan, now, max(wake, now), reason, fallback)


def _problems(problems: Sequence[str]) -> str:
    return "; ".join(problems) or "no source answered"


def _pinned(job: Job, zone: str) -> Job:
    """The job restricted to the zone it already runs in."""
    penalty = {z: p for z, p in job.zone_penalty.items() if z == zone}
    return dataclasses.replace(job, zones=(zone,), zone_penalty=penalty)


def fixed_plan(
    job: Job,
    now: datetime,
    status: PlanStatus,
    reason: str,
    *,
    start: datetime | None = None,
    zone: str | None = None,
) -> Plan:
    """A plan that does not look at signals: one run from ``start`` (default now), in ``zone`` (default home).

    :param job: the job.
    :param now: the planning time.
    :param status: why.
    :param reason: the sentence.
    :param start: when it runs.
    :param zone: where it runs.
    """
    start = start or now
    return Plan(
        zone=zone or job.home_zone,
        chunks=(Chunk(start, start + job.duration),),
        run_now=start <= max(now, job.earliest_start),  # at the earliest allowed start
        latest_start=max(job.latest_start, start),
        planned_at=now,
        status=status,
        reason=reason,
        job_id=job.job_id,
    )


# -- what the wait achieved ------------------------------------------------------------------------
@dataclass(frozen=True)
class Counterfactual:
    """What the job would have cost had it started at once in its home zone when the wait began.

    :param planned_at: when the wait began (the first decision).
    :param zone: the home zone.
    :param signals: expected mean signal per unit (``gCO2eq/kWh``, ``EUR/MWh``) of that run.
    :param objective: the same on the planner's normalised scale, if known.
    """

    planned_at: datetime
    zone: str
    signals: Mapping[str, float]
    objective: float | None = None

    @classmethod
    def of(cls, plan: Plan, home_zone: str) -> Counterfactual:
        """The "start now in the home zone" half of the first plan.

        :param plan: the first plan of the wait.
        :param home_zone: the job's home zone.
        """
        signals = {unit: float(value) for unit, value in plan.now_signals.items()}
        objective = None if plan.now_objective is None else float(plan.now_objective)
        return cls(plan.planned_at, home_zone, signals, objective)

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": "start at once in the home zone when the wait began",
            "planned_at": format_time(self.planned_at),
            "zone": self.zone,
            "signals": dict(self.signals),
            "objective": self.objective,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counterfactual:
        objective = data.get("objective")
        return cls(
            planned_at=parse_time(data["planned_at"], what="counterfactual planned_at"),
            zone=str(data["zone"]),
            signals={str(k): float(v) for k, v in dict(data.get("signals") or {}).items()},
            objective=None if objective is None else float(objective),
        )


def released_summary(
    decision: Decision, counterfactual: Counterfactual | None, waiting_since: datetime | None
) -> tuple[str, dict[str, float]]:
    """The release in plain words, and the expected relative saving per unit against the counterfactual.

    After a wait the sentence compares the window the job runs in with starting when the wait began; it
    never says "runs at once" about a job that waited.

    :param decision: the releasing decision.
    :param counterfactual: start at once when the wait began, if known.
    :param waiting_since: when the wait began.
    """
    plan = decision.plan
    savings: dict[str, float] = {}
    if counterfactual is not None:
        for unit, at_once in counterfactual.signals.items():
            expected = plan.expected_signals.get(unit)
            if expected is not None and at_once:
                savings[unit] = (at_once - expected) / abs(at_once)
    waited = 0.0 if waiting_since is None else (decision.decided_at - waiting_since).total_seconds()
    if waited < 60:
        return decision.reason, savings
    where = f" in {plan.zone}"
    expected_text = ", ".join(f"{v:.0f} {u}" for u, v in plan.expected_signals.items())
    text = f"released after waiting {format_duration(waited)}{where}"
    if decision.fallback or plan.status in (PlanStatus.NO_SIGNAL, PlanStatus.DEADLINE_AT_RISK):
        return f"{text}: {decision.reason}", savings
    if expected_text and counterfactual is not None and counterfactual.signals:
        then = ", ".join(f"{v:.0f} {u}" for u, v in counterfactual.signals.items())
        gains = ", ".join(f"{s:.0%} lower" for s in savings.values())
        text += f": expected {expected_text} vs {then} had it started when the wait began"
        text += f" ({format_time(counterfactual.planned_at)}, {counterfactual.zone})"
        if gains:
            text += f", {gains}"
    elif expected_text:
        text += f": expected {expected_text}"
    return text, savings


def release_payload(
    decision: Decision,
    *,
    counterfactual: Counterfactual | None,
    waiting_since: datetime | None,
    problems: Sequence[str] = (),
    replans: int = 0,
) -> dict[str, Any]:
    """The released decision as the task's XCom / trigger event (plain JSON).

    :param decision: the releasing decision.
    :param counterfactual: start at once in the home zone when the wait began, if known.
    :param waiting_since: when the wait began.
    :param problems: what went wrong reading signals.
    :param replans: how many decisions the wait took.
    """
    reason, savings = released_summary(decision, counterfactual, waiting_since)
    waited = 0.0 if waiting_since is None else max(0.0, (decision.decided_at - waiting_since).total_seconds())
    return {
        "status": "released",
        "released_at": format_time(decision.decided_at),
        "reason": reason,
        "plan": decision.plan.to_dict(),
        "fallback": decision.fallback,
        "problems": list(problems),
        "replans": replans,
        "waiting_since": None if waiting_since is None else format_time(waiting_since),
        "waited_seconds": round(waited, 3),
        "counterfactual": None if counterfactual is None else counterfactual.to_dict(),
        "expected_saving": savings,
    }
