"""Running interruptible work pauses where a called event sheds its zone, and waits in the triggerer until it ends."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_gridaware.cooperative_pause import GridCheckpoint, PauseForGridEvent
from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.times import ScaledClock
from airflow_provider_gridaware.triggers import grid_event_clear, shared_events
from airflow_provider_gridaware.triggers.grid_event_clear import GridEventClearRequest, GridEventClearTrigger
from airflow_provider_gridaware.triggers.shared_events import GridEventWatcher
from tests.support.grid_events import T0, make_event, simple_signal
from tests.unit.test_event_watcher import FakeStore

HOUR = timedelta(hours=1)
UTC = timezone.utc


def called(zone: str = "GB", *, start: datetime = T0, levels: tuple[int, ...] = (2,), **overrides: object) -> GridEvent:
    """A SIMPLE event in ``zone`` over one hour per level from ``start``."""
    fields = {
        "targets": (EventTarget(kind="zone", value=zone),),
        "signals": (simple_signal(start=start, levels=levels),),
    }
    return make_event(**{**fields, **overrides})


def checkpoint(store: FakeStore, at: list[datetime], **overrides: object) -> GridCheckpoint:
    fields: dict = {"zone": "GB", "priority_class": "flexible", "interruptible": True}
    fields.update(overrides)
    return GridCheckpoint(
        **fields, now=lambda: at[0], read_last_seq=store.last_seq, read_current=store.current, check_interval_s=0
    )


def test_shedding_until_joins_overlapping_spans_and_spares_critical_work() -> None:
    snapshot = GridEventSnapshot(
        [called(levels=(2, 0)), called(event_id="e2", start=T0 + 0.5 * HOUR, levels=(1, 1)), called("DE")]
    )
    assert snapshot.shedding_until("GB", T0 + 0.25 * HOUR, "flexible") == T0 + 2.5 * HOUR
    assert snapshot.shedding_until("GB", T0 + 0.25 * HOUR, "batch") == T0 + 2.5 * HOUR
    assert snapshot.shedding_until("GB", T0 + 0.25 * HOUR, "critical") is None
    assert snapshot.shedding_until("GB", T0 - HOUR, "flexible") is None  # not started
    assert snapshot.shedding_until("GB", T0 + 2.5 * HOUR, "flexible") is None  # over (end exclusive)
    assert snapshot.shedding_until("FR", T0, "flexible") is None


def test_the_checkpoint_pauses_only_interruptible_non_critical_work_inside_a_called_event() -> None:
    store = FakeStore()
    at = [T0 - HOUR]
    ckpt = checkpoint(store, at)
    assert not ckpt.should_pause()
    store.events.append(called())
    assert not ckpt.should_pause()  # known now, but it starts at T0
    at[0] = T0 + 0.1 * HOUR
    assert ckpt.should_pause()
    assert not checkpoint(store, at, priority_class="critical").should_pause()
    assert not checkpoint(store, at, interruptible=False).should_pause()
    assert not checkpoint(store, at, zone="DE").should_pause()
    store.replace(0, called(modification_number=1, status=EventStatus.CANCELLED))
    assert not ckpt.should_pause()


def test_the_checkpoint_reads_the_store_at_most_once_an_interval() -> None:
    store = FakeStore()
    at = [T0]
    ckpt = GridCheckpoint(
        zone="GB",
        priority_class="flexible",
        interruptible=True,
        now=lambda: at[0],
        read_last_seq=store.last_seq,
        read_current=store.current,
        check_interval_s=3600,
    )
    for _ in range(1000):
        ckpt.should_pause()
    assert (store.seq_reads, store.event_reads) == (1, 1)


def test_pause_carries_the_saved_state_and_names_the_event() -> None:
    store = FakeStore()
    store.events.append(called(event_id="peak-7"))
    at = [T0 + 0.5 * HOUR]
    ckpt = checkpoint(store, at, state={"step": 3}, pauses=1)
    assert ckpt.resumed and ckpt.state == {"step": 3}
    state = {"step": 10}
    ckpt.save(state)
    state["step"] = 11  # saved by value
    with pytest.raises(PauseForGridEvent) as paused:
        ckpt.pause()
    assert paused.value.state == {"step": 10}
    assert paused.value.until == T0 + HOUR
    assert "peak-7" in paused.value.reason and "GB" in paused.value.reason
    with pytest.raises(TypeError, match="JSON-serialisable"):
        ckpt.save({"when": object()})


def test_a_store_that_cannot_be_read_lets_the_work_go_on_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    def down() -> int:
        raise ConnectionError("store down")

    ckpt = GridCheckpoint(
        zone="GB", priority_class="flexible", interruptible=True, read_last_seq=down, check_interval_s=0
    )
    with caplog.at_level("WARNING"):
        assert not ckpt.should_pause() and not ckpt.should_pause()
    assert caplog.text.count("could not read grid events from the store (ConnectionError: store down)") == 1


def _clear_trigger(store: FakeStore, clock: ScaledClock, monkeypatch: pytest.MonkeyPatch, **request: object):
    monkeypatch.setattr(grid_event_clear, "current_clock", lambda: clock)
    monkeypatch.setattr(shared_events, "_SHARED", shared_events.weakref.WeakKeyDictionary())
    fields: dict = {"zone": "GB", "paused_at": "2026-07-01T16:00:00Z"}
    fields.update(request)
    trigger = GridEventClearTrigger(GridEventClearRequest(**fields))
    path, kwargs = trigger.serialize()
    assert path.endswith("GridEventClearTrigger") and GridEventClearTrigger(**kwargs).request == trigger.request

    async def install_watcher() -> None:
        shared_events._SHARED[asyncio.get_running_loop()] = GridEventWatcher(
            read_last_seq=store.last_seq, read_current=store.current, now=clock.now, poll_interval_s=0.02
        )

    return trigger, install_watcher


def test_the_paused_task_waits_until_the_event_ends_then_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore()
    store.events.append(called(levels=(2,)))  # T0 .. T0+1h
    # Simulated time at T0+0.5h, an hour per two wall seconds: the event ends a wall second from now.
    clock = ScaledClock(sim_epoch_s=(T0 + 0.5 * HOUR).timestamp(), wall_epoch_s=time.time(), speed=1800.0)
    trigger, install_watcher = _clear_trigger(store, clock, monkeypatch)

    async def main() -> tuple[dict, datetime]:
        await install_watcher()
        event = await asyncio.wait_for(anext(trigger.run()), 10)
        return event.payload, clock.now()

    payload, fired_at = asyncio.run(main())
    assert payload["status"] == "clear" and payload["zone"] == "GB"
    assert fired_at >= T0 + HOUR


def test_a_cancellation_resumes_at_once_but_not_within_the_resume_guard_and_a_new_event_keeps_it_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FakeStore()
    store.events.append(called(levels=(2, 2, 2)))  # three hours: nothing ends by itself in this test
    clock = ScaledClock(sim_epoch_s=(T0 + 0.5 * HOUR).timestamp(), wall_epoch_s=time.time(), speed=1.0)
    trigger, install_watcher = _clear_trigger(store, clock, monkeypatch, not_before=time.time() + 0.6)

    async def main() -> tuple[float, float]:
        await install_watcher()
        began = time.monotonic()
        waiting = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        store.replace(0, called(modification_number=1, status=EventStatus.CANCELLED))
        await asyncio.sleep(0.2)  # seen, but held by the guard (0.6 s) ...
        store.events.append(called(event_id="second", levels=(2,), start=T0 + 0.4 * HOUR))  # ... when another comes
        await asyncio.sleep(0.6)
        assert not waiting.done()  # the new event keeps it paused after the guard
        store.replace(1, called(event_id="second", modification_number=1, status=EventStatus.CANCELLED))
        await asyncio.wait_for(waiting, 5)
        return time.monotonic() - began, 0.0

    elapsed, _ = asyncio.run(main())
    assert elapsed >= 1.0


def interruptible_task(work: Any, zone: str, **more: Any) -> Any:
    """``@task.gridaware(interruptible=True)`` over ``work`` in ``zone``, as the operator it makes."""
    from airflow_provider_gridaware.decorators.gridaware import _GridAwareDecoratedOperator

    return _GridAwareDecoratedOperator(
        task_id="train",
        python_callable=work,
        duration=timedelta(minutes=10),
        deadline=timedelta(hours=12),
        conn_id="carbon",
        zones=[zone],
        interruptible=True,
        **more,
    )


def test_the_decorated_task_defers_on_a_pause_and_resumes_its_callable_with_the_saved_state() -> None:
    """The operator's side, on the session store: pause -> TaskDeferred on the clear trigger (with the resume
    guard), then the resume method runs the callable again from the saved state and records one run."""
    import uuid

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_gridaware.hooks.store import GridStoreHook
    from tests.unit.test_duration_auto import context

    zone = f"ZOP{uuid.uuid4().hex[:6]}"  # the session store is shared: an event no other test plans in
    now = datetime.now(UTC)
    GridStoreHook().get_event_store().record(called(zone, start=now - HOUR, levels=(2, 2), event_id=zone))
    calls: list[dict] = []

    def work(grid_checkpoint: GridCheckpoint | None = None) -> dict:
        assert grid_checkpoint is not None
        state = grid_checkpoint.state or {"step": 0}
        calls.append(dict(state))
        while state["step"] < 5:
            state["step"] += 1
            if state["step"] == 2 and not grid_checkpoint.resumed and grid_checkpoint.should_pause():
                grid_checkpoint.save(state)
                grid_checkpoint.pause()
        return {**state, "pauses": grid_checkpoint.pauses}

    operator = interruptible_task(work, zone)
    dag_id = f"pause_{uuid.uuid4().hex[:8]}"
    released = {"plan": {"zone": zone}, "reason": "released at once"}
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute_complete(context(dag_id), released)
    trigger = deferred.value.trigger
    assert isinstance(trigger, GridEventClearTrigger) and trigger.request.zone == zone
    assert trigger.request.not_before is not None and trigger.request.not_before >= time.time() + 25  # the guard
    assert deferred.value.method_name == "resume_after_grid_event"
    kwargs = deferred.value.kwargs or {}
    assert kwargs["state"] == {"step": 2} and kwargs["pauses"] == 1 and kwargs["decision"] == released

    cleared = {"status": "clear", "zone": zone, "paused_at": "x", "cleared_at": "y"}
    result = operator.resume_after_grid_event(context(dag_id), cleared, **kwargs)
    assert result == {"step": 5, "pauses": 1}
    assert calls == [{"step": 0}, {"step": 2}]  # the second run started from the checkpoint
    [run] = GridStoreHook().get_runtime_history().recent(dag_id, "train", limit=5)
    assert run.zone == zone and run.run_seconds < 5  # one run recorded, summed over its two pieces
    with pytest.raises(RuntimeError, match="unexpected event"):
        operator.resume_after_grid_event(context(dag_id), {"status": "error"}, **kwargs)


def test_the_ledger_counts_the_energy_of_the_running_pieces_not_the_pause() -> None:
    """A try that ran 1 minute, was paused for an hour, then ran again: its estimated energy is that of the two
    running pieces (60 kW x ~1 min), not of the 61 minutes from its first start to its end."""
    import uuid

    from airflow.sdk.exceptions import TaskDeferred

    from airflow_provider_gridaware.hooks.store import GridStoreHook
    from airflow_provider_gridaware.ledger.records import TryKey
    from airflow_provider_gridaware.times import format_time
    from tests.unit.test_duration_auto import context

    zone = f"ZLP{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    GridStoreHook().get_event_store().record(called(zone, start=now - HOUR, levels=(2, 2), event_id=zone))

    def work(grid_checkpoint: GridCheckpoint | None = None) -> str:
        assert grid_checkpoint is not None
        if not grid_checkpoint.resumed and grid_checkpoint.should_pause():
            grid_checkpoint.save({"step": 1})
            grid_checkpoint.pause()
        return "done"

    operator = interruptible_task(work, zone, power_w=60_000, pue=1.0)
    dag_id = f"pieces_{uuid.uuid4().hex[:8]}"
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute_complete(context(dag_id), {"plan": {"zone": zone}, "reason": "released at once"})
    kwargs = dict(deferred.value.kwargs or {})
    [[first_start, first_end]] = kwargs["ran_pieces"]
    assert first_start == kwargs["first_started_at"] and first_end >= first_start
    # As if the first piece had run a minute, an hour ago, before the pause.
    began = datetime.now(UTC) - timedelta(minutes=61)
    kwargs["first_started_at"] = format_time(began)
    kwargs["ran_pieces"] = [[format_time(began), format_time(began + timedelta(minutes=1))]]
    cleared = {"status": "clear", "zone": zone, "paused_at": "x", "cleared_at": "y"}
    assert operator.resume_after_grid_event(context(dag_id), cleared, **kwargs) == "done"

    ti = context(dag_id)["ti"]
    record = GridStoreHook().get_ledger_store().get(TryKey(dag_id, ti.run_id, "train", ti.map_index, ti.try_number))
    assert record is not None and record.actual.start == began
    assert record.actual.energy_kwh == pytest.approx(1.0, abs=0.05)  # 60 kW x 1 min (+ the resumed piece's ms)
    assert any("ran in 2 pieces" in note for note in record.notes), record.notes
