"""GridWindowTrigger: wait in the triggerer for the cleanest (or cheapest) window a job can still finish in.

A thin shell over :func:`~airflow_provider_gridaware.planning.decision.decide`: at every wake-up it reads
the job's signals (one upstream request per source, zone and refresh period for the whole triggerer),
asks ``decide()`` and either fires or sleeps until the wake-up the decision names. It never fires later
than the job's latest start: every sleep and every upstream call is bounded by it, and when signals fail
``decide()`` applies the priority class's fallback instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.planning.decision import (
    Counterfactual,
    Decision,
    Window,
    decide,
    needs_signals,
    refresh_boundary,
    release_payload,
)
from airflow_provider_gridaware.planning.event_constraints import frees_slots, spans_in
from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.signals.errors import GridSignalError, SourceConfigError
from airflow_provider_gridaware.times import current_clock, format_duration, format_time, from_epoch, parse_time
from airflow_provider_gridaware.triggers.resume_guard import hold_until
from airflow_provider_gridaware.triggers.shared_calibrations import shared_calibrations
from airflow_provider_gridaware.triggers.shared_events import EventInterest, shared_grid_events
from airflow_provider_gridaware.triggers.shared_signals import SharedSignalCache, SignalKey, shared_cache

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.calibration import ForecastCalibration
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
    from airflow_provider_gridaware.planning.planner import PlanningGrid
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.times import Clock
    from airflow_provider_gridaware.triggers.shared_signals import Outcome

# A flexible job plans on cached data at most this old when its source fails; a batch job accepts any.
FLEXIBLE_MAX_CACHE_AGE = timedelta(hours=6)
# Recent actuals feed the planner's own forecaster (beyond the source's horizon); they change slowly.
HISTORY_MAX_AGE = timedelta(hours=6)
# Sleeps are cut into steps of at most this (wall) length: a changed system clock or a suspended VM
# must not make a trigger overshoot its latest start.
MAX_SLEEP_STEP_S = 60.0


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
    :param refresh_seconds: how often forecasts are re-fetched and the job re-planned.
    :param end_from_trigger: end the task from the triggerer (``TaskSuccessEvent``) with the decision as
        its XCom, so no worker slot is used at all.
    :param use_history: also read recent actuals (refreshed every few hours) so the planner's own
        forecaster can extend a short source horizon; failures to read them are only logged.
    :param waiting_since: when the wait began (the first decision, on the worker).
    :param counterfactual: start at once in the home zone when the wait began (``Counterfactual.to_dict``).
    :param previous_zone: the window the first decision committed to (for hysteresis), with ...
    :param previous_start: ... its start.
    :param planned_around: per zone, the called events' spans (epoch seconds) that window was planned around:
        if they no longer block, hysteresis does not hold on to it.
    :param not_before: wall-clock epoch seconds before which the trigger does not fire (the resume guard,
        see :mod:`~airflow_provider_gridaware.triggers.resume_guard`); ``None`` when ending from the trigger.
    :param first_decision: the decision that made the task wait (``Decision.summary()``: its reason, window
        and expected signals), kept so the Grid page can show why a deferred task waits.
    :param ledger: with ``end_from_trigger``, what the carbon ledger needs to record the try
        (:class:`~airflow_provider_gridaware.ledger_writer.LedgerSpec`): no worker code runs after the release.
    """

    model_config = ConfigDict(frozen=True)

    job: dict[str, Any]
    sources: list[SignalSource] = Field(min_length=1)
    refresh_seconds: float = Field(default=900.0, gt=0)
    end_from_trigger: bool = False
    use_history: bool = True
    waiting_since: str | None = None
    counterfactual: dict[str, Any] | None = None
    previous_zone: str | None = None
    previous_start: str | None = None
    planned_around: dict[str, list[tuple[int, int]]] | None = None
    not_before: float | None = None
    first_decision: dict[str, Any] | None = None
    ledger: dict[str, Any] | None = None


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
    """Every outcome, awaiting all futures together: an unexpected error in one must not leave the others'
    errors unretrieved (asyncio would then log them later, in whichever task happens to run)."""
    futures = [item for item in pending if isinstance(item, asyncio.Future)]
    results = iter(await asyncio.gather(*futures, return_exceptions=True))
    outcomes: list[Any] = [next(results) if isinstance(item, asyncio.Future) else item for item in pending]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, GridSignalError):
            raise outcome
    return outcomes


