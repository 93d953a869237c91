"""The simulator's clean window: the pure shaping, its replay on the timeline, the grid and the CLI option."""

from __future__ import annotations

import argparse
import itertools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.signals.errors import SourceConfigError
from airflow_provider_gridaware.simulator.cli import _config, add_parser, main, parse_duration
from airflow_provider_gridaware.simulator.grid import SimulatedGrid, SimulatorConfig
from airflow_provider_gridaware.simulator.server import config_to_argv
from airflow_provider_gridaware.traces.timeline import (
    CLEAN_WINDOW_RAMP,
    Anchor,
    CleanWindow,
    ZoneReplay,
    resample,
)
from airflow_provider_gridaware.traces.trace import load_trace_file

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HALF_HOUR = timedelta(minutes=30)


def trace_file(tmp_path: Path, values: list[float], step: timedelta = HALF_HOUR, zone: str = "Z") -> Path:
    """A long-layout trace from ``T0`` with one value per ``step``."""
    rows = [f"{(T0 + i * step).isoformat()},{zone},{v}" for i, v in enumerate(values)]
    path = tmp_path / f"{zone.lower()}.csv"
    path.write_text("time,zone,value\n" + "\n".join(rows) + "\n")
    return path


def replay(tmp_path: Path, values: list[float], window: CleanWindow | None, step: timedelta = HALF_HOUR) -> ZoneReplay:
    return ZoneReplay(load_trace_file(trace_file(tmp_path, values, step)).zone("Z"), Anchor.FIXED, window)


# -- the window itself ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "depth", "message"),
    [
        (T0.replace(tzinfo=None), T0 + HALF_HOUR, 0.5, "timezone-aware"),
        (T0, T0, 0.5, "must end after it starts"),
        (T0, T0 - MINUTE, 0.5, "must end after it starts"),
        (T0, T0 + HALF_HOUR, 0.0, "depth must be more than 0 and at most 1, not 0.0"),
        (T0, T0 + HALF_HOUR, 1.5, "not 1.5"),
    ],
)
def test_bad_windows_are_refused_with_what_was_wrong(
    start: datetime, end: datetime, depth: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CleanWindow(start, end, depth)


def test_ahead_is_measured_from_now_and_refuses_the_past() -> None:
    window = CleanWindow.ahead(T0, opens_in=timedelta(minutes=4), lasts=HALF_HOUR, depth=0.25)
    assert (window.start, window.end, window.depth) == (T0 + 4 * MINUTE, T0 + 34 * MINUTE, 0.25)
    late = CleanWindow.ahead(T0 + timedelta(microseconds=1), opens_in=MINUTE, lasts=HALF_HOUR)
    assert late.start == T0 + MINUTE + timedelta(seconds=1)  # whole seconds, never before what was asked
    with pytest.raises(ValueError, match="cannot open in the past"):
        CleanWindow.ahead(T0, opens_in=-MINUTE, lasts=HALF_HOUR)


def test_shape_ramps_from_the_deepest_opening_back_to_the_reference() -> None:
    window = CleanWindow(T0 + 10 * MINUTE, T0 + 40 * MINUTE, depth=0.5)
    recorded = [(T0, T0 + HALF_HOUR, 300.0), (T0 + HALF_HOUR, T0 + 2 * HALF_HOUR, 200.0)]
    shaped = window.shape(recorded, reference=200.0)
    # Untouched outside, split exactly at the edges, one piece per ramp step inside, no gap or overlap.
    assert shaped[0] == (T0, T0 + 10 * MINUTE, 300.0)
    assert shaped[-1] == (T0 + 40 * MINUTE, T0 + 2 * HALF_HOUR, 200.0)
    inside = shaped[1:-1]
    assert [p[0] for p in inside] == [T0 + 10 * MINUTE + i * CLEAN_WINDOW_RAMP for i in range(30)]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(shaped))
    values = [v for _, _, v in inside]
    assert values[0] == pytest.approx(100.0)  # half of the lowest recorded value at the opening
    assert all(a < b for a, b in itertools.pairwise(values))  # the opening is the cleanest moment
    assert values[-1] == pytest.approx(200.0 - 0.5 * 200.0 / 30)  # one ramp step short of the reference at the end
    assert max(values) < 200.0


def test_shape_without_data_in_the_window_changes_nothing() -> None:
    window = CleanWindow(T0, T0 + HALF_HOUR)
    recorded = [(T0 - HALF_HOUR, T0, 10.0)]
    assert window.shape(recorded, reference=None) == recorded
    assert window.shape(recorded, reference=5.0) == recorded


def test_a_negative_reference_goes_further_below_zero() -> None:
    window = CleanWindow(T0, T0 + HALF_HOUR, depth=0.5)
    assert window.lowered(-20.0, T0) == pytest.approx(-30.0)
    assert window.lowered(40.0, T0) == pytest.approx(20.0)


