"""duration="auto": the run time and margin estimated from past runs (pure)."""

from __future__ import annotations

import statistics
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_gridaware.planning.runtime import (
    MIN_RELATIVE_MARGIN,
    NotEnoughRunHistoryError,
    estimate_runtime,
    nearest_rank,
)

MIN = 60.0
runs = st.lists(st.floats(min_value=1.0, max_value=86_400.0 * 3), min_size=3, max_size=40)


def test_seven_training_runs():
    hours = [1.9, 1.95, 1.97, 2.0, 2.02, 2.05, 2.2]
    estimate = estimate_runtime([h * 3600 for h in hours], task="train/fit")
    assert estimate.duration == timedelta(hours=2)
    assert estimate.p90 == timedelta(hours=2.2)  # below ten runs: the slowest run
    assert estimate.margin == pytest.approx(timedelta(hours=0.2), abs=timedelta(seconds=1))
    assert estimate.runtime_margin == pytest.approx(0.1)
    assert estimate.runs == 7
    assert estimate.describe() == "duration 2 h estimated from 7 runs (median; p90 2 h 12 min, margin 12 min)"


def test_too_few_runs_names_the_task_and_the_count():
    with pytest.raises(NotEnoughRunHistoryError) as caught:
        estimate_runtime([600.0, 620.0], task="nightly/train", min_runs=3)
    message = str(caught.value)
    assert "nightly/train" in message and "found 2 successful runs" in message and "3 needed" in message
    assert (caught.value.found, caught.value.needed) == (2, 3)
    with pytest.raises(NotEnoughRunHistoryError, match="found 0 successful runs"):
        estimate_runtime([], task="nightly/train")
    with pytest.raises(NotEnoughRunHistoryError, match="found 1 successful run with"):
        estimate_runtime([5.0], task="nightly/train", min_runs=2)


def test_min_runs_is_configurable():
    assert estimate_runtime([600.0], task="d/t", min_runs=1).duration == timedelta(minutes=10)
    with pytest.raises(ValueError, match="min_runs"):
        estimate_runtime([600.0], task="d/t", min_runs=0)


def test_identical_runs_still_get_the_minimum_margin():
    estimate = estimate_runtime([1800.0] * 5, task="d/t")
    assert estimate.duration == timedelta(minutes=30)
    assert estimate.runtime_margin == pytest.approx(MIN_RELATIVE_MARGIN)


def test_instant_runs_are_planned_as_one_second():
    estimate = estimate_runtime([0.0, 0.0, 0.2], task="d/t")
    assert estimate.duration == timedelta(seconds=1) and estimate.runtime_margin > 0


def test_broken_records_are_refused_not_guessed_around():
    with pytest.raises(ValueError, match="finite"):
        estimate_runtime([60.0, float("nan"), 60.0], task="d/t")
    with pytest.raises(ValueError, match="finite"):
        estimate_runtime([60.0, -1.0, 60.0], task="d/t")


def test_from_ten_runs_one_outlier_sets_neither_the_duration_nor_the_margin():
    steady = [100 * MIN + i * MIN for i in range(9)]  # 100..108 min
    with_outlier = estimate_runtime([*steady, 1000 * MIN], task="d/t")
    assert with_outlier.p90 == timedelta(minutes=108)
    assert with_outlier.duration == timedelta(minutes=104.5)


def test_nearest_rank():
    assert nearest_rank([1.0, 2.0, 3.0], 0.9) == 3.0
    assert nearest_rank([float(i) for i in range(1, 11)], 0.9) == 9.0
    assert nearest_rank([float(i) for i in range(1, 21)], 0.9) == 18.0
    assert nearest_rank([5.0], 0.5) == 5.0


@given(runs)
def test_the_promise_covers_at_least_ninety_percent_of_past_runs(values):
    estimate = estimate_runtime(values, task="d/t")
    # timedelta keeps microseconds: the duration is rounded to one, and the margin (the rounded duration times
    # the relative margin) carries that rounding times the ratio: a few µs below the p90 at most (hypothesis
    # found 1.7 µs with runs of 1, 1.5 and 5 s).
    covered = (estimate.duration + estimate.margin).total_seconds() * (1 + 1e-9) + 1e-5
    assert sum(v <= covered for v in values) >= 0.9 * len(values)
    assert estimate.runtime_margin >= MIN_RELATIVE_MARGIN * (1 - 1e-9)
    assert estimate.duration.total_seconds() == pytest.approx(max(statistics.median(values), 1.0))


@given(runs, st.floats(min_value=0.01, max_value=100.0))
def test_scaling_every_run_scales_the_duration_and_keeps_the_relative_margin(values, factor):
    base = estimate_runtime(values, task="d/t")
    scaled = estimate_runtime([v * factor for v in values], task="d/t")
    if min(values) * min(factor, 1) >= 1.0:  # away from the one-second floor
        assert scaled.duration.total_seconds() == pytest.approx(base.duration.total_seconds() * factor, rel=1e-6)
        assert scaled.runtime_margin == pytest.approx(base.runtime_margin, rel=1e-6, abs=1e-9)


@given(runs, st.randoms())
def test_order_does_not_matter(values, random):
    shuffled = list(values)
    random.shuffle(shuffled)
    assert estimate_runtime(shuffled, task="d/t") == estimate_runtime(values, task="d/t")


@given(runs, st.floats(min_value=1.0, max_value=86_400.0 * 30))
def test_one_more_run_moves_the_duration_at_most_to_a_neighbouring_run(values, extra):
    ordered = sorted(values)
    after = estimate_runtime([*values, extra], task="d/t").duration.total_seconds()
    assert ordered[(len(ordered) - 1) // 2 - 1 if len(ordered) > 2 else 0] - 1e-6 <= after
    assert after <= ordered[len(ordered) // 2 + 1 if len(ordered) > 2 else -1] + 1e-6
