"""GridWindowTrigger on a simulated clock: re-planning, release times, fallbacks, freshness, serialisation."""

from __future__ import annotations

import asyncio
import gc
from collections import OrderedDict
from datetime import datetime, timedelta, timezone

import pytest
from airflow.triggers.base import TaskSuccessEvent

from airflow_provider_gridaware.planning import planner, signal_grid
from airflow_provider_gridaware.planning.decision import Counterfactual
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.plan import Chunk, Plan, PlanStatus
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    SeriesType,
    SignalKind,
    SourceConfigError,
    SourceUnavailableError,
    build_series,
)
from airflow_provider_gridaware.triggers import grid_window, shared_signals
from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


class SimClock:
    """The trigger's clock: sleeping advances simulated time instantly."""

    def __init__(self, now: datetime) -> None:
        self.at = now
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.at += timedelta(seconds=seconds)
        await asyncio.sleep(0)

    def wall_seconds(self, seconds: float) -> float:
        return seconds


@pytest.fixture
def clock(monkeypatch) -> SimClock:
    sim = SimClock(T0)
    monkeypatch.setattr(grid_window, "current_clock", lambda: sim)
    return sim


def series(value: float = 100.0, *, issued_at: datetime = T0, dip: tuple[datetime, timedelta] | None = None):
    points = []
    for i in range(96):
        start = T0 + i * timedelta(minutes=30)
        in_dip = dip is not None and dip[0] <= start < dip[0] + dip[1]
        points.append((start, start + timedelta(minutes=30), 40.0 if in_dip else value))
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=issued_at,
        unit="g/kWh",
        points=points,
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
            kw["clock"] = lambda: clock.at.timestamp()
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


def fake_planner(monkeypatch, make_plan):
    """Replace the planner's window choice (decide() and everything around it stay real)."""
    monkeypatch.setattr(planner, "plan_job", lambda job, grid, **kw: make_plan(job, kw["now"], kw))


def dip_forecast(clock: SimClock, dip_start: datetime):
    """A fetcher: 300 g with a one-hour 40 g dip at ``dip_start``, issued when asked; no recent actuals."""

    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history", source="c")
        return series(300.0, dip=(dip_start, timedelta(hours=1)), issued_at=clock.at)

    return fetch


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


def test_every_waiting_trigger_logs_through_one_logger():
    # Per instance, Airflow's LoggingMixin keeps a logger of its own: about 1.2 KB per trigger once it has
    # logged a decision, which thousands of waiting tasks would pay. The task's log is chosen by context.
    first, second = make_trigger(make_job(job_id="d/r/a")), make_trigger(make_job(job_id="d/r/b"))
    assert first.log is second.log is GridWindowTrigger.logger()
    assert "_log" not in vars(first) and "_log" not in vars(second)


def test_replans_each_refresh_and_releases_at_the_planned_start(clock, monkeypatch):
    job = make_job(job_id="d/r/t")
    target = T0 + timedelta(hours=3)
    calls = []
    fetches = []

    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history here", source="c")
        fetches.append(clock.at)
        return series(dip=(target, timedelta(hours=1)), issued_at=clock.at)

    def make_plan(job_, now, kw):
        calls.append(now)
        return planned(job_, now, target)

    install_fetch(monkeypatch, fetch, clock)
    fake_planner(monkeypatch, make_plan)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=3600)))
    assert event.payload["plan"]["chunks"][0]["start"] == "2024-06-01T15:00:00Z"
    assert clock.at == target
    # Receding horizon: re-planned just after every refresh boundary (all jobs within a minute of it), and at
    # the planned start; one upstream request per refresh period, so no plan ran on data from an earlier one.
    assert calls[0] == T0 and calls[-1] == target
    assert [c.hour for c in calls[1:-1]] == [12, 13, 14]
    assert all(0 < c.minute * 60 + c.second <= 60 for c in calls[1:-1])
    assert [f.hour for f in fetches] == [12, 13, 14, 15]
    assert event.payload["replans"] == len(calls) == 5


