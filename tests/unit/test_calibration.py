"""Calibration of provider forecasts: bias per lead, shrinkage, no look-ahead, blend weights, no history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_gridaware.planning.calibration import (
    CalibrationSettings,
    ForecastCalibration,
    ForecastSamples,
    calibrate,
    calibrate_series,
    known_times,
    own_forecasts_at,
)
from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster
from airflow_provider_gridaware.planning.planner import ZoneSignals, prepare
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series

UTC = timezone.utc
DAY = 86_400
H = 3600
T0 = 1_704_067_200  # 2024-01-01T00:00Z
STEP = 1800
# True bias (provider minus actual) per default lead band: low, and lower with the lead, like GB 2023.
BAND_BIAS = np.array([-3.0, -6.0, -10.0, -15.0, -22.0, -28.0, -30.0])


def actual_series(days: int, seed: int = 0) -> np.ndarray:
    """Half-hourly carbon with a daily cycle and noise, from T0."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 48) / 2
    return 250 + 80 * np.cos(2 * np.pi * (hours % 24 - 15) / 24) + rng.normal(0, 15, hours.size)


def synthetic_samples(
    *,
    days: int,
    provider_noise: float = 5.0,
    own_noise: float | None = None,
    own_noise_per_hour: float = 0.0,
    first_day: int = 0,
    seed: int = 1,
) -> tuple[ForecastSamples, np.ndarray]:
    """Vintages every 6 h over ``days`` (from ``first_day``), 48 h ahead, biased by BAND_BIAS per lead."""
    rng = np.random.default_rng(seed)
    actual = actual_series(first_day + days + 3, seed)
    calibration_settings = CalibrationSettings()
    parts = []
    for issued in T0 + first_day * DAY + 6 * H * np.arange(4 * days):
        first = (issued - T0) // STEP
        slots = np.arange(first, first + 96)
        starts = T0 + STEP * slots
        lead = starts + STEP // 2 - issued
        truth = actual[slots]
        provider = truth + BAND_BIAS[calibration_settings.band_of(lead)] + rng.normal(0, provider_noise, slots.size)
        own_sd = None if own_noise is None else own_noise + own_noise_per_hour * lead / H
        own = np.full(slots.size, np.nan) if own_sd is None else truth + rng.normal(0, 1, slots.size) * own_sd
        parts.append(
            ForecastSamples(np.full(slots.size, issued, np.int64), starts, starts + STEP, provider, truth, own)
        )
    return ForecastSamples.concat(parts), actual


def test_bias_per_lead_is_recovered():
    samples, _ = synthetic_samples(days=20)
    now = T0 + 23 * DAY
    exact = calibrate(samples, now, CalibrationSettings(shrink_days=0))
    centres = CalibrationSettings().centres_h() * H
    np.testing.assert_allclose(exact.bias_at(centres), BAND_BIAS, atol=1.0)
    # The correction undoes the bias: the corrected provider is centred on the actuals.
    shrunk = calibrate(samples, now)
    days = shrunk.evidence_days[3]
    assert shrunk.bias_at(9 * H) == pytest.approx(-15.0 * days / (days + 3), abs=1.0)
    corrected, spread = shrunk.apply(np.array([9 * H]), np.array([200.0 - 15.0]))
    assert corrected[0] == pytest.approx(200.0, abs=3.5)
    assert 0 < spread[0] < 10  # the residual error is the noise, not the bias


def test_little_history_is_shrunk_towards_no_correction():
    biases = []
    for days in (1, 3, 14):
        samples, _ = synthetic_samples(days=days, first_day=20 - days)
        calibration = calibrate(samples, T0 + 22 * DAY, CalibrationSettings(window_days=28))
        biases.append(float(calibration.bias_at(9 * H)))
        assert calibration.evidence_days.max() == days
    # n / (n + 3): a quarter of the bias with one day, half with three, 82 % with two weeks.
    np.testing.assert_allclose(biases, [-15 * 1 / 4, -15 * 3 / 6, -15 * 14 / 17], atol=1.0)


def test_only_the_trailing_window_counts():
    samples, _ = synthetic_samples(days=30)
    calibration = calibrate(samples, T0 + 33 * DAY, CalibrationSettings(window_days=7))
    assert calibration.evidence_days.max() <= 8


