"""GridWindowTrigger: wait in the triggerer for the cleanest (or cheapest) window a job can still finish in.

It re-plans on every forecast refresh (receding horizon), sleeps until the planned start or the next
refresh, and fires when the window opens. It never fires later than the job's latest start: every
sleep and every upstream call is bounded by it, and when signals fail it follows the priority class's
fallback instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import weakref
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.triggers.shared_signals import SharedSignalCache, SignalKey, shared_cache

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.triggers.shared_signals import Outcome

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


async def _settle(pending: list[Outcome | asyncio.Future[Outcome]], seconds: float) -> list[Outcome]:
    """Each future in ``pending`` replaced by its outcome, waiting at most ``seconds`` in all.

    The futures are the callers' own (see :meth:`SharedSignalCache.lookup`): a trigger waiting on a request
    in flight holds one small future per request, and on 3.11+ no task of its own.
    """
    done = [item for item in pending if not isinstance(item, asyncio.Future)]
    if len(done) == len(pending):
        return done
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # Python 3.10
        return await asyncio.wait_for(_outcomes(pending), seconds)
    async with timeout(seconds):
        return await _outcomes(pending)


async def _outcomes(pending: list[Outcome | asyncio.Future[Outcome]]) -> list[Outcome]:
    return [await item if isinstance(item, asyncio.Future) else item for item in pending]


# Triggers waiting on the same sources share one (frozen) SignalSource instance, tuple of them and SignalKey.
_SOURCES: dict[Any, Any] = {}
_KEYS: dict[tuple[SignalSource, bool], SignalKey] = {}


def _key(source: SignalSource, forecast: bool) -> SignalKey:
    key = _KEYS.get((source, forecast))
    if key is None:
        key = _KEYS[(source, forecast)] = SignalKey(source.conn_id, source.zone, source.kind, forecast)
    return key


_PLANNER_MODULE = "airflow_provider_gridaware.planning.planner"
# Per event loop, the one import of the planner (numpy) off the loop that every trigger starting at once awaits.
_PLANNER_IMPORTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Future[Any]] = (
    weakref.WeakKeyDictionary()
)
_PLANNER_LOADED: list[bool] = []


async def _load_planner() -> None:
    """numpy and the planner load on first use: import them off the event loop, once per triggerer."""
    if _PLANNER_LOADED:
        return
    loop = asyncio.get_running_loop()
    importing = _PLANNER_IMPORTS.get(loop)
    if importing is None or (importing.done() and (importing.cancelled() or importing.exception() is not None)):
        importing = _PLANNER_IMPORTS[loop] = asyncio.ensure_future(
            asyncio.to_thread(importlib.import_module, _PLANNER_MODULE)
        )
    await asyncio.shield(importing)
    _PLANNER_LOADED.append(True)


def utcnow() -> datetime:
    return datetime.now(UTC)


# Module-level so tests can drive the trigger on a simulated clock.
_sleep = asyncio.sleep

# The compact form of the first plan's "start now" counterfactual: planned at, (unit, value) pairs, objective.
_Counterfactual = tuple[datetime, tuple[tuple[str, float], ...], "float | None"]


class GridWindowTrigger(BaseTrigger):
    """Defers a task until its grid window opens; the event carries the decision (a :class:`Plan`).

    :param request: the :class:`GridWindowRequest` (or its JSON form).
    """

    def __init__(self, request: GridWindowRequest | dict[str, Any]) -> None:
        super().__init__()
        validated = request if isinstance(request, GridWindowRequest) else GridWindowRequest.model_validate(request)
        # Keep only compact state: thousands of these wait in one triggerer, so per-trigger bytes matter.
        self.job = Job.from_dict(validated.job)
        sources = tuple(_SOURCES.setdefault(s, s) for s in validated.sources)
        self.sources: tuple[SignalSource, ...] = _SOURCES.setdefault(sources, sources)
        self.refresh_seconds = validated.refresh_seconds
        self.end_from_trigger = validated.end_from_trigger
        self.use_history = validated.use_history
        # The previous plan's window (zone, start): all the planner's hysteresis looks at.
        self._previous: tuple[str, datetime] | None = None
        # The first plan's "start now" is what the job would have cost without waiting (for the ledger).
        self._counterfactual: _Counterfactual | None = None

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
        no_signal: list[str] | None = None  # the problems, while the last attempt found no usable signal
        await _load_planner()
        while True:
            now = utcnow()
            latest_start = self.job.latest_start
            if now < self.job.earliest_start and (
                self.job.priority_class is PriorityClass.CRITICAL or now >= latest_start
            ):
                wake = self.job.earliest_start  # nothing to decide before it may start
            elif self.job.priority_class is PriorityClass.CRITICAL:
                yield self._event(
                    self._fixed_plan(now, PlanStatus.CRITICAL, "priority class critical: never waits"), [], replans
                )
                return
            elif now >= latest_start and no_signal is not None:
                reason = f"no usable signal ({'; '.join(no_signal)}): released at the latest start"
                yield self._event(self._fixed_plan(now, PlanStatus.NO_SIGNAL, reason), no_signal, replans)
                return
            elif now >= latest_start:
                reason = f"latest start {format_time(latest_start)} reached: released to keep the deadline"
                yield self._event(self._fixed_plan(now, PlanStatus.DEADLINE_AT_RISK, reason), [], replans)
                return
            else:
                planned, problems = await self._replan(now, latest_start)
                if planned is None:
                    no_signal = problems
                    wake = min(now + RETRY_WITHOUT_SIGNAL, latest_start)
                    self.log.warning(
                        "no usable signal (%s); flexible fallback: run by the latest start %s; next try %s",
                        "; ".join(problems),
                        format_time(latest_start),
                        format_time(wake),
                    )
                else:
                    no_signal = None
                    replans += 1
                    self.log.info("plan %d: %s", replans, planned.reason)
                    # ``run_now`` means "at the earliest allowed start", which may still be ahead: release by time only.
                    if planned.start <= now:
                        yield self._event(planned, problems, replans)
                        return
                    wake = min(planned.start, self._next_refresh(now), latest_start)
                del planned, problems  # the full plan is not kept while waiting (memory per trigger)
            # Sleep in bounded steps: a changed system clock or a suspended VM must not overshoot the latest start.
            while (remaining := (wake - utcnow()).total_seconds()) > 0:
                await _sleep(min(remaining, 60.0))

    async def _replan(self, now: datetime, latest_start: datetime) -> tuple[Plan | None, list[str]]:
        """Fetch signals (bounded by the latest start) and plan; ``None`` when no signal is usable."""
        cache = shared_cache()
        keys = [_key(s, True) for s in self.sources]
        lookups: list[Outcome | asyncio.Future[Outcome]] = [
            cache.lookup(key, max_age=self.refresh_seconds) for key in keys
        ]
        history_keys = self._history_keys()
        lookups += [self._history_lookup(cache, key) for _, key in history_keys]
        try:
            outcomes = await _settle(lookups, (latest_start - now).total_seconds())
        except asyncio.TimeoutError:
            return None, ["fetching signals outlasted the latest start"]
        carbon, price, problems = self._signals(cache, keys, outcomes[: len(keys)])
        if not carbon and not price:
            return None, problems
        history = self._history(history_keys, outcomes[len(keys) :])
        # In a copy of the context: numpy's errstate sets a context variable, which would otherwise stay in
        # this trigger's task context for as long as it waits.
        plan = contextvars.copy_context().run(
            plan_job,
            self.job,
            carbon=carbon,
            price=price,
            now=now,
            previous=self._previous_plan(now),
            history=history,
        )
        self._previous = (plan.zone, plan.start)
        if self._counterfactual is None:
            self._counterfactual = _compact_counterfactual(plan)
        return plan, problems

    def _signals(
        self, cache: SharedSignalCache, keys: list[SignalKey], results: list[Outcome]
    ) -> tuple[dict[str, SignalSeries], dict[str, SignalSeries], list[str]]:
        """The forecast per source; on failure, the cached one the priority class accepts."""
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

    def _history_keys(self) -> list[tuple[SignalSource, SignalKey]]:
        if not self.use_history:
            return []
        return [(s, _key(s, False)) for s in self.sources if s.kind == "carbon_intensity"]

    @staticmethod
    def _history_lookup(cache: SharedSignalCache, key: SignalKey) -> Outcome | asyncio.Future[Outcome]:
        """Recent actuals change slowly: plan on the last ones fetched, however old, while one background
        request refreshes them (no trigger waits on it). Only before the first request in this triggerer
        has ended does a trigger wait for it, alongside its forecasts (so a restart plans as well as before)."""
        seconds = HISTORY_MAX_AGE.total_seconds()
        series = cache.background(key, max_age=seconds)
        if series is not None:
            return series
        error = cache.failure(key)
        return error if error is not None else cache.lookup(key, max_age=seconds)

    def _history(self, keys: list[tuple[SignalSource, SignalKey]], results: list[Outcome]) -> dict[str, SignalSeries]:
        """Recent carbon actuals per zone; missing history is not an error."""
        history: dict[str, SignalSeries] = {}
        for (source, _), result in zip(keys, results, strict=True):
            if isinstance(result, GridSignalError):
                self.log.info(
                    "no recent actuals for %s/%s (%s): planning on the forecast alone",
                    source.conn_id,
                    source.zone,
                    result,
                )
            else:
                history[source.zone] = result
        return history

    def _previous_plan(self, now: datetime) -> Plan | None:
        """The previous window as a plan (the planner keeps it unless a new one is clearly better)."""
        if self._previous is None:
            return None
        zone, start = self._previous
        return Plan(
            zone=zone,
            chunks=(Chunk(start, start + self.job.duration),),
            run_now=False,
            latest_start=self.job.latest_start,
            planned_at=min(now, start),
            status=PlanStatus.SHIFTED,
            reason="",
            job_id=self.job.job_id,
        )

    def _fixed_plan(self, now: datetime, status: PlanStatus, reason: str) -> Plan:
        return fixed_plan(self.job, now, status, reason)

    def _event(self, plan: Plan, problems: list[str], replans: int) -> TriggerEvent:
        planned_at, signals, objective = self._counterfactual or _compact_counterfactual(plan)
        decision = {
            "status": "released",
            "released_at": format_time(utcnow()),
            "plan": plan.to_dict(),
            "problems": problems,
            "replans": replans,
            "counterfactual": {
                "what": "start at once in the home zone when the wait began",
                "planned_at": format_time(planned_at),
                "zone": self.job.home_zone,
                "signals": dict(signals),
                "objective": objective,
            },
        }
        self.log.info("released: %s", plan.reason)
        if self.end_from_trigger:
            return TaskSuccessEvent(xcoms={"return_value": decision})
        return TriggerEvent(decision)


def _compact_counterfactual(plan: Plan) -> _Counterfactual:
    # Plain floats: numpy scalars from the planner are larger and not JSON-native.
    signals = tuple((unit, float(value)) for unit, value in plan.now_signals.items())
    return plan.planned_at, signals, None if plan.now_objective is None else float(plan.now_objective)


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
# keeps the triggerer's event loop responsive. A grid is kept only while every series it was prepared
# from is alive (weak references: a refreshed series drops its grids) and its slot is current.
_GRID_CACHE: OrderedDict[tuple[Any, ...], tuple[tuple[weakref.ref[Any] | None, ...], Any]] = OrderedDict()
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
    # Identity check: the key holds ids, the value refers to the objects, so a recycled id can never match.
    if cached is not None and all(x is None if r is None else r() is x for r, x in zip(cached[0], held, strict=True)):
        _GRID_CACHE.move_to_end(key)
        grid = cached[1]
    else:
        until = datetime.fromtimestamp(until_bucket * _GRID_UNTIL_BUCKET.total_seconds(), UTC)
        grid = planner.prepare(signals, now=now, until=until)
        for old in [k for k in _GRID_CACHE if k[2] < slot]:  # earlier slots are not planned in again
            del _GRID_CACHE[old]
        forget = functools.partial(_forget_grid, key)
        _GRID_CACHE[key] = (tuple(None if x is None else weakref.ref(x, forget) for x in held), grid)
        while len(_GRID_CACHE) > _GRID_CACHE_SIZE:
            _GRID_CACHE.popitem(last=False)
    return planner.plan_job(job, grid, now=now, previous=previous)


def _forget_grid(key: tuple[Any, ...], dead: weakref.ref[Any]) -> None:
    """A series a cached grid was prepared from is gone: nobody can plan on that grid again."""
    cached = _GRID_CACHE.get(key)
    if cached is not None and any(r is dead for r in cached[0]):
        del _GRID_CACHE[key]