def test_never_released_after_latest_start_even_if_the_plan_says_later(clock, monkeypatch):
    job = make_job()

    async def fetch(key):
        return series()

    fake_planner(monkeypatch, lambda j, now, kw: planned(j, now, j.deadline))
    install_fetch(monkeypatch, fetch)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=10_000)))
    assert clock.at == job.latest_start
    assert event.payload["plan"]["status"] == "deadline_at_risk"


def test_flexible_without_signal_waits_to_the_latest_start(clock, monkeypatch):
    job = make_job()

    async def fetch(key):
        raise SourceUnavailableError("refused", source="c")

    install_fetch(monkeypatch, fetch)
    fake_planner(monkeypatch, lambda *a: pytest.fail("no signal: must not plan"))
    event = asyncio.run(first_event(make_trigger(job)))
    assert clock.at == job.latest_start
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

    def make_plan(job_, now, kw):
        seen.append(now)
        return planned(job_, now, T0 + timedelta(hours=2))

    install_fetch(monkeypatch, fetch, clock)
    fake_planner(monkeypatch, make_plan)
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=3600)))
    assert len(seen) >= 3  # planning went on with the cached forecast (no fallback)
    assert clock.at == T0 + timedelta(hours=2)
    assert any("cached" in p for p in event.payload["problems"])


def test_critical_never_waits(clock, monkeypatch):
    install_fetch(monkeypatch, lambda key: pytest.fail("critical work does not fetch"))
    event = asyncio.run(first_event(make_trigger(make_job(priority_class="critical"))))
    assert clock.at == T0 and event.payload["plan"]["status"] == "critical"


def test_end_from_trigger_yields_task_success_with_the_decision(clock, monkeypatch):
    async def fetch(key):
        return series()

    install_fetch(monkeypatch, fetch)
    fake_planner(monkeypatch, lambda j, now, kw: planned(j, now, now))
    event = asyncio.run(first_event(make_trigger(make_job(), end_from_trigger=True)))
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms["return_value"]["plan"]["run_now"] is True


def test_ending_from_the_trigger_writes_the_tries_ledger_record(clock, monkeypatch, tmp_path):
    """No worker runs after a TaskSuccessEvent: the trigger writes the sensor try's record itself."""
    from types import SimpleNamespace

    from airflow_provider_gridaware.hooks.store import close_shared_archives
    from airflow_provider_gridaware.ledger.records import TryKey
    from airflow_provider_gridaware.ledger_writer import LedgerSpec
    from airflow_provider_gridaware.store.ledger import LedgerStore

    async def fetch(key):
        return series()

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    install_fetch(monkeypatch, fetch)
    fake_planner(monkeypatch, lambda j, now, kw: planned(j, now, now))
    spec = LedgerSpec(operator="sensor", priority_class="flexible", duration_s=3600.0, profile={"power_w": 500.0})
    trigger = make_trigger(make_job(), end_from_trigger=True, ledger=spec.to_dict())
    trigger = GridWindowTrigger(**trigger.serialize()[1])  # the spec survives a triggerer restart
    trigger.task_instance = SimpleNamespace(dag_id="d", run_id="r", task_id="wait", map_index=-1, try_number=2)
    try:
        event = asyncio.run(first_event(trigger))
        with LedgerStore(url) as store:
            record = store.get(TryKey("d", "r", "wait", -1, 2))
    finally:
        close_shared_archives()
    assert record is not None and record.operator == "sensor" and record.state == "success"
    released_at = event.xcoms["return_value"]["released_at"]
    assert record.actual.start.isoformat().replace("+00:00", "Z") == released_at
    assert record.actual.end - record.actual.start == timedelta(hours=1)
    assert record.actual.energy_kwh == pytest.approx(0.5 * 1.2)  # 500 W for an hour, default PUE


