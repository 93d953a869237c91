"""The worker's first decision: a window opening within the resume guard is waited for on the worker and
released on the signals already fetched (no deferral, no second round of requests)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_gridaware import window
from airflow_provider_gridaware.sensors.grid_window import GridWindowSensor
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series
from airflow_provider_gridaware.times import ScaledClock

UTC = timezone.utc
SPEED = 120.0  # 5 simulated minutes take 2.5 wall seconds


def test_a_window_within_the_guard_is_waited_for_on_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ScaledClock(time.time(), time.time(), SPEED)
    monkeypatch.setattr("airflow_provider_gridaware.times.current_clock", lambda: clock)
    sensor = GridWindowSensor(
        task_id="wait",
        duration=timedelta(minutes=10),
        deadline=timedelta(hours=6),
        conn_id="c",
        zones=["GB"],
        deferrable=True,
    )
    now = clock.now()
    # A 5-minute boundary 5-10 simulated minutes (2.5-5 wall seconds) ahead: far enough that a loaded
    # machine's first decision (imports, the plan) does not reach it, well within the 30 s guard.
    dip = datetime.fromtimestamp(((now.timestamp() + 300) // 300 + 1) * 300, UTC)
    forecast = build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=now,
        unit="gCO2eq/kWh",
        points=[
            (dip + k * timedelta(minutes=5), dip + (k + 1) * timedelta(minutes=5), 40.0 if 0 <= k < 2 else 300.0)
            for k in range(-2, 48)
        ],
    )
    fetches = []

    def fetch_all(sources, budget_s):
        fetches.append(budget_s)
        return {(s, True): forecast for s in sources} | {(s, False): RuntimeError("no history") for s in sources}

    monkeypatch.setattr(window, "_fetch_all", fetch_all)
    # Airflow stamps the run's start on the wall clock; the job counts from it mapped onto the scaled clock.
    wall = datetime.now(UTC)
    context = {"dag_run": SimpleNamespace(start_date=wall, run_after=wall), "ti": None}
    payload = sensor.execute(context)  # no TaskDeferred: released on the worker
    assert payload["status"] == "released" and payload["plan"]["chunks"][0]["start"] == dip.isoformat().replace(
        "+00:00", "Z"
    )
    assert clock.now() >= dip and len(fetches) == 1  # decided again on the same signals
    # The counterfactual is "start when the wait began" (the planner works in whole seconds).
    began = datetime.fromisoformat(payload["waiting_since"].replace("Z", "+00:00"))
    planned_at = datetime.fromisoformat(payload["counterfactual"]["planned_at"].replace("Z", "+00:00"))
    assert abs((began - planned_at).total_seconds()) < 1 and payload["waited_seconds"] > 60
