"""GridWindowTrigger on a simulated clock: re-planning, release times, fallbacks, serialisation."""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import pytest
from airflow.triggers.base import TaskSuccessEvent

from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    SeriesType,
    SignalKind,
    SourceUnavailableError,
    build_series,
)
from airflow_provider_gridaware.triggers import grid_window, shared_signals
from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


class SimClock:
    """utcnow and sleep for the trigger: sleeping advances simulated time instantly."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def utcnow(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch) -> SimClock:
    sim = SimClock(T0)
    monkeypatch.setattr(grid_window, "utcnow", sim.utcnow)
    monkeypatch.setattr(grid_window, "_sleep", sim.sleep)
    return sim


def series(value: float = 100.0):
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=T0,
        unit="g/kWh",
        points=[(T0 + i * timedelta(minutes=30), T0 + (i + 1) * timedelta(minutes=30), value) for i in range(96)],
    )


def make_job(**overrides) -> Job:
    args = dict(duration=timedelta(hours=1), earliest_start=T0, deadline=T0 + timedelta(hours=12), zones=("GB",))
    args.update(overrides)
    return Job(**args)


def make_trigger(job: Job, **request) -> GridWindowTrigger:
    return GridWindowTrigger(
        GridWindowRequest(job=job.to_dict(), sources=[SignalSource(conn_id="c", zone="GB")], **request)
    )


def install_fetch(monkeypatch, fetch, clock: SimClock | None = None):
    """Replace the hook-backed fetcher of the per-loop cache with ``fetch`` (ageing on the simulated clock)."""
    monkeypatch.setattr(shared_signals, "fetch_with_hook", fetch)
    monkeypatch.setattr(shared_signals, "_CACHES", shared_signals.weakref.WeakKeyDictionary())

    original = shared_signals.SharedSignalCache

    def cache_factory(fetcher, **kw):
        if clock is not None:
            kw["clock"] = lambda: clock.now.timestamp()
        return original(fetch, **kw)

    monkeypatch.setattr(shared_signals, "SharedSignalCache", cache_factory)


def planned(job: Job, now: datetime, start: datetime) -> Plan:
    return Plan(
        zone="GB",
        chunks=(Chunk(start, start + job.duration),),
        run_now=start <= now,
        latest_start=job.latest_start,
        planned_at=now,
        status=PlanStatus.BEST_NOW if start <= now else PlanStatus.SHIFTED,
        reason=f"start {start:%H:%M}",
    )


async def first_event(trigger: GridWindowTrigger):
    async for event in trigger.run():
        return event
    raise AssertionError("trigger ended without an event")


def test_serialize_round_trip():
    trigger = make_trigger(make_job(job_id="d/r/t"), refresh_seconds=60, end_from_trigger=True)
    path, kwargs = trigger.serialize()
    assert path == "airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger"
    again = GridWindowTrigger(**kwargs)
    assert again.request == trigger.request and again.job == trigger.job


def test_replans_each_refresh_and_releases_at_the_planned_start(clock, monkeypatch):
    job = make_job()
    target = T0 + timedelta(hours=3)
    calls = []

    async def fetch(key):
        return series()

    def fake_plan(job_, *, carbon, price, now, **_):
        calls.append(now)
        return planned(job_, now, target)

    install_fetch(monkeypatch, fetch)
    monkeypatch.setattr(grid_window, "plan_job", fake_plan)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=3600)))
    assert event.payload["plan"]["chunks"][0]["start"] == "2024-06-01T15:00:00Z"
    assert clock.now == target
    # Receding horizon: re-planned every refresh (at a fixed per-job phase), and at the planned start.
    assert calls[0] == T0 and calls[-1] == target
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(calls[1:-1])]
    assert 0 < (calls[1] - T0).total_seconds() <= 3600
    assert all(g == pytest.approx(3600) for g in gaps)
    assert event.payload["replans"] == len(calls) >= 4


def test_never_released_after_latest_start_even_if_the_plan_says_later(clock, monkeypatch):
    job = make_job()

    async def fetch(key):
        return series()

    monkeypatch.setattr(grid_window, "plan_job", lambda j, **kw: planned(j, kw["now"], j.deadline))
    install_fetch(monkeypatch, fetch)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=10_000)))
    assert clock.now == job.latest_start
    assert event.payload["plan"]["status"] == "deadline_at_risk"


def test_flexible_without_signal_waits_to_the_latest_start(clock, monkeypatch):
    job = make_job()

    async def fetch(key):
        raise SourceUnavailableError("refused", source="c")

    install_fetch(monkeypatch, fetch)
    monkeypatch.setattr(grid_window, "plan_job", lambda *a, **k: pytest.fail("no signal: must not plan"))
    event = asyncio.run(first_event(make_trigger(job)))
    assert clock.now == job.latest_start
    assert event.payload["plan"]["status"] == "no_signal"
    assert "refused" in event.payload["problems"][0]


def test_batch_plans_on_cached_data_when_the_source_fails(clock, monkeypatch):
    job = make_job(priority_class="batch")
    outcomes = iter([series(), SourceUnavailableError("down", source="c")])
    seen = []

    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history here", source="c")
        outcome = next(outcomes, SourceUnavailableError("down", source="c"))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def fake_plan(job_, *, carbon, price, now, **_):
        seen.append(sorted(carbon))
        return planned(job_, now, T0 + timedelta(hours=2))

    install_fetch(monkeypatch, fetch, clock)
    monkeypatch.setattr(grid_window, "plan_job", fake_plan)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=3600)))
    assert len(seen) >= 3 and all(zones == ["GB"] for zones in seen)  # planning went on with the cached forecast
    assert clock.now == T0 + timedelta(hours=2)
    assert any("cached" in p for p in event.payload["problems"])


def test_critical_never_waits(clock, monkeypatch):
    install_fetch(monkeypatch, lambda key: pytest.fail("critical work does not fetch"))
    event = asyncio.run(first_event(make_trigger(make_job(priority_class="critical"))))
    assert clock.now == T0 and event.payload["plan"]["status"] == "critical"


def test_end_from_trigger_yields_task_success_with_the_decision(clock, monkeypatch):
    async def fetch(key):
        return series()

    install_fetch(monkeypatch, fetch)
    monkeypatch.setattr(grid_window, "plan_job", lambda j, **kw: planned(j, kw["now"], kw["now"]))
    event = asyncio.run(first_event(make_trigger(make_job(), end_from_trigger=True)))
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"]["plan"]["run_now"] is True


def test_with_the_real_planner_the_trigger_waits_for_the_dip(clock, monkeypatch):
    dip_start = T0 + timedelta(hours=5)

    def dipped():
        points = []
        for i in range(96):
            start = T0 + i * timedelta(minutes=30)
            points.append(
                (
                    start,
                    start + timedelta(minutes=30),
                    40.0 if dip_start <= start < dip_start + timedelta(hours=1) else 300.0,
                )
            )
        return build_series(
            kind=SignalKind.CARBON_INTENSITY,
            metric=CarbonMetric.AVERAGE,
            zone="GB",
            source="t",
            series_type=SeriesType.FORECAST,
            issued_at=clock.now,
            unit="g/kWh",
            points=points,
        )

    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history", source="c")
        return dipped()

    install_fetch(monkeypatch, fetch, clock)
    event = asyncio.run(first_event(make_trigger(make_job(), refresh_seconds=1800)))
    plan = event.payload["plan"]
    assert plan["chunks"][0]["start"] == "2024-06-01T17:00:00Z"
    assert clock.now == dip_start
    assert plan["expected_signals"]["gCO2eq/kWh"] == pytest.approx(40.0)
    assert event.payload["counterfactual"]["signals"]["gCO2eq/kWh"] == pytest.approx(300.0)


def test_never_released_before_the_earliest_start(clock, monkeypatch):
    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history", source="c")
        return series(100.0)  # flat: "start as early as allowed" is the plan

    install_fetch(monkeypatch, fetch, clock)
    job = make_job(earliest_start=T0 + timedelta(hours=2))
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=1800)))
    assert clock.now == T0 + timedelta(hours=2)
    assert event.payload["plan"]["chunks"][0]["start"] == "2024-06-01T14:00:00Z"


def test_a_slow_history_refresh_never_holds_up_planning(clock, monkeypatch):
    job = make_job(deadline=T0 + timedelta(hours=16))
    history_requests = []
    seen = []

    async def fetch(key):
        if not key.forecast:
            history_requests.append(clock.now)
            if len(history_requests) > 1:
                await asyncio.Event().wait()  # the refresh of the recent actuals never ends
        return series()

    def fake_plan(job_, *, carbon, price, now, history, **_):
        seen.append(sorted(history))
        return planned(job_, now, T0 + timedelta(hours=12))

    install_fetch(monkeypatch, fetch, clock)
    monkeypatch.setattr(grid_window, "plan_job", fake_plan)
    # (wait_for only turns a regression, a trigger parked on the hung request, into a failure instead of a hang)
    event = asyncio.run(asyncio.wait_for(first_event(make_trigger(job, refresh_seconds=3600)), 60))
    assert clock.now == T0 + timedelta(hours=12)
    # Hourly re-plans went on with the (stale) actuals while one background refresh hung; nobody waited on it.
    assert len(seen) >= 12 and all(zones == ["GB"] for zones in seen)
    assert len(history_requests) == 2 and history_requests[1] >= T0 + grid_window.HISTORY_MAX_AGE
    assert event.payload["replans"] == len(seen)


def test_first_plan_waits_for_the_first_actuals_and_later_plans_get_the_previous_window(clock, monkeypatch):
    target = T0 + timedelta(hours=3)
    calls = []

    async def fetch(key):
        if not key.forecast:
            for _ in range(5):  # the actuals arrive after the forecast
                await asyncio.sleep(0)
        return series()

    def fake_plan(job_, *, carbon, price, now, history, previous, **_):
        calls.append((sorted(history), previous))
        return planned(job_, now, target)

    install_fetch(monkeypatch, fetch, clock)
    monkeypatch.setattr(grid_window, "plan_job", fake_plan)
    asyncio.run(first_event(make_trigger(make_job(), refresh_seconds=3600)))
    assert calls[0] == (["GB"], None)  # a fresh triggerer (or a restart) plans with history from the start
    for _, previous in calls[1:]:
        assert previous.zone == "GB" and previous.start == target


def test_cached_planning_grids_go_with_their_series(monkeypatch):
    monkeypatch.setattr(grid_window, "_GRID_CACHE", OrderedDict())
    job = make_job()
    forecast = series()
    first = grid_window.plan_job(job, carbon={"GB": forecast}, price={}, now=T0)
    again = grid_window.plan_job(job, carbon={"GB": forecast}, price={}, now=T0 + timedelta(seconds=30))
    assert len(grid_window._GRID_CACHE) == 1 and first.zone == again.zone == "GB"  # one grid per series and slot
    grid_window.plan_job(job, carbon={"GB": forecast}, price={}, now=T0 + timedelta(minutes=10))
    assert len(grid_window._GRID_CACHE) == 1  # a later slot replaces the earlier slot's grid
    del forecast
    gc.collect()
    assert len(grid_window._GRID_CACHE) == 0  # a refreshed (dropped) series takes its grids with it