def test_with_the_real_planner_the_trigger_waits_for_the_dip_and_reports_the_saving(clock, monkeypatch):
    dip_start = T0 + timedelta(hours=5)

    install_fetch(monkeypatch, dip_forecast(clock, dip_start), clock)
    event = asyncio.run(first_event(make_trigger(make_job(), refresh_seconds=1800)))
    payload = event.payload
    assert payload["plan"]["chunks"][0]["start"] == "2024-06-01T17:00:00Z"
    assert clock.at == dip_start
    assert payload["plan"]["expected_signals"]["gCO2eq/kWh"] == pytest.approx(40.0)
    # The counterfactual is "start when the wait began" (300), not "start at the release" (40).
    assert payload["counterfactual"]["signals"]["gCO2eq/kWh"] == pytest.approx(300.0)
    assert payload["counterfactual"]["planned_at"] == "2024-06-01T12:00:00Z"
    assert payload["expected_saving"]["gCO2eq/kWh"] == pytest.approx(260 / 300)
    assert payload["waited_seconds"] == 5 * 3600
    assert "runs at once" not in payload["reason"]
    assert "waiting 5 h" in payload["reason"] and "87% lower" in payload["reason"]


def test_the_wait_and_its_counterfactual_survive_a_triggerer_restart(clock, monkeypatch):
    dip_start = T0 + timedelta(hours=5)

    install_fetch(monkeypatch, dip_forecast(clock, dip_start), clock)
    began = T0 - timedelta(hours=2)
    counterfactual = Counterfactual(began, "GB", {"gCO2eq/kWh": 350.0}, 1.2)
    trigger = make_trigger(make_job(), refresh_seconds=1800, waiting_since="2024-06-01T10:00:00Z")
    restarted = GridWindowTrigger(
        **make_trigger(
            make_job(), waiting_since="2024-06-01T10:00:00Z", counterfactual=counterfactual.to_dict()
        ).serialize()[1]
    )
    assert trigger.request.waiting_since == restarted.request.waiting_since
    payload = asyncio.run(first_event(restarted)).payload
    assert payload["counterfactual"]["signals"]["gCO2eq/kWh"] == 350.0
    assert payload["waiting_since"] == "2024-06-01T10:00:00Z" and payload["waited_seconds"] == 7 * 3600


def test_a_released_task_that_resumes_on_a_worker_waits_out_the_resume_guard(clock, monkeypatch):
    held = []

    async def hold(not_before):
        held.append(not_before)

    async def fetch(key):
        return series()

    install_fetch(monkeypatch, fetch)
    monkeypatch.setattr(grid_window, "hold_until", hold)
    asyncio.run(first_event(make_trigger(make_job(), not_before=1234.5)))
    assert held == [1234.5]
    asyncio.run(first_event(make_trigger(make_job(), not_before=1234.5, end_from_trigger=True)))
    assert held == [1234.5]  # ending from the trigger needs no guard: nothing resumes


def test_an_unexpected_error_fails_only_its_own_trigger_and_is_retrieved(clock, monkeypatch):
    """A bug-class error from both look-ups (forecast and actuals) is raised once, in this trigger; the
    second one must not surface later as 'Future exception was never retrieved' in another trigger."""

    class Boom(RuntimeError):
        pass

    async def fetch(key):
        await asyncio.sleep(0)
        raise Boom(f"boom {key.forecast}")

    install_fetch(monkeypatch, fetch)
    unretrieved = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unretrieved.append(ctx))
        with pytest.raises(Boom):
            await first_event(make_trigger(make_job()))
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    gc.collect()
    assert unretrieved == []


def test_a_missing_connection_is_a_source_config_error_naming_it(monkeypatch):
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_gridaware.hooks import registry

    class Missing:
        @staticmethod
        async def aget_connection(conn_id):
            raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr("airflow.sdk.BaseHook", Missing)
    with pytest.raises(SourceConfigError, match="connection 'gridaware_ukci_typo' does not exist"):
        asyncio.run(registry.ahook_for_connection("gridaware_ukci_typo"))


