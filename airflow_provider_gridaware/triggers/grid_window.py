"""GridWindowTrigger: wait in the triggerer for the cleanest (or cheapest) window a job can still finish in.

It re-plans on every forecast refresh (receding horizon), sleeps until the planned start or the next
refresh, and fires when the window opens. It never fires later than the job's latest start: every
sleep and every upstream call is bounded by it, and when signals fail it follows the priority class's
fallback instead of guessing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.triggers.shared_signals import SignalKey, shared_cache

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries

UTC = timezone.utc
# Without any signal, ask again at most this often (a failing source is cached briefly anyway).
RETRY_WITHOUT_SIGNAL = timedelta(minutes=5)
# A flexible job plans on cached data at most this old; a batch job accepts any cached data.
FLEXIBLE_MAX_CACHE_AGE = timedelta(hours=6)
# Recent actuals feed the planner's own forecaster (beyond the source's horizon); they change slowly.
HISTORY_MAX_AGE = timedelta(hours=6)


class SignalSource(BaseModel):
    """One signal the planner uses: a connection, a zone, and which signal.

    :param conn_id: an Airflow connection of a ``gridaware_*`` type.
    :param zone: the zone in that source's naming; also the zone name the plan uses.
    :param kind: ``carbon_intensity`` or ``price``.
    """

    model_config = ConfigDict(frozen=True)

    conn_id: str
    zone: str
    kind: Literal["carbon_intensity", "price"] = "carbon_intensity"


class GridWindowRequest(BaseModel):
    """Everything the trigger needs, serialised as one typed object (so a triggerer restart loses nothing).

    :param job: the job (``Job.to_dict()``).
    :param sources: the signals per candidate zone.
    :param refresh_seconds: how often to re-fetch forecasts and re-plan.
    :param end_from_trigger: end the task from the triggerer (``TaskSuccessEvent``) with the decision as
        its XCom, so no worker slot is used at all.
    :param use_history: also read recent actuals (refreshed every few hours) so the planner's own
        forecaster can extend a short source horizon; failures to read them are only logged.
    """

    model_config = ConfigDict(frozen=True)

    job: dict[str, Any]
    sources: list[SignalSource] = Field(min_length=1)
    refresh_seconds: float = Field(default=900.0, gt=0)
    end_from_trigger: bool = False
    use_history: bool = True


def utcnow() -> datetime:
    return datetime.now(UTC)


# Module-level so tests can drive the trigger on a simulated clock.
_sleep = asyncio.sleep


class GridWindowTrigger(BaseTrigger):
    """Defers a task until its grid window opens; the event carries the decision (a :class:`Plan`).

    :param request: the :class:`GridWindowRequest` (or its JSON form).
    """

    def __init__(self, request: GridWindowRequest | dict[str, Any]) -> None:
        super().__init__()
        self.request = request if isinstance(request, GridWindowRequest) else GridWindowRequest.model_validate(request)
        self.job = Job.from_dict(self.request.job)
        self._previous: Plan | None = None
        # The first plan's "start now" is what the job would have cost without waiting (for the ledger).
        self._first: Plan | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        replans = 0
        while True:
            now = utcnow()
            latest_start = self.job.latest_start
            if self.job.priority_class is PriorityClass.CRITICAL:
                yield self._event(
                    self._fixed_plan(now, PlanStatus.CRITICAL, "priority class critical: never waits"), [], replans
                )
                return
            if now >= latest_start:
                plan = self._fixed_plan(
                    now,
                    PlanStatus.DEADLINE_AT_RISK,
                    f"latest start {format_time(latest_start)} reached: released to keep the deadline",
                )
                yield self._event(plan, [], replans)
                return
            budget = (latest_start - now).total_seconds()
            try:
                carbon, price, problems = await asyncio.wait_for(self._signals(now), timeout=budget)
            except asyncio.TimeoutError:
                carbon, price, problems = {}, {}, ["fetching signals outlasted the latest start"]
            if not carbon and not price:
                wake = min(now + RETRY_WITHOUT_SIGNAL, latest_start)
                self.log.warning(
                    "no usable signal (%s); flexible fallback: run by the latest start %s; next try %s",
                    "; ".join(problems),
                    format_time(latest_start),
                    format_time(wake),
                )
                await self._sleep_until(wake)
                if utcnow() >= latest_start:
                    plan = self._fixed_plan(
                        utcnow(),
                        PlanStatus.NO_SIGNAL,
                        f"no usable signal ({'; '.join(problems)}): released at the latest start",
                    )
                    yield self._event(plan, problems, replans)
                    return
                continue
            history = await self._history() if self.request.use_history else {}
            plan = plan_job(self.job, carbon=carbon, price=price, now=now, previous=self._previous, history=history)
            self._previous = plan
            self._first = self._first or plan
            replans += 1
            self.log.info("plan %d: %s", replans, plan.reason)
            if plan.run_now or plan.start <= now:
                yield self._event(plan, problems, replans)
                return
            wake = min(plan.start, now + timedelta(seconds=self.request.refresh_seconds), latest_start)
            await self._sleep_until(wake)

    async def _signals(self, now: datetime) -> tuple[dict[str, SignalSeries], dict[str, SignalSeries], list[str]]:
        """Fetch every source through the shared cache; fall back to cached data by priority class."""
        cache = shared_cache()
        keys = [SignalKey(s.conn_id, s.zone, s.kind, True) for s in self.request.sources]
        results = await asyncio.gather(
            *(cache.get(key, max_age=self.request.refresh_seconds) for key in keys), return_exceptions=True
        )
        carbon: dict[str, SignalSeries] = {}
        price: dict[str, SignalSeries] = {}
        problems: list[str] = []
        max_age = None if self.job.priority_class is PriorityClass.BATCH else FLEXIBLE_MAX_CACHE_AGE
        for source, key, result in zip(self.request.sources, keys, results, strict=True):
            series: SignalSeries | None
            if isinstance(result, BaseException):
                if not isinstance(result, GridSignalError):
                    raise result
                problems.append(f"{source.conn_id}/{source.zone}: {result}")
                cached = cache.last_good(key)
                series = None
                if cached is not None and (max_age is None or cached[1] <= max_age.total_seconds()):
                    series = cached[0]
                    problems[-1] += f" (planning on data cached {cached[1] / 60:.0f} min ago)"
            else:
                series = result
            if series is not None:
                (carbon if source.kind == "carbon_intensity" else price)[source.zone] = series
        return carbon, price, problems

    async def _history(self) -> dict[str, SignalSeries]:
        """Recent carbon actuals per zone, through the shared cache; missing history is not an error."""
        cache = shared_cache()
        sources = [s for s in self.request.sources if s.kind == "carbon_intensity"]
        keys = [SignalKey(s.conn_id, s.zone, s.kind, False) for s in sources]
        results = await asyncio.gather(
            *(cache.get(key, max_age=HISTORY_MAX_AGE.total_seconds()) for key in keys), return_exceptions=True
        )
        history: dict[str, SignalSeries] = {}
        for source, result in zip(sources, results, strict=True):
            if isinstance(result, GridSignalError):
                self.log.info(
                    "no recent actuals for %s/%s (%s): planning on the forecast alone",
                    source.conn_id,
                    source.zone,
                    result,
                )
            elif isinstance(result, BaseException):
                raise result
            else:
                history[source.zone] = result
        return history

    def _fixed_plan(self, now: datetime, status: PlanStatus, reason: str) -> Plan:
        return fixed_plan(self.job, now, status, reason)

    def _event(self, plan: Plan, problems: list[str], replans: int) -> TriggerEvent:
        first = self._first or plan
        decision = {
            "status": "released",
            "released_at": format_time(utcnow()),
            "plan": plan.to_dict(),
            "problems": problems,
            "replans": replans,
            "counterfactual": {
                "what": "start at once in the home zone when the wait began",
                "planned_at": format_time(first.planned_at),
                "zone": self.job.home_zone,
                "signals": dict(first.now_signals),
                "objective": first.now_objective,
            },
        }
        self.log.info("released: %s", plan.reason)
        if self.request.end_from_trigger:
            return TaskSuccessEvent(xcoms={"return_value": decision})
        return TriggerEvent(decision)

    @staticmethod
    async def _sleep_until(when: datetime) -> None:
        # Sleep in bounded steps: a changed system clock or a suspended VM must not overshoot the latest start.
        while (remaining := (when - utcnow()).total_seconds()) > 0:
            await _sleep(min(remaining, 60.0))


def fixed_plan(job: Job, now: datetime, status: PlanStatus, reason: str, *, run_now: bool = True) -> Plan:
    """A plan that does not look at signals: the home zone, starting now (fallbacks, critical jobs)."""
    return Plan(
        zone=job.home_zone,
        chunks=(Chunk(now, now + job.duration),),
        run_now=run_now,
        latest_start=max(job.latest_start, now),
        planned_at=now,
        status=status,
        reason=reason,
        job_id=job.job_id,
    )


def plan_job(
    job: Job,
    *,
    carbon: dict[str, SignalSeries],
    price: dict[str, SignalSeries],
    now: datetime,
    previous: Plan | None = None,
    history: dict[str, SignalSeries] | None = None,
) -> Plan:
    """Plan ``job`` on the signals at hand (the pure planner; numpy loads here, in the triggerer only)."""
    from airflow_provider_gridaware.planning import planner

    history = history or {}
    signals = [
        planner.ZoneSignals(zone=zone, carbon=carbon.get(zone), price=price.get(zone), carbon_history=history.get(zone))
        for zone in job.zones
    ]
    return planner.plan(job, signals, now=now, previous=previous)
