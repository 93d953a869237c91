"""Lowest-mean windows: overlap weighting, gaps and bounds, checked against a brute-force integral."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_gridaware.planning.windows import lowest_window, window_means
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def series(values, step=H, gaps=()):
    points, t = [], T0
    for i, v in enumerate(values):
        if i in gaps:
            t += step
        points.append((t, t + step, v))
        t += step
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="Z",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=T0,
        unit="g/kWh",
        points=points,
    )


def test_partial_last_interval_is_weighted_by_overlap():
    s = series([100, 300, 10])
    w = window_means(s, timedelta(minutes=90))
    assert [round(x.mean, 6) for x in w] == [
        pytest.approx((100 * 60 + 300 * 30) / 90),
        pytest.approx((300 * 60 + 10 * 30) / 90),
    ]


def test_lowest_prefers_earliest_on_ties_and_respects_bounds():
    s = series([5, 1, 1, 5, 1, 1])
    assert lowest_window(s, 2 * H).start == T0 + H
    assert lowest_window(s, 2 * H, not_before=T0 + 2 * H).start == T0 + 4 * H
    assert lowest_window(s, 2 * H, not_after=T0 + 2 * H).start == T0
    assert lowest_window(s, 7 * H) is None


def test_gaps_disqualify_windows():
    s = series([1, 1, 1, 1], gaps=(2,))  # hole between the 2nd and 3rd point
    assert [w.start for w in window_means(s, 2 * H)] == [T0, T0 + 3 * H]


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=30), st.integers(1, 240))
def test_matches_brute_force(values, minutes):
    s = series(values, step=timedelta(minutes=30))
    duration = timedelta(minutes=minutes)
    for w in window_means(s, duration):
        total, t = 0.0, w.start
        while t < w.end:  # integrate minute by minute
            total += s.value_at(t)
            t += timedelta(minutes=1)
        assert w.mean == pytest.approx(total / minutes)