def test_blend_weights_favour_the_better_source():
    good_own, _ = synthetic_samples(days=14, provider_noise=30.0, own_noise=5.0)
    bad_own, _ = synthetic_samples(days=14, provider_noise=5.0, own_noise=30.0)
    now = T0 + 17 * DAY
    for_own = calibrate(good_own, now)
    for_provider = calibrate(bad_own, now)
    assert np.all(for_own.provider_weight < 0.3)
    assert np.all(for_provider.provider_weight > 0.7)
    # The blend's error is below the worse source's and comes out of the same samples.
    assert np.all(for_own.error < 20) and np.all(for_provider.error < 20)
    reason = for_own.reason(12)
    assert "ran low" in reason and "own at 12 h" in reason


def test_a_stale_vintage_is_blended_with_a_fresh_own_forecast_by_each_ones_skill_at_its_own_lead():
    # The own forecaster is good a little ahead and poor far ahead; the provider is equally good at every lead.
    samples, _ = synthetic_samples(days=14, provider_noise=10.0, own_noise=2.0, own_noise_per_hour=2.0)
    calibration = calibrate(samples, T0 + 17 * DAY)
    lead = np.array([9.0 * H])
    learnt = calibration.weight_at(lead)
    assert learnt[0] > 0.6  # issued together, the provider wins at 9 h
    # The vintage was issued 8.5 h ago; the own forecast now is only 0.5 h ahead of the same target.
    fresh = calibration.weight_at(lead, lead - 8.5 * H)
    assert fresh[0] < 0.3
    np.testing.assert_array_equal(calibration.weight_at(lead, lead), learnt)  # equal leads: unchanged
    assert calibration.error_at(lead, lead - 8.5 * H)[0] < 0.7 * calibration.error_at(lead)[0]
    np.testing.assert_array_equal(calibration.error_at(lead, lead), calibration.error_at(lead))
    blended, _ = calibration.apply(lead, np.array([300.0]), np.array([200.0]), lead - 8.5 * H)
    assert 200.0 < blended[0] < 200.0 + 0.3 * (300.0 - 200.0 - float(calibration.bias_at(lead)[0])) + 1
    # Where there is no own forecast to blend with, the error stays the one learnt at the vintage's lead.
    leads = np.array([9.0 * H, 9.0 * H])
    _, spread = calibration.apply(leads, np.array([300.0, 300.0]), np.array([200.0, np.nan]), leads - 8.5 * H)
    assert spread[0] < spread[1] == calibration.error_at(lead)[0]
    _, alone = calibration.apply(lead, np.array([300.0]), None, lead - 8.5 * H)
    np.testing.assert_array_equal(alone, calibration.error_at(lead))


def test_no_history_uses_the_provider_as_is():
    for calibration in (
        calibrate(ForecastSamples.empty(), T0),
        ForecastCalibration.identity(source="ukci"),
        calibrate(synthetic_samples(days=3)[0], T0 + 900),  # no target has ended yet
    ):
        assert not calibration.has_history
        values, spread = calibration.apply(np.array([H, 20 * H]), np.array([100.0, 150.0]), np.array([1.0, 2.0]))
        np.testing.assert_array_equal(values, [100.0, 150.0])
        assert np.isnan(spread).all()
        assert "as published" in calibration.reason()


sample_arrays = st.integers(1, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 10 * DAY), min_size=n, max_size=n),
        st.lists(st.integers(-H, 48 * H), min_size=n, max_size=n),
        st.lists(st.floats(0, 500), min_size=n, max_size=n),
        st.lists(st.floats(0, 500), min_size=n, max_size=n),
        st.lists(st.one_of(st.none(), st.floats(0, 500)), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=sample_arrays, now=st.integers(0, 12 * DAY), seed=st.integers(0, 1000))
