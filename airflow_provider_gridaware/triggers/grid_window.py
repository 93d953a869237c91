"""GridWindowTrigger: wait in the triggerer for the cleanest (or cheapest) window a job can still finish in.

It re-plans on every forecast refresh (receding horizon), sleeps until the planned start or the next
refresh, and fires when the window opens. It never fires later than the job's latest start: every
sleep and every upstream call is bounded by it, and when signals fail it follows the priority class's
fallback instead of guessing.
"""

from __future__ import annotations

import asyncio
import importlib
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.triggers.shared_signals import SharedSignalCache, SignalKey, shared_cache

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries

UTC = timezone.utc
T = TypeVar("T")
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


async def fetch_all(
    cache: SharedSignalCache, keys: list[SignalKey], *, max_age: float
) -> list[SignalSeries | GridSignalError]:
    """Series (or the source's error) per key. Fresh cache hits create no task: thousands of waiting
    triggers mostly hit the cache, and allocating nothing for them keeps memory and loop lag low."""
    found: list[SignalSeries | None] = [cache.peek(key, max_age=max_age) for key in keys]
    missing = [i for i, series in enumerate(found) if series is None]
    fetched: list[SignalSeries | BaseException]
    if not missing:
        fetched = []
    elif len(missing) == 1:
        try:
            fetched = [await cache.get(keys[missing[0]], max_age=max_age)]
        except GridSignalError as exc:
            fetched = [exc]
    else:
        fetched = list(
            await asyncio.gather(*(cache.get(keys[i], max_age=max_age) for i in missing), return_exceptions=True)
        )
    by_index = dict(zip(missing, fetched, strict=True))
    results: list[SignalSeries | GridSignalError] = []
    for index, series in enumerate(found):
        outcome = series if series is not None else by_index[index]
        if isinstance(outcome, BaseException) and not isinstance(outcome, GridSignalError):
            raise outcome
        results.append(outcome)
    return results