# Triggers waiting on the same sources share one (frozen) SignalSource instance, tuple of them and SignalKey.
_SOURCES: dict[Any, Any] = {}
_KEYS: dict[tuple[SignalSource, bool], SignalKey] = {}
_INTERESTS: dict[EventInterest, EventInterest] = {}


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


# The compact form of the wait's counterfactual: planned at (epoch s), zone, (unit, value) pairs, objective.
_Compact = tuple[float, str, tuple[tuple[str, float], ...], "float | None"]


class GridWindowTrigger(BaseTrigger):
    """Defers a task until its grid window opens; the event carries the decision.

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
        self.not_before = validated.not_before
        # One string, not a dict: it is only read back when the trigger is serialised again.
        self._first_decision = None if validated.first_decision is None else json.dumps(validated.first_decision)
        # Only a task ended from here carries it (its ledger record is written here).
        self._ledger = validated.ledger
        self._waiting_since = (
            None if validated.waiting_since is None else parse_time(validated.waiting_since, what="waiting_since")
        )
        self._counterfactual: _Compact | None = (
            None if validated.counterfactual is None else _compact(Counterfactual.from_dict(validated.counterfactual))
        )
        # The committed window: all the planner's hysteresis looks at.
        self._previous: Window | None = None
        # The committed window a called event moved the plan away from: once the event no longer blocks it
        # (cancelled, shortened, over), the next decision's hysteresis holds on to it again, not to the
        # detour (in memory, like the committed window after a triggerer restart).
        self._displaced: Window | None = None
        # The called events' spans in the job's zones that the committed window was planned around.
        self._planned_around: dict[str, tuple[tuple[int, int], ...]] = {
            zone: tuple(spans) for zone, spans in (validated.planned_around or {}).items()
        }
        if validated.previous_zone and validated.previous_start:
            self._previous = Window(
                validated.previous_zone, parse_time(validated.previous_start, what="previous_start")
            )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    @property
    def request(self) -> GridWindowRequest:
        """The request this trigger stands for now (rebuilt on demand, not stored)."""
        counterfactual = self._counterfactual_object()
        return GridWindowRequest(
            job=self.job.to_dict(),
            sources=list(self.sources),
            refresh_seconds=self.refresh_seconds,
            end_from_trigger=self.end_from_trigger,
            use_history=self.use_history,
            waiting_since=None if self._waiting_since is None else format_time(self._waiting_since),
            counterfactual=None if counterfactual is None else counterfactual.to_dict(),
            previous_zone=None if self._previous is None else self._previous.zone,
            previous_start=None if self._previous is None else format_time(self._previous.start),
            planned_around={z: list(spans) for z, spans in self._planned_around.items()} or None,
            not_before=self.not_before,
            first_decision=None if self._first_decision is None else json.loads(self._first_decision),
            ledger=self._ledger,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = current_clock()
        refresh = timedelta(seconds=self.refresh_seconds)
        replans = 0
        await _load_planner()
        if self._waiting_since is None:
            self._waiting_since = clock.now()
        problems: list[str] = []  # of the last read (at the latest start no signals are read)
        watcher = shared_grid_events()
        interest = self._event_interest()
        while True:
            now = clock.now()
            grid: PlanningGrid | None = None
            freshness = ""
            planned_on = watcher.version  # a snapshot installed while deciding is planned on again
            if needs_signals(self.job, now):
                grid, problems, freshness = await self._signals(now, clock)
            planned_with = watcher.snapshot
            committed = self._committed_window(planned_with, interest, now)
            # In a copy of the context: numpy's errstate sets a context variable, which would otherwise stay in
            # this trigger's task context for as long as it waits.
            decision = contextvars.copy_context().run(
                decide, self.job, grid, now, committed, refresh=refresh, problems=problems
            )
            del grid  # the grid is shared (or dropped); the trigger keeps only its compact state
            replans += 1
            self._remember(decision, committed, planned_with)
            self._planned_around = spans_in(planned_with, interest.zones)
            if decision.release:
                if not self.end_from_trigger:
                    seen = watcher.version
                    await hold_until(self.not_before)  # the resume guard (a worker picks the task up next)
                    if watcher.version != seen and interest.any:
                        self._log_info("grid events changed during the resume guard: deciding again")
                        continue
                event = self._event(decision, problems, replans)
                if self.end_from_trigger and self._ledger is not None:
                    await self._record_ledger(getattr(event, "xcoms", None))
                yield event
                return
            self._log_decision(decision, replans, freshness)
            if not decision.fallback:
                problems = []  # planned: a later release at the latest start is no no-signal fallback
            wake = decision.wake_at or now
            if watcher.version != planned_on and interest.any:
                wake = now  # grid events changed while deciding: decide again at once
            del decision, freshness  # nothing of the decision is kept while waiting (memory per trigger)
            while (remaining := (wake - clock.now()).total_seconds()) > 0:
                # Asleep until the wake-up, unless the triggerer's event watcher sees an event that concerns us.
                step = min(remaining, MAX_SLEEP_STEP_S / clock.wall_seconds(1.0))
                if await watcher.sleep_or_change(interest, clock, step):
                    snapshot = watcher.snapshot
                    if self._window_clear_of(snapshot, interest) and not frees_slots(
                        self._planned_around, snapshot, interest.zones, after_s=clock.now().timestamp()
                    ):
                        # Neither blocks its window nor frees a slot it planned around: no re-plan (thousands
                        # of waiting tasks may share a zone). What it planned around stays what it decided on:
                        # a later event it happens to miss is not one it planned around.
                        continue
                    self._log_info("grid events changed for %s: deciding again", ", ".join(sorted(interest.zones)))
                    await watcher.replan_turn()
                    break

    def _event_interest(self) -> EventInterest:
        """What grid events this job's decision depends on (shared instances: thousands of triggers, few kinds)."""
        interest = EventInterest(
            zones=frozenset(s.zone for s in self.sources),
            shedding=self.job.priority_class is not PriorityClass.CRITICAL,
            prices=self.job.price_weight > 0 and any(s.kind == "price" for s in self.sources),
        )
        return _INTERESTS.setdefault(interest, interest)

    def _window_clear_of(self, snapshot: GridEventSnapshot | None, interest: EventInterest) -> bool:
        """Whether the committed window stands against ``snapshot``: no called event blocks it.

        Blocking slots only removes options, so a plan none of whose slots is blocked stays the best one while
        no slot it planned around is freed (:func:`frees_slots`). Price changes always re-plan.
        """
        if snapshot is None or self._previous is None or interest.prices:
            return False
        return not self._blocked(self._previous, snapshot)

    def _blocked(self, window: Window, snapshot: GridEventSnapshot | None) -> bool:
        """Whether a called event of ``snapshot`` overlaps the job's run from ``window``."""
        if snapshot is None:
            return False
        start = window.start
        # An interruptible plan's later chunks may lie anywhere up to the deadline.
        end = self.job.deadline if self.job.interruptible else start + self.job.duration * (1 + self.job.runtime_margin)
        start_s, end_s = start.timestamp(), end.timestamp()
        return any(s < end_s and e > start_s for s, e in snapshot.shedding.get(window.zone, ()))

    def _committed_window(
        self, snapshot: GridEventSnapshot | None, interest: EventInterest, now: datetime
    ) -> Window | None:
        """The window the next decision's hysteresis holds on to: the one an event displaced, once the event no
        longer blocks it; none if the committed one was planned around called events that no longer block
        what they did (it was the best only with them); else the committed one."""
        displaced = self._displaced
        if displaced is not None and not self._blocked(displaced, snapshot):
            return displaced
        if self._previous is not None and frees_slots(
            self._planned_around, snapshot, interest.zones, after_s=now.timestamp()
        ):
            return None
        return self._previous

    def _remember(self, decision: Decision, committed: Window | None, snapshot: GridEventSnapshot | None) -> None:
        if decision.fallback:
            return
        if committed is self._displaced:
            self._displaced = None  # decided with it: from here on the decision's window is the commitment
        elif committed is not None and decision.window != committed and self._blocked(committed, snapshot):
            # An event moved the plan: remember where from (the first window it moved, if it moves again).
            self._displaced = self._displaced or committed
        self._previous = decision.window
        if self._counterfactual is None and decision.plan.now_signals:
            self._counterfactual = _compact(Counterfactual.of(decision.plan, self.job.home_zone))

    async def _signals(self, now: datetime, clock: Clock) -> tuple[PlanningGrid | None, list[str], str]:
        """The job's signals on a planning grid (``None`` if none is usable), the problems met, and a note
        on how fresh the forecasts are. Fetching is bounded by the latest start."""
        from airflow_provider_gridaware.planning.signal_grid import grid_for

        cache = shared_cache()
        # Only data fetched in the current refresh period: a re-plan never runs on data from before it.
        max_age = max(
            clock.wall_seconds((now - refresh_boundary(now, timedelta(seconds=self.refresh_seconds))).total_seconds()),
            0.0,
        )
        keys = [_key(s, True) for s in self.sources]
        lookups: list[Outcome | asyncio.Future[Outcome]] = [cache.lookup(key, max_age=max_age) for key in keys]
        history_keys = self._history_keys()
        lookups += [self._history_lookup(cache, key) for _, key in history_keys]
        budget = clock.wall_seconds((self.job.latest_start - now).total_seconds())
        try:
            outcomes = await _settle(lookups, budget)
        except (asyncio.TimeoutError, TimeoutError):
            return None, ["fetching signals outlasted the latest start"], ""
        carbon, price, problems, fresh = self._forecasts(cache, keys, outcomes[: len(keys)])
        if not carbon and not price:
            return None, problems, ""
        history = self._history(history_keys, outcomes[len(keys) :])
        calibrations = await self._calibrations(carbon, price, now, clock)
        events = await shared_grid_events().get()
        if events is not None and price and self.job.price_weight > 0:
            price = events.apply(price)  # a called peak's price, before it starts too
        grid = contextvars.copy_context().run(
            grid_for, self.job, carbon=carbon, price=price, now=now, history=history, calibrations=calibrations
        )
        if events is not None:
            grid = events.block(grid, self.job)  # flexible work does not start inside a called event
        return grid, problems, fresh

    async def _calibrations(
        self, carbon: dict[str, SignalSeries], price: dict[str, SignalSeries], now: datetime, clock: Clock
    ) -> dict[tuple[str, str], ForecastCalibration]:
        """Each forecast's track record from the store, shared by every trigger of the triggerer (learnt in a
        thread, at most hourly; only a triggerer's first read of a source waits for it, as with history)."""
        found: dict[tuple[str, str], ForecastCalibration] = {}
        for kind, forecasts in (("carbon", carbon), ("price", price)):
            for zone, forecast in forecasts.items():
                calibration = await shared_calibrations().get(forecast, now, clock)
                if calibration is not None:
                    found[(zone, kind)] = calibration
        return found

    def _forecasts(
        self, cache: SharedSignalCache, keys: list[SignalKey], results: list[Outcome]
    ) -> tuple[dict[str, SignalSeries], dict[str, SignalSeries], list[str], str]:
        """The forecast per source; on failure, the cached one the priority class accepts. Also a note on
        each forecast's issue time and age, for the decision's log line."""
        carbon: dict[str, SignalSeries] = {}
        price: dict[str, SignalSeries] = {}
        problems: list[str] = []
        notes: list[str] = []
        max_age = None if self.job.priority_class is PriorityClass.BATCH else FLEXIBLE_MAX_CACHE_AGE
        for source, key, result in zip(self.sources, keys, results, strict=True):
            series: SignalSeries | None
            cached = cache.last_good(key)
            if isinstance(result, SourceConfigError):
                raise result  # a configuration mistake fails this task, with its message (not a fallback)
            if isinstance(result, GridSignalError):
                problems.append(f"{source.conn_id}/{source.zone}: {result}")
                series = None
                if cached is not None and (max_age is None or cached[1] <= max_age.total_seconds()):
                    series = cached[0]
                    problems[-1] += f" (planning on data cached {format_duration(cached[1])} ago)"
            else:
                series = result
            if series is None:
                continue
            (carbon if source.kind == "carbon_intensity" else price)[source.zone] = series
            age = f", fetched {format_duration(cached[1])} ago" if cached is not None else ""
            issued = format_time(series.issued_at) if series.issued_at is not None else "no issue time"
            notes.append(f"{source.zone} {source.kind}: issued {issued}{age}")
        return carbon, price, problems, f" ({'; '.join(notes)})" if notes else ""

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

    def _counterfactual_object(self) -> Counterfactual | None:
        if self._counterfactual is None:
            return None
        at, zone, signals, objective = self._counterfactual
        return Counterfactual(from_epoch(at), zone, dict(signals), objective)

    async def _record_ledger(self, xcoms: Any) -> None:
        """The try ends here (no worker runs after the release): write its ledger record now; never raises."""
        from airflow_provider_gridaware.ledger_writer import LedgerSpec, arecord_released_try

        released = xcoms.get("return_value") if isinstance(xcoms, dict) else None
        assert self._ledger is not None
        await arecord_released_try(
            getattr(self, "task_instance", None),
            LedgerSpec.from_dict(self._ledger),
            released if isinstance(released, dict) else None,
            logger=self.log,
        )

    # run() logs only through these plain methods: the log's call-site lookup walks up to the first frame
    # outside the logging code, and a frame object made for run() would live as long as the wait (about
    # 0.37 KB per waiting trigger); a method's goes when it returns.
    def _log_decision(self, decision: Decision, replans: int, freshness: str) -> None:
        if decision.fallback:
            self.log.warning("decision %d: %s", replans, decision.reason)
        else:
            self.log.info("decision %d%s: %s", replans, freshness, decision.reason)

    def _log_info(self, message: str, *args: object) -> None:
        self.log.info(message, *args)

    def _event(self, decision: Decision, problems: list[str], replans: int) -> TriggerEvent:
        payload = release_payload(
            decision,
            counterfactual=self._counterfactual_object(),
            waiting_since=self._waiting_since,
            problems=problems,
            replans=replans,
        )
        self.log.info("released: %s", payload["reason"])
        if self.end_from_trigger:
            return TaskSuccessEvent(xcoms={"return_value": payload})
        return TriggerEvent(payload)


# One logger for every waiting trigger (LoggingMixin would make one per instance, about 1 KB each once it has
# logged a decision). The triggerer routes a line to its task's log by the trigger's context, not the logger.
GridWindowTrigger.logger()


def _compact(counterfactual: Counterfactual) -> _Compact:
    # Plain floats: numpy scalars from the planner are larger and not JSON-native.
    signals = tuple((unit, float(value)) for unit, value in counterfactual.signals.items())
    objective = None if counterfactual.objective is None else float(counterfactual.objective)
    return counterfactual.planned_at.timestamp(), counterfactual.zone, signals, objective