def test_no_look_ahead(data, now, seed):
    """Changing anything not known at ``now`` (later vintages, unfinished targets) changes nothing."""
    issued_rel, lead, provider, actual, own = data
    issued = T0 + np.asarray(issued_rel, np.int64)
    start = issued + np.asarray(lead, np.int64)
    samples = ForecastSamples(
        issued,
        start,
        start + STEP,
        np.asarray(provider, float),
        np.asarray(actual, float),
        np.array([np.nan if v is None else v for v in own], float),
    )
    now_s = T0 + now
    unknown = (samples.issued_s > now_s) | (samples.end_s > now_s)
    rng = np.random.default_rng(seed)

    def scrambled(values: np.ndarray) -> np.ndarray:
        return np.where(unknown, rng.uniform(-1000, 1000, values.size), values)

    changed = ForecastSamples(
        samples.issued_s,
        samples.start_s,
        samples.end_s,
        scrambled(samples.provider),
        scrambled(samples.actual),
        scrambled(samples.own),
    )
    before, after = calibrate(samples, now_s), calibrate(changed, now_s)
    # In issue order the window is found by bisection instead of a mask: same result.
    order = np.argsort(samples.issued_s, kind="stable")
    names = ("issued_s", "start_s", "end_s", "provider", "actual", "own")
    in_order = calibrate(ForecastSamples(*(getattr(samples, n)[order] for n in names)), now_s)
    for name in ("bias", "provider_weight", "error", "evidence_days", "samples"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name), err_msg=name)
        np.testing.assert_allclose(getattr(before, name), getattr(in_order, name), rtol=1e-12, err_msg=name)


# -- the live path: SignalSeries in, calibration out, used by the planner ----------------------------
def series(values: np.ndarray, start_s: int, *, issued_s: int | None = None, zone: str = "A"):
    points = [
        (
            datetime.fromtimestamp(start_s + i * STEP, UTC),
            datetime.fromtimestamp(start_s + (i + 1) * STEP, UTC),
            float(max(v, 0.0)),
        )
        for i, v in enumerate(values)
    ]
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="ukci" if issued_s is not None else "meter",
        series_type=SeriesType.ACTUAL if issued_s is None else SeriesType.FORECAST,
        issued_at=None if issued_s is None else datetime.fromtimestamp(issued_s, UTC),
        unit="gCO2eq/kWh",
        points=points,
    )


def live_inputs(days: int, bias: float = -20.0):
    actual = actual_series(days + 3)
    vintages = []
    for issued in T0 + 6 * H * np.arange(4 * days):
        first = (issued - T0) // STEP
        vintages.append(series(actual[first : first + 96] + bias, int(T0 + first * STEP), issued_s=int(issued)))
    return series(actual, T0), vintages


def test_calibrate_series_learns_from_archived_vintages():
    actuals, vintages = live_inputs(16)
    now = datetime.fromtimestamp(T0 + 16 * DAY, UTC)
    fc = SeasonalForecaster(step_s=STEP, horizon_slots=96, training_days=14)
    calibration = calibrate_series(vintages, actuals, now=now, forecaster=fc)
    assert calibration.has_history and calibration.source == "ukci" and calibration.zone == "A"
    days = calibration.evidence_days[3]
    assert calibration.bias_at(9 * H) == pytest.approx(-20 * days / (days + 3), abs=1.5)
    assert calibrate_series([], actuals, now=now).has_history is False


def test_own_forecasts_at_a_vintage_use_only_what_had_ended():
    actuals, vintages = live_inputs(6)
    fc = SeasonalForecaster(step_s=STEP, horizon_slots=96, training_days=14)
    issued = T0 + 4 * DAY + 6 * H
    vintage = next(v for v in vintages if int(v.issued_at.timestamp()) == issued)
    changed = series(
        np.where(np.arange(9 * 48) * STEP + T0 >= issued, 999.0, actual_series(9)), T0
    )  # the future rewritten
    np.testing.assert_array_equal(
        own_forecasts_at([vintage], actuals, fc, step_s=STEP)[0],
        own_forecasts_at([vintage], changed, fc, step_s=STEP)[0],
    )