async def _bounded(awaitable: Coroutine[Any, Any, T], seconds: float) -> T:
    """``awaitable`` with a time limit; on 3.11+ without wrapping it in a task of its own (memory per trigger)."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with timeout(seconds):
        return await awaitable


# Triggers waiting on the same source share one (frozen) SignalSource instance.
_SOURCES: dict[SignalSource, SignalSource] = {}


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
        validated = request if isinstance(request, GridWindowRequest) else GridWindowRequest.model_validate(request)
        # Keep only compact state: thousands of these wait in one triggerer, so per-trigger bytes matter.
        self.job = Job.from_dict(validated.job)
        self.sources = tuple(_SOURCES.setdefault(s, s) for s in validated.sources)
        self.refresh_seconds = validated.refresh_seconds
        self.end_from_trigger = validated.end_from_trigger
        self.use_history = validated.use_history
        self._previous: Plan | None = None
        # The first plan's "start now" is what the job would have cost without waiting (for the ledger).
        self._counterfactual: dict[str, Any] | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    @property
    def request(self) -> GridWindowRequest:
        """The request this trigger was built from (rebuilt on demand, not stored)."""
        return GridWindowRequest(
            job=self.job.to_dict(),
            sources=list(self.sources),
            refresh_seconds=self.refresh_seconds,
            end_from_trigger=self.end_from_trigger,
            use_history=self.use_history,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        replans = 0
        # numpy and the planner load on first use; import them off the event loop (once per triggerer).
        await asyncio.to_thread(importlib.import_module, "airflow_provider_gridaware.planning.planner")
        while True:
            now = utcnow()
            latest_start = self.job.latest_start
            if now < self.job.earliest_start and (
                self.job.priority_class is PriorityClass.CRITICAL or now >= latest_start
            ):
                await self._sleep_until(self.job.earliest_start)  # nothing to decide before it may start
                continue
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
            planned, problems = await self._replan(now, latest_start)
            if planned is None:
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
            plan = planned
            replans += 1
            self.log.info("plan %d: %s", replans, plan.reason)
            # ``run_now`` means "at the earliest allowed start", which may still be ahead: release by time only.
            if plan.start <= now:
                yield self._event(plan, problems, replans)
                return
            wake = min(plan.start, self._next_refresh(now), latest_start)
            await self._sleep_until(wake)

    async def _replan(self, now: datetime, latest_start: datetime) -> tuple[Plan | None, list[str]]:
        """Fetch signals (bounded by the latest start) and plan; ``None`` when no signal is usable."""
        try:
            carbon, price, problems = await _bounded(self._signals(now), (latest_start - now).total_seconds())
        except asyncio.TimeoutError:
            return None, ["fetching signals outlasted the latest start"]
        if not carbon and not price:
            return None, problems
        history = await self._history() if self.use_history else {}
        plan = plan_job(self.job, carbon=carbon, price=price, now=now, previous=self._previous, history=history)
        # Keep a slim copy for hysteresis at the next refresh: its window is all the planner looks at.
        self._previous = replace(
            plan, reason="", expected_signals={}, now_signals={}, expected_objective=None, now_objective=None
        )
        if self._counterfactual is None:
            self._counterfactual = self._counterfactual_of(plan)
        return plan, problems

    async def _signals(self, now: datetime) -> tuple[dict[str, SignalSeries], dict[str, SignalSeries], list[str]]:
        """Fetch every source through the shared cache; fall back to cached data by priority class."""
        cache = shared_cache()
        keys = [SignalKey(s.conn_id, s.zone, s.kind, True) for s in self.sources]
        results = await fetch_all(cache, keys, max_age=self.refresh_seconds)
        carbon: dict[str, SignalSeries] = {}
        price: dict[str, SignalSeries] = {}
        problems: list[str] = []
        max_age = None if self.job.priority_class is PriorityClass.BATCH else FLEXIBLE_MAX_CACHE_AGE
        for source, key, result in zip(self.sources, keys, results, strict=True):
            series: SignalSeries | None
            if isinstance(result, GridSignalError):
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

    def _next_refresh(self, now: datetime) -> datetime:
        """The next refresh: every ``refresh_seconds``, at a fixed per-job phase.

        Phases spread waiting triggers evenly over the interval, so thousands of them re-plan a few at a
        time instead of all at once (which would stall the triggerer's event loop).
        """
        period = self.refresh_seconds
        phase = zlib.crc32((self.job.job_id or repr(self.job)).encode()) % 10_000 / 10_000 * period
        ticks = (now.timestamp() - phase) // period + 1
        return datetime.fromtimestamp(ticks * period + phase, UTC)

    async def _history(self) -> dict[str, SignalSeries]:
        """Recent carbon actuals per zone, through the shared cache; missing history is not an error."""
        cache = shared_cache()
        sources = [s for s in self.sources if s.kind == "carbon_intensity"]
        keys = [SignalKey(s.conn_id, s.zone, s.kind, False) for s in sources]
        results = await fetch_all(cache, keys, max_age=HISTORY_MAX_AGE.total_seconds())
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

    def _counterfactual_of(self, plan: Plan) -> dict[str, Any]:
        return {
            "what": "start at once in the home zone when the wait began",
            "planned_at": format_time(plan.planned_at),
            "zone": self.job.home_zone,
            # Plain floats: numpy scalars from the planner are larger and not JSON-native.
            "signals": {unit: float(value) for unit, value in plan.now_signals.items()},
            "objective": None if plan.now_objective is None else float(plan.now_objective),
        }

    def _event(self, plan: Plan, problems: list[str], replans: int) -> TriggerEvent:
        decision = {
            "status": "released",
            "released_at": format_time(utcnow()),
            "plan": plan.to_dict(),
            "problems": problems,
            "replans": replans,
            "counterfactual": self._counterfactual or self._counterfactual_of(plan),
        }
        self.log.info("released: %s", plan.reason)
        if self.end_from_trigger:
            return TaskSuccessEvent(xcoms={"return_value": decision})
        return TriggerEvent(decision)

    @staticmethod
    async def _sleep_until(when: datetime) -> None:
        # Sleep in bounded steps: a changed system clock or a suspended VM must not overshoot the latest start.
        while (remaining := (when - utcnow()).total_seconds()) > 0:
            await _sleep(min(remaining, 60.0))


def fixed_plan(job: Job, now: datetime, status: PlanStatus, reason: str, *, start: datetime | None = None) -> Plan:
    """A plan that does not look at signals: the home zone, from ``start`` (default now); fallbacks, critical work."""
    start = start or now
    return Plan(
        zone=job.home_zone,
        chunks=(Chunk(start, start + job.duration),),
        run_now=start <= now,
        latest_start=max(job.latest_start, now),
        planned_at=now,
        status=status,
        reason=reason,
        job_id=job.job_id,
    )


# Prepared planning grids shared by triggers that plan on the same series in the same grid slot: with
# thousands of deferred tasks on a few zones, preparing once per slot instead of once per task is what
# keeps the triggerer's event loop responsive.
_GRID_CACHE: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
_GRID_CACHE_SIZE = 64
_GRID_UNTIL_BUCKET = timedelta(hours=6)


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
    step = planner.PlannerSettings().step
    slot = int(now.timestamp()) // int(step.total_seconds())
    until_bucket = -(-int(max(job.deadline, now).timestamp()) // int(_GRID_UNTIL_BUCKET.total_seconds()))
    held = tuple(x for s in signals for x in (s.carbon, s.price, s.carbon_history))
    key = (tuple(job.zones), tuple(id(x) for x in held), slot, until_bucket)
    cached = _GRID_CACHE.get(key)
    # Identity check: the key holds ids, the value holds the objects, so a recycled id can never match.
    if cached is not None and all(a is b for a, b in zip(cached[0], held, strict=True)):
        _GRID_CACHE.move_to_end(key)
        grid = cached[1]
    else:
        until = datetime.fromtimestamp(until_bucket * _GRID_UNTIL_BUCKET.total_seconds(), UTC)
        grid = planner.prepare(signals, now=now, until=until)
        _GRID_CACHE[key] = (held, grid)
        while len(_GRID_CACHE) > _GRID_CACHE_SIZE:
            _GRID_CACHE.popitem(last=False)
    return planner.plan_job(job, grid, now=now, previous=previous)
