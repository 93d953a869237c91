"""Replaying traces in simulated time: the clock, the anchor and its loop, resampling, forecast noise, prices."""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.simulator.prices import SyntheticPriceFormula, SyntheticPriceReplay
from airflow_provider_gridaware.traces.clock import SimClock
from airflow_provider_gridaware.traces.forecast import ForecastNoise
from airflow_provider_gridaware.traces.timeline import Anchor, ZoneReplay, loop_period, resample
from airflow_provider_gridaware.traces.trace import load_trace_file, load_traces

UTC = timezone.utc
DAY = timedelta(days=1)
GB_START = datetime(2023, 5, 26, 3, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def gb() -> ZoneReplay:
    return ZoneReplay(load_traces().zone("GB"), Anchor.NOW)


def small_trace(tmp_path: Path, days: int = 2, step_minutes: int = 60):
    rows = []
    t = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(days * 24 * 60 // step_minutes):
        rows.append(f"{(t + timedelta(minutes=i * step_minutes)).isoformat()},Z,{i}")
    path = tmp_path / "small.csv"
    path.write_text("time,zone,value\n" + "\n".join(rows) + "\n")
    return load_trace_file(path).zone("Z")


# -- clock --------------------------------------------------------------------------------------------------
class FakeWall:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_clock_runs_speedup_times_faster_and_can_be_set():
    wall = FakeWall()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    clock = SimClock(now=start, speedup=60, wall=wall)
    assert clock.now() == start
    wall.seconds += 10
    assert clock.now() == start + timedelta(minutes=10)
    assert clock() == clock.now()
    clock.set(speedup=1)  # re-based: no jump
    assert clock.now() == start + timedelta(minutes=10)
    wall.seconds += 10
    assert clock.now() == start + timedelta(minutes=10, seconds=10)
    target = datetime(2030, 6, 1, 12, tzinfo=UTC)
    assert clock.set(now=target) == target
    assert clock.advance(timedelta(hours=2)) == target + timedelta(hours=2)
    assert clock.wall_seconds(timedelta(minutes=1)) == 60
    assert clock.describe() == {"now": "2030-06-01T14:00:00Z", "speedup": 1.0}


def test_clock_refuses_bad_values():
    with pytest.raises(ValueError, match="positive"):
        SimClock(speedup=0)
    with pytest.raises(ValueError, match="positive"):
        SimClock().set(speedup=-1)
    with pytest.raises(Exception, match="no timezone"):
        SimClock(now=datetime(2024, 1, 1))


def test_default_clock_is_the_real_time():
    before = datetime.now(UTC)
    assert before <= SimClock().now() <= datetime.now(UTC)


# -- anchor and loop ------------------------------------------------------------------------------------------
def test_loop_period_is_whole_weeks_or_whole_days(gb, tmp_path):
    assert loop_period(gb.trace) == 28 * 86400  # 30.4 days of GB data loop every 4 weeks
    assert loop_period(small_trace(tmp_path, days=3)) == 3 * 86400
    assert loop_period(small_trace(tmp_path, days=3, step_minutes=30)) == 3 * 86400


def test_anchor_now_serves_any_date_shifted_by_whole_days(gb):
    for when in (datetime(2026, 11, 26, 9, 47, tzinfo=UTC), datetime(1999, 2, 3, 4, 5, tzinfo=UTC)):
        shift = gb.shift_at(when)
        assert shift.total_seconds() % 86400 == 0
        trace_time = gb.to_trace_time(when)
        assert GB_START <= trace_time < GB_START + 28 * DAY
        assert (trace_time.hour, trace_time.minute) == (when.hour, when.minute)  # time of day kept
        assert trace_time.weekday() == when.weekday()  # whole weeks: day of week kept too
        assert gb.value_at(when) == gb.trace.value_at(trace_time)


def test_anchor_now_loops(gb):
    when = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert gb.value_at(when) == gb.value_at(when + 28 * DAY) == gb.value_at(when - 56 * DAY)


def test_points_across_the_loop_seam_stay_contiguous(gb):
    seam = GB_START + 28 * DAY + 100 * 28 * DAY  # a presented moment where the trace starts over
    points = gb.points(seam - timedelta(hours=3), seam + timedelta(hours=3))
    assert len(points) == 12
    assert all(a[1] == b[0] for a, b in itertools.pairwise(points))
    after = [p for p in points if p[0] >= seam]
    assert after[0][2] == gb.trace.values[0]  # the trace starts again from its first point


def test_anchor_fixed_keeps_trace_times_and_has_nothing_outside(gb):
    fixed = ZoneReplay(gb.trace, Anchor.FIXED)
    assert fixed.value_at(GB_START) == 166.0
    assert fixed.value_at(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert fixed.points(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)) == []
    assert fixed.points(GB_START, GB_START + timedelta(hours=1))[0][0] == GB_START


def test_anchor_parsing():
    assert Anchor.parse("NOW") is Anchor.NOW
    with pytest.raises(Exception, match="'now' or 'fixed'"):
        Anchor.parse("later")


# -- resampling -------------------------------------------------------------------------------------------------
def test_resample_steps_or_averages(gb):
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    half_hours = gb.points(start, start + timedelta(hours=1))
    five = resample(gb, start, start + timedelta(hours=1), timedelta(minutes=5), how="start")
    assert len(five) == 12
    assert [v for _, _, v in five] == [half_hours[0][2]] * 6 + [half_hours[1][2]] * 6
    hourly = resample(gb, start, start + timedelta(hours=1), timedelta(hours=1))
    assert hourly[0][2] == pytest.approx((half_hours[0][2] + half_hours[1][2]) / 2)
    # Slots are aligned to the step: a start inside a slot gets the slot that contains it.
    assert resample(gb, start + timedelta(minutes=7), start + timedelta(minutes=8), timedelta(minutes=5))[0][0] == (
        start + timedelta(minutes=5)
    )


def test_resample_leaves_gaps_out(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("time,zone,value\n2024-01-01T00:00Z,Z,1\n2024-01-01T01:00Z,Z,2\n2024-01-01T05:00Z,Z,3\n")
    replay = ZoneReplay(load_trace_file(path).zone("Z"), Anchor.FIXED)
    slots = resample(replay, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 6, tzinfo=UTC), timedelta(hours=1))
    assert [s.hour for s, _, _ in slots] == [0, 1, 5]


# -- forecast noise ---------------------------------------------------------------------------------------------
def test_perfect_forecast_is_the_truth(gb):
    issued = datetime(2026, 3, 2, 10, tzinfo=UTC)
    truth = gb.points(issued, issued + 2 * DAY)
    assert ForecastNoise(error_fraction=0).apply(truth, key="GB|carbon", issued_at=issued, scale=gb.scale) == truth


def test_forecast_noise_is_deterministic_per_issue_time(gb):
    noise = ForecastNoise(error_fraction=0.05)
    issued = datetime(2026, 3, 2, 10, tzinfo=UTC)
    truth = gb.points(issued, issued + 2 * DAY)
    first = noise.apply(truth, key="GB|carbon", issued_at=issued, scale=gb.scale)
    assert first == noise.apply(truth, key="GB|carbon", issued_at=issued, scale=gb.scale)
    assert first != truth
    assert first[0] == truth[0]  # lead 0: the current interval is known
    other_issue = noise.apply(truth, key="GB|carbon", issued_at=issued - timedelta(minutes=30), scale=gb.scale)
    assert other_issue != first
    other_seed = ForecastNoise(error_fraction=0.05, seed=1).apply(
        truth, key="GB|carbon", issued_at=issued, scale=gb.scale
    )
    assert other_seed != first
    # A longer request shares the shorter one's error path: asking for more never changes what was said.
    short = noise.apply(truth[:10], key="GB|carbon", issued_at=issued, scale=gb.scale)
    assert short == first[:10]


def test_forecast_error_grows_with_lead_time_to_the_configured_fraction():
    noise = ForecastNoise(error_fraction=0.05)
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    samples: dict[int, list[float]] = {1: [], 6: [], 24: [], 48: []}
    for i in range(400):
        when = issued + timedelta(minutes=30 * i)
        for hours, values in samples.items():
            values.append(noise.error_at("Z|carbon", when, timedelta(hours=hours)))
    spread = {hours: statistics.pstdev(values) for hours, values in samples.items()}
    assert spread[1] < spread[6] < spread[24] < spread[48]
    assert spread[24] == pytest.approx(0.05, rel=0.2)
    assert spread[48] == pytest.approx(0.05 * math.sqrt(2), rel=0.2)
    assert noise.error_at("Z|carbon", issued, timedelta(0)) == 0


def test_forecast_carbon_is_never_negative_but_prices_may_be():
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    truth = [(issued + timedelta(hours=h), issued + timedelta(hours=h + 1), 0.0) for h in range(72)]
    noisy = ForecastNoise(error_fraction=0.5).apply(truth, key="k", issued_at=issued, scale=100.0)
    assert min(v for _, _, v in noisy) == 0.0
    prices = ForecastNoise(error_fraction=0.5).apply(truth, key="k", issued_at=issued, scale=100.0, lower=None)
    assert min(v for _, _, v in prices) < 0


def test_forecast_noise_refuses_a_negative_error():
    with pytest.raises(ValueError, match=">= 0"):
        ForecastNoise(error_fraction=-0.1)


# -- synthetic prices ------------------------------------------------------------------------------------------
def test_synthetic_price_is_affine_in_carbon_with_a_daily_shape(gb):
    formula = SyntheticPriceFormula()
    evening = datetime(2026, 1, 1, 18, tzinfo=UTC)
    morning = datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert formula.price(100, evening) == pytest.approx(30 + 40 + 10)
    assert formula.price(100, morning) == pytest.approx(30 + 40 - 10)
    assert formula.price(200, evening) - formula.price(100, evening) == pytest.approx(40)
    prices = SyntheticPriceReplay(gb, formula)
    assert prices.synthetic and prices.zone == "GB"
    points = prices.points(evening, evening + timedelta(hours=1))
    carbon = gb.points(evening, evening + timedelta(hours=1))
    assert [p[:2] for p in points] == [c[:2] for c in carbon]
    assert points[0][2] == pytest.approx(formula.price(carbon[0][2], carbon[0][0] + timedelta(minutes=15)))
    assert prices.describe()["synthetic"] is True and "cos" in str(prices.describe()["formula"])