# -- on the timeline ------------------------------------------------------------------------------------------
def test_replay_serves_the_window_in_points_value_at_and_every_resampling(tmp_path: Path) -> None:
    window = CleanWindow(T0 + 65 * MINUTE, T0 + 95 * MINUTE, depth=0.5)
    values = [300.0, 280.0, 260.0, 250.0, 240.0, 230.0]
    shaped = replay(tmp_path, values, window)
    plain = replay(tmp_path, values, None)
    end = T0 + 3 * timedelta(hours=1)
    assert shaped.recorded_points(T0, end) == plain.points(T0, end)
    # Reference: the lowest recorded value in [01:05, 01:35) is 250 (01:30-02:00).
    assert shaped.value_at(window.start) == pytest.approx(125.0)
    assert shaped.value_at(window.start - timedelta(seconds=1)) == 260.0
    assert shaped.value_at(window.end) == 250.0
    for minute in range(0, 180):  # value_at and points() tell the same story at every minute
        when = T0 + minute * MINUTE
        served = [v for s, e, v in shaped.points(T0, end) if s <= when < e]
        assert served == [shaped.value_at(when)]
    five = resample(shaped, T0, end, timedelta(minutes=5), how="start")
    recorded = dict((s, v) for s, _, v in resample(plain, T0, end, timedelta(minutes=5), how="start"))
    dipped = [s for s, _, v in five if v < recorded[s]]
    assert dipped[0] == T0 + 65 * MINUTE and dipped[-1] == T0 + 90 * MINUTE  # 5-minute slots starting inside
    assert min(five, key=lambda p: p[2])[0] == T0 + 65 * MINUTE  # the first slot in the window is the cleanest
    half = resample(shaped, T0, end, HALF_HOUR)
    assert half[2][2] < plain.points(T0 + 60 * MINUTE, T0 + 61 * MINUTE)[0][2]  # partly dipped half-hours, by mean
    assert half[3][2] < 250.0
    assert shaped.describe()["clean_window"] == window.describe()


def test_a_window_in_a_gap_of_a_fixed_trace_serves_nothing_new(tmp_path: Path) -> None:
    window = CleanWindow(T0 + timedelta(days=2), T0 + timedelta(days=2, minutes=30))
    shaped = replay(tmp_path, [100.0, 90.0], window)
    assert shaped.points(T0, T0 + timedelta(days=3)) == shaped.recorded_points(T0, T0 + timedelta(days=3))
    assert shaped.value_at(window.start) is None


# -- in the simulated grid -------------------------------------------------------------------------------------
def grid(tmp_path: Path, **options: object) -> SimulatedGrid:
    values = [200.0 + (i % 48) for i in range(48 * 3)]
    config = SimulatorConfig(
        traces=(str(trace_file(tmp_path, values)),),
        anchor="fixed",
        now=T0 + timedelta(hours=12),
        forecast_error=0.0,
        **options,  # type: ignore[arg-type]
    )
    return SimulatedGrid(config)


def test_the_grid_opens_the_window_relative_to_its_clock_for_carbon_and_price(tmp_path: Path) -> None:
    sim = grid(tmp_path, clean_window_in=4 * MINUTE, clean_window_for=HALF_HOUR, clean_window_depth=0.4)
    window = sim.clean_window
    assert window is not None
    # The simulated clock started at 12:00 and runs on (in wall time) while the grid is built.
    assert timedelta(0) <= window.start - T0.replace(hour=12, minute=4) < timedelta(seconds=5)
    assert (window.end - window.start, window.depth) == (HALF_HOUR, 0.4)
    assert sim.state()["clean_window"] == window.describe()
    start = window.start
    carbon, price = sim.carbon("Z"), sim.price("Z")
    before, opening = start - MINUTE, start
    assert carbon.value_at(opening) == pytest.approx(0.6 * 224.0)  # 12:00-12:30 holds 224, the window's lowest
    assert carbon.value_at(before) == 224.0
    price_before = price.points(before, before + MINUTE)[0][2]
    price_opening = price.points(opening, opening + MINUTE)[0][2]
    assert price_opening < price_before - 30  # the synthetic price follows the carbon dip (0.4 EUR/MWh per g)
    now = sim.now()
    forecast = sim.forecast(carbon, now, now, now + timedelta(hours=1), timedelta(minutes=5), how="start")
    assert min(forecast, key=lambda p: p[2])[0] == T0 + timedelta(hours=12, minutes=5)  # first 5 minutes inside
    assert grid(tmp_path).state()["clean_window"] is None


def test_the_grid_refuses_a_bad_window_as_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="cannot open in the past"):
        grid(tmp_path, clean_window_in=-MINUTE)
    with pytest.raises(SourceConfigError, match="depth"):
        grid(tmp_path, clean_window_in=MINUTE, clean_window_depth=2.0)


# -- the command line --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("3m", 3 * MINUTE), ("1h30m", timedelta(minutes=90)), ("2.5m", 150 * MINUTE / 60)],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "m", "3 minutes", "1m1h", "-3m"])
def test_parse_duration_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like 90s, 3m or 1h30m"):
        parse_duration(text)


def parse_serve(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", "serve", *argv])


def test_cli_options_become_the_config_and_round_trip_through_argv() -> None:
    args = parse_serve("--clean-window-in", "3m", "--clean-window-for", "20m", "--clean-window-depth", "0.7")
    config = _config(args)
    assert (config.clean_window_in, config.clean_window_for, config.clean_window_depth) == (
        3 * MINUTE,
        20 * MINUTE,
        0.7,
    )
    again = _config(parse_serve(*config_to_argv(config)))
    assert (again.clean_window_in, again.clean_window_for, again.clean_window_depth) == (3 * MINUTE, 20 * MINUTE, 0.7)
    assert _config(parse_serve()).clean_window_in is None
    assert "--clean-window-in" not in config_to_argv(_config(parse_serve()))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clean-window-in", "3"], "--clean-window-in: '3' is not a duration like 90s, 3m or 1h30m"),
        (["--clean-window-in", "3m", "--clean-window-for", "0s"], "--clean-window-for must be longer than 0"),
        (["--clean-window-in", "3m", "--clean-window-depth", "0"], "--clean-window-depth must be more than 0"),
    ],
)
def test_cli_refuses_bad_window_options_with_exit_code_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--port", "0", *argv]) == 2
    assert message in capsys.readouterr().err
