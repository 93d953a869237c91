"""The shared stack's clock (``tests/integration/airflow_stack.py``: ``phased_clock``): the wall clock's pace,
shifted by at most half a planning slot so that a slot starts where the waiting scenarios need it."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_gridaware.times import clock_from_spec
from tests.integration.airflow_stack import PLANNING_STEP_S, phased_clock

UTC = timezone.utc


@given(wall=st.floats(min_value=1.6e9, max_value=2.0e9), slot_in=st.floats(min_value=0.0, max_value=900.0))
def test_a_slot_starts_slot_in_seconds_from_now_and_the_shift_is_at_most_half_a_slot(
    wall: float, slot_in: float
) -> None:
    clock = phased_clock(slot_in, wall=wall)
    at = clock.from_wall(datetime.fromtimestamp(wall + slot_in, UTC)).timestamp()
    nearest = round(at / PLANNING_STEP_S) * PLANNING_STEP_S
    assert abs(at - nearest) < 1e-3  # a slot boundary, to the millisecond
    shift = clock.sim_epoch_s - clock.wall_epoch_s
    assert abs(shift) <= PLANNING_STEP_S / 2
    assert clock.speed == 1.0


def test_the_clock_runs_at_the_wall_clocks_pace_and_survives_its_spec() -> None:
    clock = phased_clock(200.0)
    again = clock_from_spec(clock.spec())
    assert again == clock
    first, second = datetime(2026, 12, 6, 4, 0, tzinfo=UTC), datetime(2026, 12, 6, 4, 7, 30, tzinfo=UTC)
    assert clock.from_wall(second) - clock.from_wall(first) == second - first