def test_planner_corrects_the_forecast_and_uses_its_error_as_spread():
    actuals, vintages = live_inputs(16)
    now_s = T0 + 16 * DAY
    now = datetime.fromtimestamp(now_s, UTC)
    fc = SeasonalForecaster(step_s=STEP, horizon_slots=96, training_days=14)
    calibration = calibrate_series(vintages, actuals, now=now, forecaster=fc)
    forecast = series(np.full(48, 180.0), now_s, issued_s=now_s)
    history = actuals.between(datetime.fromtimestamp(T0, UTC), now)
    kw = {"now": now, "until": now + timedelta(hours=20)}
    plain = prepare([ZoneSignals("A", carbon=forecast, carbon_history=history)], **kw)
    calibrated = prepare(
        [ZoneSignals("A", carbon=forecast, carbon_history=history, carbon_calibration=calibration)], **kw
    )
    assert plain.carbon is not None and calibrated.carbon is not None and calibrated.carbon_spread is not None
    np.testing.assert_array_equal(plain.carbon[0], 180.0)
    # Raised by the learnt bias (and pulled towards the own forecast by the blend), never left as published.
    assert np.all(calibrated.carbon[0] != 180.0)
    lead = np.arange(calibrated.slots) * calibrated.step_s + calibrated.step_s // 2
    np.testing.assert_allclose(calibrated.carbon_spread[0], calibration.error_at(lead))
    assert "ukci forecast corrected +" in calibrated.sources["A"] and "gCO2eq/kWh at 12 h" in calibrated.sources["A"]
    assert "ran low" in calibrated.sources["A"]


# -- the backtest's replay: the calibrated outlook and spread at t do not depend on anything after t ---------
def replay_world(actual: np.ndarray, vintage_values: list[np.ndarray], *, calibrate: bool = True) -> Replay:
    hours = T0 + H * np.arange(actual.size)
    vintages = [
        (int(T0 + 6 * H * k), PointSeries.from_starts(T0 + 6 * H * k + H * np.arange(values.size), values))
        for k, values in enumerate(vintage_values)
    ]
    return Replay(
        carbon={"A": PointSeries.from_starts(hours, actual)},
        carbon_vintages={"A": vintages},
        config=ReplayConfig(step_s=900, forecaster_step_s=3600, horizon_s=40 * H, calibrate=calibrate),
    )


def hourly_world(days: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    actual = 300 + 100 * np.cos(2 * np.pi * (hours % 24 - 15) / 24) + rng.normal(0, 20, hours.size)
    vintages = []
    for k in range(4 * (days - 2)):
        first = 6 * k
        vintages.append(actual[first : first + 48] - 0.8 * np.arange(48) + rng.normal(0, 10, 48))
    return actual, vintages


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hour=st.integers(8 * 24, 11 * 24), seed=st.integers(0, 50))
def test_replay_outlook_and_spread_ignore_the_future(hour, seed):
    actual, vintages = hourly_world(14, seed)
    t = T0 + hour * H + 1200  # inside an hour: the hour in progress is not known either
    rng = np.random.default_rng(seed + 1)
    future_actual = np.where(np.arange(actual.size) >= hour, rng.uniform(50, 600, actual.size), actual)
    future_vintages = [v if T0 + 6 * H * k <= t else rng.uniform(50, 600, v.size) for k, v in enumerate(vintages)]
    first, second = replay_world(actual, vintages), replay_world(future_actual, future_vintages)
    np.testing.assert_array_equal(first.outlook("A", t, 120), second.outlook("A", t, 120))
    np.testing.assert_array_equal(first.spread("A", t, 120), second.spread("A", t, 120))
    # ... and calibration is really in use: the outlook differs from the vintage as published.
    plain = replay_world(actual, vintages, calibrate=False)
    assert not np.allclose(first.outlook("A", t, 120), plain.outlook("A", t, 120))


def test_an_actual_is_known_once_its_whole_source_interval_has_ended():
    hourly_starts = np.array([0, 3600, 10_800], np.int64)  # a gap from 2 h to 3 h
    hourly_ends = hourly_starts + 3600
    slot_ends = 900 * np.arange(1, 17, dtype=np.int64)
    known = known_times(hourly_starts, hourly_ends, slot_ends)
    np.testing.assert_array_equal(known[:4], 3600)
    np.testing.assert_array_equal(known[4:8], 7200)
    np.testing.assert_array_equal(known[8:12], slot_ends[8:12])  # the gap: nothing later to wait for
    np.testing.assert_array_equal(known[12:], 14_400)