def test_never_released_before_the_earliest_start(clock, monkeypatch):
    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no history", source="c")
        return series(100.0)  # flat: "start as early as allowed" is the plan

    install_fetch(monkeypatch, fetch, clock)
    job = make_job(earliest_start=T0 + timedelta(hours=2))
    event = asyncio.run(first_event(make_trigger(job, refresh_seconds=1800)))
    assert clock.at == T0 + timedelta(hours=2)
    assert event.payload["plan"]["chunks"][0]["start"] == "2024-06-01T14:00:00Z"


def test_a_slow_history_refresh_never_holds_up_planning(clock, monkeypatch):
    job = make_job(deadline=T0 + timedelta(hours=16))
    history_requests = []
    seen = []

    async def fetch(key):
        if not key.forecast:
            history_requests.append(clock.at)
            if len(history_requests) > 1:
                await asyncio.Event().wait()  # the refresh of the recent actuals never ends
        return series()

    real_grid_for = signal_grid.grid_for

    def grid_for(job_, *, carbon, price, now, history=None, calibrations=None):
        seen.append(sorted(history or {}))
        return real_grid_for(job_, carbon=carbon, price=price, now=now, history=None)

    install_fetch(monkeypatch, fetch, clock)
    monkeypatch.setattr(signal_grid, "grid_for", grid_for)
    fake_planner(monkeypatch, lambda j, now, kw: planned(j, now, T0 + timedelta(hours=12)))
    # (wait_for only turns a regression, a trigger parked on the hung request, into a failure instead of a hang)
    event = asyncio.run(asyncio.wait_for(first_event(make_trigger(job, refresh_seconds=3600)), 60))
    assert clock.at == T0 + timedelta(hours=12)
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

    histories = []
    real_grid_for = signal_grid.grid_for

    def grid_for(job_, *, carbon, price, now, history=None, calibrations=None):
        histories.append(sorted(history or {}))
        return real_grid_for(job_, carbon=carbon, price=price, now=now, history=None)

    def make_plan(job_, now, kw):
        calls.append((histories[-1], kw["previous"]))
        return planned(job_, now, target)

    install_fetch(monkeypatch, fetch, clock)
    monkeypatch.setattr(signal_grid, "grid_for", grid_for)
    fake_planner(monkeypatch, make_plan)
    asyncio.run(first_event(make_trigger(make_job(), refresh_seconds=3600)))
    assert calls[0] == (["GB"], None)  # a fresh triggerer (or a restart) plans with history from the start
    for _, previous in calls[1:]:
        assert previous.zone == "GB" and previous.start == target


def test_cached_planning_grids_go_with_their_series(monkeypatch):
    monkeypatch.setattr(signal_grid, "_GRID_CACHE", OrderedDict())
    job = make_job()
    forecast = series()
    first = signal_grid.grid_for(job, carbon={"GB": forecast}, price={}, now=T0)
    again = signal_grid.grid_for(job, carbon={"GB": forecast}, price={}, now=T0 + timedelta(seconds=30))
    assert len(signal_grid._GRID_CACHE) == 1 and first is again  # one grid per series and slot
    signal_grid.grid_for(job, carbon={"GB": forecast}, price={}, now=T0 + timedelta(minutes=10))
    assert len(signal_grid._GRID_CACHE) == 1  # a later slot replaces the earlier slot's grid
    del forecast
    gc.collect()
    assert len(signal_grid._GRID_CACHE) == 0  # a refreshed (dropped) series takes its grids with it


def test_a_missing_connection_fails_its_trigger_with_the_reason_instead_of_waiting(clock, monkeypatch):
    async def fetch(key):
        raise SourceConfigError("connection 'typo' does not exist", source="typo")

    install_fetch(monkeypatch, fetch)
    with pytest.raises(SourceConfigError, match="connection 'typo' does not exist"):
        asyncio.run(first_event(make_trigger(make_job())))
    assert clock.at == T0  # at once, not at the latest start
