"""The grid events a triggerer's tasks plan with: one watcher per triggerer tails the store, all triggers share it.

One asyncio task per event loop (the triggerer runs all its triggers in one loop) reads the store's
``last_seq`` every :data:`POLL_INTERVAL_S` (one indexed query, in a thread) and, when it moved, the current
events (one more query), building one :class:`~airflow_provider_gridaware.planning.event_constraints.GridEventSnapshot`
that every trigger plans on. A waiting trigger does not poll: it waits on the watcher's wake-up for what its
decision depends on (:class:`EventInterest`: its zones, whether called events constrain it, whether it weighs
price). When a new snapshot changes the shedding spans or the price events of a zone, only the interests
naming that zone are woken, so an event in DE does not re-plan the triggers waiting in GB.

The watcher stops itself after :data:`IDLE_STOP_S` without use; a store that cannot be read is logged
(once per distinct reason) and retried with a longer pause, while triggers plan on the last snapshot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from airflow_provider_gridaware.times import ScaledClock, SystemClock

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.times import Clock

log = logging.getLogger(__name__)

#: how often the watcher reads the store's ``last_seq`` (wall seconds): an event is known within this.
POLL_INTERVAL_S = 0.25
#: after a failed read, the next one waits this long (wall seconds).
ERROR_RETRY_S = 5.0
#: the events are read again at least this often even without a new one (time passes: events end).
EVENTS_MAX_AGE_S = 30.0
#: the first read of a triggerer is waited for at most this long (wall seconds).
FIRST_WAIT_S = 5.0
#: re-plans after a wake-up let through per event-loop iteration (each is about a millisecond of CPU).
REPLANS_PER_TURN = 20
#: a watcher nobody has asked anything for this long stops (a triggerer with no grid-aware task left).
IDLE_STOP_S = 120.0


@dataclass(frozen=True)
class EventInterest:
    """What a waiting task's decision depends on among grid events (shared by all triggers alike).

    :param zones: the job's candidate zones.
    :param shedding: called events constrain it (it is not critical).
    :param prices: it weighs price (event prices overlay its price series).
    """

    zones: frozenset[str]
    shedding: bool
    prices: bool

    @property
    def any(self) -> bool:
        """Whether any event could change this decision at all."""
        return bool(self.zones) and (self.shedding or self.prices)


@dataclass(frozen=True)
class SnapshotChange:
    """Which zones a new snapshot changed, for shedding and for prices."""

    shedding_zones: frozenset[str]
    price_zones: frozenset[str]

    def concerns(self, interest: EventInterest) -> bool:
        return bool(
            (interest.shedding and interest.zones & self.shedding_zones)
            or (interest.prices and interest.zones & self.price_zones)
        )


def snapshot_change(old: GridEventSnapshot | None, new: GridEventSnapshot) -> SnapshotChange:
    """The zones whose shedding spans or price events differ between ``old`` and ``new``."""
    old_shedding = {} if old is None else old.shedding
    shedding = {
        zone
        for zone in set(old_shedding) | set(new.shedding)
        if sorted(old_shedding.get(zone, ())) != sorted(new.shedding.get(zone, ()))
    }
    old_prices = {} if old is None else _price_states(old.events)
    new_prices = _price_states(new.events)
    prices = {zone for zone in set(old_prices) | set(new_prices) if old_prices.get(zone) != new_prices.get(zone)}
    return SnapshotChange(frozenset(shedding), frozenset(prices))


def _price_states(events: tuple[GridEvent, ...]) -> dict[str, frozenset[tuple[str, str, int, str]]]:
    """Per zone, the identity and state of every event with a price for it."""
    from airflow_provider_gridaware.signals.grid_event import EventSignalKind

    found: dict[str, set[tuple[str, str, int, str]]] = {}
    for event in events:
        if event.signal(EventSignalKind.PRICE) is None:
            continue
        state = (event.source, event.event_id, event.modification_number, event.status.value)
        for target in event.targets:
            if target.kind == "zone":
                found.setdefault(target.value, set()).add(state)
    return {zone: frozenset(states) for zone, states in found.items()}


@dataclass(eq=False)
class GridEventWatcher:
    """Per event loop: the last snapshot of the store's events, and the wake-ups of the triggers waiting on them.

    :param read_last_seq: the store's newest position (blocking; run in a thread); default: the default store's.
    :param read_current: the events not over at a moment (blocking; run in a thread); default: the default store's.
    :param now: the current time on the clock waiting code plans with.
    :param poll_interval_s: how often ``read_last_seq`` is called.
    """

    read_last_seq: Callable[[], int] | None = None
    read_current: Callable[[datetime], list[GridEvent]] | None = None
    now: Callable[[], datetime] | None = None
    poll_interval_s: float = POLL_INTERVAL_S
    snapshot: GridEventSnapshot | None = None
    #: +1 for every snapshot that changed something (a trigger compares it before and after a hold).
    version: int = 0
    #: the store position the snapshot was read at (-1: never read).
    seq: int = -1
    #: wall (monotonic) time the snapshot was read, and the store's ``last_seq`` last answered.
    read_at: float = float("-inf")
    polled_at: float = float("-inf")
    _waiters: dict[Hashable, asyncio.Event] = field(default_factory=dict)
    _waiting: dict[Hashable, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _first_read: asyncio.Event = field(default_factory=asyncio.Event)
    _used_at: float = field(default_factory=time.monotonic)
    _turns_used: int = 0
    _turn_queue: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    _turn_scheduled: bool = False
    _reported: set[str] = field(default_factory=set)

    async def get(self) -> GridEventSnapshot | None:
        """The last snapshot (``None`` if the store could not be read yet); waits (bounded) for a first read."""
        self._ensure_running()
        if not self._first_read.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_WAIT_S):
                    await self._first_read.wait()
        return self.snapshot

    async def sleep_or_change(self, interest: EventInterest, clock: Clock, seconds: float) -> bool:
        """Sleep ``seconds`` of ``clock``'s time; ``True`` as soon as a new snapshot changes something ``interest``
        names (the rest of the sleep is skipped).

        Waiters with the same interest share one ``asyncio.Event``; on the system and scaled clocks a sleeping
        trigger holds no task of its own, only the event's waiter future.
        """
        if not interest.any:
            await clock.sleep(seconds)
            return False
        self._ensure_running()
        woken = self._waiters.get(interest)
        if woken is None:
            woken = self._waiters[interest] = asyncio.Event()
        self._waiting[interest] = self._waiting.get(interest, 0) + 1
        try:
            if isinstance(clock, (SystemClock, ScaledClock)):  # their sleep is asyncio.sleep of wall seconds
                try:
                    async with asyncio.timeout(clock.wall_seconds(seconds)):
                        await woken.wait()
                except TimeoutError:
                    return False
                return True
            # Any other clock (a test's): race its own sleep against the wake-up.
            sleeping = asyncio.ensure_future(clock.sleep(seconds))
            waking = asyncio.ensure_future(woken.wait())
            done, pending = await asyncio.wait({sleeping, waking}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            return waking in done
        finally:
            left = self._waiting.pop(interest) - 1
            if left:
                self._waiting[interest] = left
            elif self._waiters.get(interest) is woken:
                del self._waiters[interest]  # nobody waits on it any more

    async def replan_turn(self) -> None:
        """Wait for a turn to re-plan after a wake-up: at most :data:`REPLANS_PER_TURN` per loop iteration, in
        the order woken.

        An event can wake thousands of triggers whose plans it touches; re-planning all of them in one loop
        iteration would stall the triggerer (heartbeats, other triggers' releases) for as long as they all take.
        """
        loop = asyncio.get_running_loop()
        if self._turns_used >= REPLANS_PER_TURN or self._turn_queue:
            turn = loop.create_future()
            self._turn_queue.append(turn)
            await turn  # granted by _new_turn, which counted it already
        else:
            self._turns_used += 1
        if not self._turn_scheduled:
            self._turn_scheduled = True
            loop.call_soon(self._new_turn)

    def _new_turn(self) -> None:
        """Next loop iteration: grant the next waiters their turns."""
        self._turns_used = 0
        while self._turn_queue and self._turns_used < REPLANS_PER_TURN:
            turn = self._turn_queue.popleft()
            if not turn.done():  # a trigger cancelled while waiting for its turn gives it up
                turn.set_result(None)
                self._turns_used += 1
        self._turn_scheduled = bool(self._turn_queue)
        if self._turn_scheduled:
            asyncio.get_running_loop().call_soon(self._new_turn)

    def _ensure_running(self) -> None:
        self._used_at = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while time.monotonic() - self._used_at < IDLE_STOP_S or self._waiting:
            pause = self.poll_interval_s
            try:
                await self._poll()
            except Exception as exc:  # the store is down or misconfigured: keep the last snapshot, try again
                self._report(exc)
                pause = ERROR_RETRY_S
            finally:
                self._first_read.set()  # a failed first read does not hold triggers back either
            await asyncio.sleep(pause)

    async def _poll(self) -> None:
        if self.read_last_seq is None or self.read_current is None:
            from airflow_provider_gridaware.hooks.grid_event_base import event_log_position, events_not_over

            self.read_last_seq, self.read_current = event_log_position, events_not_over
        seq = await asyncio.to_thread(self.read_last_seq)
        self.polled_at = time.monotonic()
        if seq == self.seq and self.polled_at - self.read_at < EVENTS_MAX_AGE_S:
            return
        from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
        from airflow_provider_gridaware.times import current_clock

        now = (self.now or current_clock().now)()
        events = await asyncio.to_thread(self.read_current, now)
        from airflow_provider_gridaware.hooks.grid_event_base import configured_response_policy

        self.install(GridEventSnapshot(events, policy=configured_response_policy()), seq)

    def install(self, snapshot: GridEventSnapshot, seq: int) -> SnapshotChange:
        """Make ``snapshot`` (read at store position ``seq``) the current one and wake whom it concerns."""
        change = snapshot_change(self.snapshot, snapshot)
        first = self.snapshot is None
        self.snapshot, self.seq, self.read_at = snapshot, seq, time.monotonic()
        if first or change.shedding_zones or change.price_zones:
            # The first snapshot is no change a trigger planned without (the first read is waited for).
            self.version += 0 if first else 1
            log.info(
                "grid events at store position %d: %d current; changed zones: shedding %s, prices %s",
                seq,
                len(snapshot.events),
                sorted(change.shedding_zones),
                sorted(change.price_zones),
            )
        for interest in [i for i in self._waiters if isinstance(i, EventInterest) and change.concerns(i)]:
            self._waiters.pop(interest).set()
        return change

    def _report(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        level = logging.DEBUG if reason in self._reported else logging.WARNING
        self._reported.add(reason)
        log.log(
            level, "Could not read grid events from the store (%s); planning on the last ones read, retrying", reason
        )


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GridEventWatcher] = weakref.WeakKeyDictionary()


def shared_grid_events() -> GridEventWatcher:
    """The grid-event watcher of the running event loop (one per triggerer)."""
    loop = asyncio.get_running_loop()
    found = _SHARED.get(loop)
    if found is None:
        found = _SHARED[loop] = GridEventWatcher()
    return found
