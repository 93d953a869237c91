"""The triggerer's grid-event watcher: one store poll for all waiting triggers, and only the concerned ones woken."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.store.events import EventStore
from airflow_provider_gridaware.times import ScaledClock, SystemClock
from airflow_provider_gridaware.triggers import grid_window, shared_events
from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource
from airflow_provider_gridaware.triggers.shared_events import EventInterest, GridEventWatcher, snapshot_change
from tests.support.grid_events import make_event, price_signal, simple_signal
from tests.unit.test_grid_window_trigger import T0, install_fetch, series

HOUR = timedelta(hours=1)


def zone_event(zone: str, **overrides: object) -> GridEvent:
    return make_event(**{"targets": (EventTarget(kind="zone", value=zone),), **overrides})


GB = EventInterest(zones=frozenset({"GB"}), shedding=True, prices=False)
DE = EventInterest(zones=frozenset({"DE"}), shedding=True, prices=False)
GB_PRICE_ONLY = EventInterest(zones=frozenset({"GB"}), shedding=False, prices=True)


class FakeStore:
    """The two reads the watcher makes, counted."""

    def __init__(self) -> None:
        self.events: list[GridEvent] = []
        self.seq_reads = 0
        self.event_reads = 0
        self.replaced = 0

    def replace(self, index: int, event: GridEvent) -> None:
        """A new state of a stored event (a new row in the real store's log)."""
        self.events[index] = event
        self.replaced += 1

    def last_seq(self) -> int:
        self.seq_reads += 1
        return len(self.events) + self.replaced

    def current(self, now: datetime) -> list[GridEvent]:
        self.event_reads += 1
        return list(self.events)


def test_a_new_snapshot_changes_only_the_zones_whose_spans_or_prices_differ() -> None:
    before = GridEventSnapshot([zone_event("DE")])
    assert snapshot_change(before, GridEventSnapshot([zone_event("DE")])).shedding_zones == frozenset()
    shortened = zone_event("DE", modification_number=1, signals=(simple_signal(levels=(2,), step=HOUR / 2),))
    assert snapshot_change(before, GridEventSnapshot([shortened])).shedding_zones == {"DE"}
    cancelled = zone_event("DE", modification_number=1, status=EventStatus.CANCELLED)
    assert snapshot_change(before, GridEventSnapshot([cancelled])).shedding_zones == {"DE"}
    level_zero = zone_event("GB", event_id="e2", signals=(simple_signal(levels=(0,)),))
    assert snapshot_change(before, GridEventSnapshot([zone_event("DE"), level_zero])).shedding_zones == frozenset()
    priced = zone_event("GB", event_id="p", signals=(price_signal(),))
    change = snapshot_change(before, GridEventSnapshot([zone_event("DE"), priced]))
    assert (change.shedding_zones, change.price_zones) == (frozenset(), {"GB"})
    assert change.concerns(GB_PRICE_ONLY) and not change.concerns(GB)


def test_every_waiter_of_the_zone_is_woken_by_one_poll_and_the_others_sleep_on() -> None:
    store = FakeStore()
    watcher = GridEventWatcher(read_last_seq=store.last_seq, read_current=store.current, poll_interval_s=0.01)
    clock = SystemClock()

    async def main() -> tuple[list[bool], list[bool], list[bool], float]:
        assert await watcher.get() is not None
        gb = [asyncio.ensure_future(watcher.sleep_or_change(GB, clock, 30.0)) for _ in range(1000)]
        de = [asyncio.ensure_future(watcher.sleep_or_change(DE, clock, 0.5)) for _ in range(100)]
        critical = EventInterest(zones=frozenset({"GB"}), shedding=False, prices=False)
        crit = [asyncio.ensure_future(watcher.sleep_or_change(critical, clock, 0.5)) for _ in range(10)]
        await asyncio.sleep(0.05)
        reads_before = store.seq_reads
        began = time.monotonic()
        store.events.append(zone_event("GB"))
        woken = await asyncio.gather(*gb)  # ends long before their 30 s sleep
        reads = store.seq_reads - reads_before
        return woken, await asyncio.gather(*de), await asyncio.gather(*crit), reads / (time.monotonic() - began)

    woken, others, critical, reads_per_s = asyncio.run(main())
    assert all(woken)
    assert not any(others) and not any(critical)
    assert store.event_reads == 2  # the first snapshot and the one with the event, for 1,110 waiters
    assert reads_per_s < 200  # one poll per interval (0.01 s), whatever the number of waiters
    assert watcher._waiters == {} and watcher._waiting == {}  # nothing kept per waiter after its wait


def test_a_store_that_cannot_be_read_keeps_the_last_snapshot_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore()
    store.events.append(zone_event("GB"))
    failing = {"now": False}

    def last_seq() -> int:
        if failing["now"]:
            raise ConnectionError("store down")
        return store.last_seq()

    watcher = GridEventWatcher(read_last_seq=last_seq, read_current=store.current, poll_interval_s=0.01)

    async def main() -> GridEventSnapshot | None:
        first = await watcher.get()
        failing["now"] = True
        await asyncio.sleep(0.05)
        assert await watcher.get() is first
        return first

    with caplog.at_level("WARNING"):
        snapshot = asyncio.run(main())
    assert snapshot is not None and [e.event_id for e in snapshot.events] == ["event-1"]
    assert "Could not read grid events from the store (ConnectionError: store down)" in caplog.text
    assert caplog.text.count("store down") == 1  # once per distinct reason


DIP_START = T0 + 2 * HOUR


def wait_through_event(
    tmp_path,
    monkeypatch,
    *events: GridEvent,
    dip_length: timedelta = HOUR,
    speed: float = 3600.0,
    already: tuple[GridEvent, ...] = (),
    second_dip: float | None = None,
    request: dict | None = None,
    after_decisions: bool = True,
) -> tuple[list[datetime], dict]:
    """A trigger planning a one-hour job for the dip at T0+2h (``dip_length`` at 40 g, flat 300 g elsewhere,
    and ``second_dip`` g over T0+6h..T0+7h if given; re-planning only every 6 h) on a scaled clock from T0
    (``speed`` simulated seconds per wall second). ``already`` are stored before it starts; each of ``events``
    once it has made one more decision (``after_decisions=False``: the first once it has decided, the others
    0.2 wall seconds apart); ``request`` adds to the trigger's request. Returns the times it decided
    at and its release payload."""
    clock = ScaledClock(sim_epoch_s=T0.timestamp(), wall_epoch_s=time.time(), speed=speed)
    monkeypatch.setattr(grid_window, "current_clock", lambda: clock)

    async def fetch(key):
        from airflow_provider_gridaware.signals.errors import SourceUnavailableError

        if not key.forecast:
            raise SourceUnavailableError("no history", source="c")
        found = series(300.0, dip=(DIP_START, dip_length), issued_at=T0)
        if second_dip is None:
            return found
        later = [
            p.model_copy(update={"value": second_dip}) if T0 + 6 * HOUR <= p.start < T0 + 7 * HOUR else p
            for p in found.points
        ]
        return found.model_copy(update={"points": tuple(later)})

    install_fetch(monkeypatch, fetch)
    decided_at: list[datetime] = []
    real_decide = grid_window.decide
    decided = asyncio.Queue[None]()

    def recording_decide(job, grid, now, *args, **kwargs):
        decided_at.append(now)
        decided.put_nowait(None)
        return real_decide(job, grid, now, *args, **kwargs)

    monkeypatch.setattr(grid_window, "decide", recording_decide)
    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    for event in already:
        store.record(event)
    monkeypatch.setattr(shared_events, "_SHARED", shared_events.weakref.WeakKeyDictionary())
    job = Job(duration=HOUR, earliest_start=T0, deadline=T0 + 12 * HOUR, zones=("GB",), min_gain=0.05)

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        shared_events._SHARED[loop] = GridEventWatcher(
            read_last_seq=store.last_seq,
            read_current=lambda now: store.current(now=now),
            now=clock.now,
            poll_interval_s=0.02,
        )
        trigger_request = GridWindowRequest(
            job=job.to_dict(),
            sources=[SignalSource(conn_id="c", zone="GB")],
            use_history=False,
            refresh_seconds=6 * 3600,
            **(request or {}),
        )
        waiting = asyncio.ensure_future(anext(GridWindowTrigger(trigger_request).run()))
        for index, event in enumerate(events):
            if index and not after_decisions:
                await asyncio.sleep(0.2)
                await asyncio.to_thread(store.record, event)
                continue
            next_decision = asyncio.ensure_future(decided.get())
            await asyncio.wait({next_decision, waiting}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                waiting.result()  # a failed trigger fails the test with its error
            assert next_decision.done(), "no decision within 30 s"
            await asyncio.sleep(0.02)  # it has planned and sleeps towards its window
            assert not waiting.done()
            await asyncio.to_thread(store.record, event)
        fired = await asyncio.wait_for(waiting, 30)
        return fired.payload

    with store:
        return decided_at, asyncio.run(main())


def test_a_waiting_trigger_learns_of_a_called_event_and_does_not_start_inside_it(tmp_path, monkeypatch) -> None:
    """Without the event the trigger releases in the dip; the event (T0+1.5h..T0+3.5h) wakes it, and it
    re-plans around it: released outside the event, never inside."""
    event = zone_event("GB", signals=(simple_signal(start=T0 + 1.5 * HOUR, levels=(2, 2)),))
    decided_at, payload = wait_through_event(tmp_path, monkeypatch, event)
    # Woken by the event: a decision well before the dip it had planned for.
    assert any(at < DIP_START - 0.5 * HOUR for at in decided_at[1:]), decided_at
    released_at = datetime.fromisoformat(payload["released_at"])
    assert event.start is not None and event.end is not None
    assert released_at < event.start or released_at >= event.end, (released_at, payload["reason"])


def test_an_event_that_leaves_the_planned_window_alone_does_not_re_plan(tmp_path, monkeypatch) -> None:
    """Neither the event nor its cancellation: the plan was not made around it."""
    event = zone_event("GB", signals=(simple_signal(start=T0 + 5 * HOUR, levels=(2,)),))
    cancelled = event.model_copy(update={"modification_number": 1, "status": EventStatus.CANCELLED})
    decided_at, payload = wait_through_event(tmp_path, monkeypatch, event, cancelled, after_decisions=False)
    assert len(decided_at) == 2 and decided_at[1] >= DIP_START, decided_at  # the first decision, then the release
    assert payload["plan"]["chunks"][0]["start"].startswith(DIP_START.strftime("%Y-%m-%dT%H:%M"))


def test_re_plans_after_a_wake_up_are_paced_per_loop_iteration_in_the_order_woken() -> None:
    watcher = GridEventWatcher(read_last_seq=FakeStore().last_seq, read_current=FakeStore().current)
    iteration = [0]
    turns: list[tuple[int, int]] = []  # (who, loop iteration of its turn)

    def tick() -> None:
        iteration[0] += 1
        asyncio.get_running_loop().call_soon(tick)

    async def replan(who: int) -> None:
        await watcher.replan_turn()
        turns.append((who, iteration[0]))

    async def main() -> None:
        asyncio.get_running_loop().call_soon(tick)
        await asyncio.gather(*(replan(i) for i in range(100)))

    asyncio.run(main())
    per_iteration: dict[int, int] = {}
    for _, at in turns:
        per_iteration[at] = per_iteration.get(at, 0) + 1
    assert len(turns) == 100 and max(per_iteration.values()) <= shared_events.REPLANS_PER_TURN
    assert [who for who, _ in turns] == list(range(100))
    assert not watcher._turn_queue


def test_when_the_event_that_moved_the_plan_is_cancelled_the_task_goes_back_to_its_window(
    tmp_path, monkeypatch
) -> None:
    """The dip lasts two hours; an event over its first hour moves the plan to the second, equally clean
    hour. Cancelled, it frees the first hour again: the trigger re-plans at once and takes back the window
    the event displaced (an equal later one does not keep it by hysteresis), so it finishes an hour sooner."""
    called = zone_event(
        "GB", status=EventStatus.ACTIVE, signals=(simple_signal(start=T0 + 1.5 * HOUR, levels=(2, 2), step=HOUR / 2),)
    )
    cancelled = called.model_copy(update={"modification_number": 1, "status": EventStatus.CANCELLED})
    decided_at, payload = wait_through_event(tmp_path, monkeypatch, called, cancelled, dip_length=2 * HOUR, speed=1800)
    assert len(decided_at) >= 3, decided_at  # the first plan, the re-plan around the event, the one after it
    assert payload["plan"]["chunks"][0]["start"].startswith(DIP_START.strftime("%Y-%m-%dT%H:%M")), payload["reason"]


def test_a_cancelled_event_that_blocked_a_better_window_from_the_start_is_re_planned_at_once(
    tmp_path, monkeypatch
) -> None:
    """An event already called over the dip when the task first plans: it waits for a later, dirtier dip
    (150 g at T0+6h). The event's cancellation frees the clean dip: the trigger re-plans then, not at its
    next refresh, and takes it."""
    called = zone_event(
        "GB", status=EventStatus.ACTIVE, signals=(simple_signal(start=T0 + 1.5 * HOUR, levels=(2, 2), step=HOUR),)
    )
    cancelled = called.model_copy(update={"modification_number": 1, "status": EventStatus.CANCELLED})
    decided_at, payload = wait_through_event(
        tmp_path, monkeypatch, cancelled, already=(called,), second_dip=150.0, speed=1800
    )
    assert len(decided_at) >= 2, decided_at
    assert payload["plan"]["chunks"][0]["start"].startswith(DIP_START.strftime("%Y-%m-%dT%H:%M")), payload["reason"]


def test_a_window_the_worker_planned_around_an_event_that_is_over_is_not_held_by_hysteresis(
    tmp_path, monkeypatch
) -> None:
    """The worker's first plan (before deferring) moved to the dip's second hour because an event blocked the
    first; by the trigger's first decision the event is gone. The trigger does not hold on to that window:
    it was the best only around the event. It takes the first hour."""
    around = [(int((T0 + 1.5 * HOUR).timestamp()), int((DIP_START + HOUR).timestamp()))]
    request = {
        "previous_zone": "GB",
        "previous_start": (DIP_START + HOUR).isoformat(),
        "planned_around": {"GB": around},
    }
    _, payload = wait_through_event(tmp_path, monkeypatch, dip_length=2 * HOUR, speed=1800, request=request)
    assert payload["plan"]["chunks"][0]["start"].startswith(DIP_START.strftime("%Y-%m-%dT%H:%M")), payload["reason"]
    # Without the spans it planned around, the same committed window is kept (hysteresis: the hours are equal).
    del request["planned_around"]
    _, payload = wait_through_event(tmp_path / "kept", monkeypatch, dip_length=2 * HOUR, speed=1800, request=request)
    assert payload["plan"]["chunks"][0]["start"].startswith((DIP_START + HOUR).strftime("%Y-%m-%dT%H:%M")), payload[
        "reason"
    ]
