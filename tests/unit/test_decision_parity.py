"""What the backtest measures is what ships: the live trigger and the backtest's ``gridaware`` policy make
the same decisions on the same inputs, and no backtest decision depends on data from after it.

The trigger runs on a simulated clock with a fetcher that returns the newest forecast vintage issued by
then (no recent actuals, so no own forecaster); the backtest replays the same vintages with its own
forecaster off. Both then release at the same moment in the same zone, for every job and every sequence
of vintages hypothesis tries.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.policies import PolicySettings, ReplayJob, replay_policy
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig
from airflow_provider_gridaware.signals import (
    CarbonMetric,
    SeriesType,
    SignalKind,
    SourceUnavailableError,
    build_series,
)
from airflow_provider_gridaware.triggers import grid_window, shared_signals
from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource

UTC = timezone.utc
T0 = datetime(2024, 3, 4, tzinfo=UTC)  # a midnight: the replay's grid starts there too
HOUR = 3600
ZONES = ("HOME", "AWAY")
REFRESH_S = 1800


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.at = now

    def now(self) -> datetime:
        return self.at

    async def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
        await asyncio.sleep(0)

    def wall_seconds(self, seconds: float) -> float:
        return seconds


def vintage_series(zone: str, issued_s: int, values: list[float]):
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="test",
        series_type=SeriesType.FORECAST,
        issued_at=datetime.fromtimestamp(issued_s, UTC),
        unit="gCO2eq/kWh",
        points=[
            (
                datetime.fromtimestamp(issued_s + i * HOUR, UTC),
                datetime.fromtimestamp(issued_s + (i + 1) * HOUR, UTC),
                v,
            )
            for i, v in enumerate(values)
        ],
    )


@st.composite
def worlds(draw):
    """Hourly vintages every 6 h for two zones (distinct values, so no ties), and one job."""
    t0 = int(T0.timestamp())
    count = draw(st.integers(2, 4))
    vintages = {}
    for zone in ZONES:
        vintages[zone] = []
        for k in range(count):
            issued = t0 + 6 * HOUR * k
            values = draw(st.lists(st.integers(50, 500), min_size=48, max_size=48, unique=True))
            vintages[zone].append((issued, [float(v) + (0.5 if zone == "AWAY" else 0.0) for v in values]))
    duration_h = draw(st.integers(1, 4))
    slack_h = draw(st.integers(2, 12))
    submit = t0 + draw(st.integers(0, 5)) * 600
    zones = ZONES if draw(st.booleans()) else ZONES[:1]
    job = ReplayJob(
        "d/r/t", submit, duration_h * HOUR, duration_h * HOUR, submit + (duration_h + slack_h) * HOUR, False, zones
    )
    return vintages, job


def backtest_release(vintages, job: ReplayJob) -> tuple[str, int]:
    t0 = int(T0.timestamp())
    actual = PointSeries.from_starts(np.arange(t0 - 2 * 86400, t0 + 4 * 86400, HOUR), np.full(6 * 24, 200.0))
    replay = Replay(
        carbon={z: actual for z in ZONES},
        carbon_vintages={
            z: [(issued, PointSeries.from_starts(issued + HOUR * np.arange(len(v)), v)) for issued, v in vintages[z]]
            for z in ZONES
        },
        # Vintages as published on both sides: this test archives nothing for the trigger to learn a track
        # record from (calibration itself is tested in test_calibration.py, on both paths' shared core).
        config=ReplayConfig(step_s=300, forecaster="none", calibrate=False),
    )
    [execution] = replay_policy(replay, "gridaware", [job], PolicySettings(replan_s=REFRESH_S))
    return execution.zone, execution.start_s


def trigger_release(vintages, job: ReplayJob, monkeypatch) -> tuple[str, float]:
    clock = SimClock(datetime.fromtimestamp(job.submit_s, UTC))
    monkeypatch.setattr(grid_window, "current_clock", lambda: clock)
    monkeypatch.setattr(shared_signals, "_CACHES", shared_signals.weakref.WeakKeyDictionary())

    async def fetch(key):
        if not key.forecast:
            raise SourceUnavailableError("no recent actuals in this test", source="test")
        now_s = clock.now().timestamp()
        issued, values = max((v for v in vintages[key.zone] if v[0] <= now_s), key=lambda v: v[0])
        return vintage_series(key.zone, issued, values)

    original = shared_signals.SharedSignalCache
    monkeypatch.setattr(shared_signals, "fetch_with_hook", fetch)
    monkeypatch.setattr(
        shared_signals,
        "SharedSignalCache",
        lambda fetcher, **kw: original(fetch, **{**kw, "clock": lambda: clock.now().timestamp()}),
    )
    typed = Job(
        duration=timedelta(seconds=job.estimate_s),
        earliest_start=datetime.fromtimestamp(job.submit_s, UTC),
        deadline=datetime.fromtimestamp(job.deadline_s, UTC),
        zones=job.zones,
        job_id=job.job_id,
    )
    trigger = GridWindowTrigger(
        GridWindowRequest(
            job=typed.to_dict(),
            sources=[SignalSource(conn_id="c", zone=z) for z in job.zones],
            refresh_seconds=REFRESH_S,
            use_history=False,
        )
    )

    async def first():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    payload = asyncio.run(first())
    return payload["plan"]["zone"], clock.now().timestamp()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(worlds())
def test_the_trigger_and_the_backtest_release_at_the_same_time_in_the_same_zone(monkeypatch, world):
    vintages, job = world
    with monkeypatch.context() as patch:
        live_zone, live_at = trigger_release(vintages, job, patch)
    zone, at = backtest_release(vintages, job)
    # The backtest decides on whole seconds; the trigger at the exact (sub-second) refresh offsets.
    assert live_zone == zone and at - 1 < live_at <= at


@settings(max_examples=25, deadline=None)
@given(worlds(), st.integers(0, 12 * 6))
def test_no_backtest_decision_depends_on_data_from_after_it(world, cut_ten_minutes):
    """Rewrite every vintage issued after a cut and every actual after it: a job released before the cut
    must be released at the same time in the same zone (nothing later was looked at)."""
    vintages, job = world
    cut = job.submit_s + cut_ten_minutes * 600
    zone, start = backtest_release(vintages, job)
    rewritten = {
        z: [(issued, values if issued <= cut else [1000.0 - v for v in values]) for issued, values in vintages[z]]
        for z in ZONES
    }
    again = backtest_release(rewritten, job)
    if start < cut:
        assert again == (zone, start)


def test_parity_holds_with_a_visible_shift(monkeypatch):
    """A sanity anchor for the property above: the example really waits and really moves zone."""
    t0 = int(T0.timestamp())
    home = [400.0] * 48
    away = [410.0] * 48
    away[5] = away[6] = 60.0  # AWAY is clean from 05:00 to 07:00
    vintages = {"HOME": [(t0, home)], "AWAY": [(t0, away)]}
    job = ReplayJob("d/r/t", t0, 2 * HOUR, 2 * HOUR, t0 + 12 * HOUR, False, ZONES)
    assert backtest_release(vintages, job) == ("AWAY", t0 + 5 * HOUR)
    assert trigger_release(vintages, job, monkeypatch) == ("AWAY", t0 + 5 * HOUR)


@pytest.fixture(autouse=True)
def _fresh_grid_cache(monkeypatch):
    from collections import OrderedDict

    from airflow_provider_gridaware.planning import signal_grid

    monkeypatch.setattr(signal_grid, "_GRID_CACHE", OrderedDict())
