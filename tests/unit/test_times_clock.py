"""The injectable clock across processes: a ``GRIDAWARE_CLOCK`` value, and wall-clock records mapped onto it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_gridaware.times import CLOCK_ENV, ScaledClock, SystemClock, clock_from_spec
from airflow_provider_gridaware.window import run_start_from_context

UTC = timezone.utc
WALL = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
SIM = datetime(2026, 12, 4, 9, 57, 30, tzinfo=UTC)


def test_a_spec_recreates_the_clock_in_another_process() -> None:
    clock = ScaledClock(SIM.timestamp(), WALL.timestamp(), 4.0)
    assert clock_from_spec(clock.spec()) == clock
    assert isinstance(clock_from_spec(""), SystemClock) and isinstance(clock_from_spec("system"), SystemClock)
    with pytest.raises(ValueError, match=CLOCK_ENV):
        clock_from_spec("scaled:soon")


def test_a_wall_instant_maps_onto_the_scaled_clock() -> None:
    clock = ScaledClock(SIM.timestamp(), WALL.timestamp(), 4.0)
    assert clock.from_wall(WALL) == SIM
    assert clock.from_wall(WALL + timedelta(seconds=30)) == SIM + timedelta(minutes=2)


def test_the_run_start_airflow_recorded_is_read_on_the_current_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow stamps a run's start on the wall clock: a relative deadline must count from the same instant
    # on the clock the trigger and the worker read, or it would be off by the clocks' difference.
    context = {"dag_run": SimpleNamespace(start_date=WALL + timedelta(seconds=10), run_after=None)}
    monkeypatch.delenv(CLOCK_ENV, raising=False)
    assert run_start_from_context(context) == WALL + timedelta(seconds=10)
    monkeypatch.setenv(CLOCK_ENV, ScaledClock(SIM.timestamp(), WALL.timestamp(), 1.0).spec())
    assert run_start_from_context(context) == SIM + timedelta(seconds=10)


def test_a_source_asked_for_the_forecast_from_now_asks_from_the_current_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The planner decides at the clock's "now": a forecast fetched from the wall clock's would start hours
    # away from it on accelerated time (issued at the wrong time, its leads and the archive's with it).
    from airflow_provider_gridaware.signals import SignalKind
    from airflow_provider_gridaware.sources import ukci
    from airflow_provider_gridaware.sources.flow import SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings

    sim = datetime(2023, 6, 1, 12, 10, tzinfo=UTC)
    monkeypatch.setenv(CLOCK_ENV, ScaledClock(sim.timestamp(), datetime.now(UTC).timestamp(), 1.0).spec())
    flow = ukci.signal_flow(
        SourceSettings("ukci_unit", "https://ukci.example"), SignalQuery("GB", SignalKind.CARBON_INTENSITY, True)
    )
    request = next(flow)
    assert "/intensity/2023-06-01T12:1" in request.url, request.url
