"""SignalSeries validation: what a decision must never be built on is refused, with where and why."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_gridaware.signals import (
    CarbonMetric,
    InvalidSignalError,
    SeriesType,
    SignalKind,
    SignalSeries,
    UnknownUnitError,
    build_series,
)

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=30)


def carbon(points, **kw):
    args = dict(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="DE",
        source="test",
        series_type=SeriesType.ACTUAL,
        unit="gCO2eq/kWh",
        points=points,
    )
    args.update(kw)
    return build_series(**args)


def steps(values, start=T0, step=STEP):
    return [(start + i * step, start + (i + 1) * step, v) for i, v in enumerate(values)]


def test_valid_series_round_trips_through_json():
    series = carbon(steps([100, 120.5, 90]), series_type=SeriesType.FORECAST, issued_at=T0)
    again = SignalSeries.model_validate_json(series.model_dump_json())
    assert again == series
    records = series.to_records()
    assert records[1] == {
        "time": "2024-01-01T00:30:00Z",
        "end": "2024-01-01T01:00:00Z",
        "value": 120.5,
        "unit": "gCO2eq/kWh",
        "kind": "carbon_intensity",
        "metric": "average",
        "series_type": "forecast",
        "issued_at": "2024-01-01T00:00:00Z",
        "zone": "DE",
        "source": "test",
    }
    json.dumps(records)


def test_marginal_lbs_are_converted_to_grams():
    series = carbon(steps([1000]), unit="lbs_co2_per_mwh", metric=CarbonMetric.MARGINAL)
    assert series.unit == "gCO2eq/kWh"
    assert series.values == [pytest.approx(453.59237)]


@pytest.mark.parametrize(
    ("unit", "currency", "factor", "canonical"),
    [
        ("EUR/MWh", None, 1, "EUR/MWh"),
        ("eur/kwh", None, 1000, "EUR/MWh"),
        ("ct/kWh", "EUR", 10, "EUR/MWh"),
        ("USD_per_MWh", None, 1, "USD/MWh"),
        ("p/kWh", "GBP", 10, "GBP/MWh"),
    ],
)
def test_price_units(unit, currency, factor, canonical):
    series = build_series(
        kind=SignalKind.PRICE,
        zone="DE",
        source="t",
        series_type=SeriesType.ACTUAL,
        unit=unit,
        currency=currency,
        points=steps([-5.0, 2.0]),
    )
    assert series.unit == canonical and series.currency == canonical[:3]
    assert series.values == [pytest.approx(-5.0 * factor), pytest.approx(2.0 * factor)]


@pytest.mark.parametrize(
    ("points", "unit", "message"),
    [
        (steps([1, math.nan]), "g/kWh", r"points\[1\] \(2024-01-01T00:30:00Z\): value is nan"),
        (steps([1, math.inf]), "g/kWh", r"points\[1\].*value is inf"),
        (steps([1, -2]), "g/kWh", r"points\[1\].*carbon value -2.0 is negative"),
        (steps([1, 2])[::-1], "g/kWh", r"points\[1\].*out of order or overlapping"),
        ([(T0, T0 + STEP, 1), (T0 + STEP / 2, T0 + 2 * STEP, 2)], "g/kWh", "overlapping"),
        ([(T0, T0, 1)], "g/kWh", "not after start"),
    ],
)
def test_invalid_points_are_named(points, unit, message):
    with pytest.raises(InvalidSignalError, match=message):
        carbon(points, unit=unit)


def test_unknown_and_mismatched_units():
    with pytest.raises(UnknownUnitError, match="unknown carbon-intensity unit 'MW'"):
        carbon(steps([1]), unit="MW")
    with pytest.raises(UnknownUnitError, match="relative index"):
        carbon(steps([1]), unit="percentile")
    with pytest.raises(UnknownUnitError, match="contradicts"):
        build_series(
            kind=SignalKind.PRICE,
            zone="x",
            source="t",
            series_type=SeriesType.ACTUAL,
            unit="USD/MWh",
            currency="EUR",
            points=steps([1]),
        )
    with pytest.raises(UnknownUnitError, match="no currency"):
        build_series(
            kind=SignalKind.PRICE, zone="x", source="t", series_type=SeriesType.ACTUAL, unit="ct/kWh", points=steps([1])
        )


def test_meaning_is_required():
    with pytest.raises(InvalidSignalError, match="'average' or 'marginal'"):
        carbon(steps([1]), metric=None)
    with pytest.raises(InvalidSignalError, match="forecast needs issued_at"):
        carbon(steps([1]), series_type=SeriesType.FORECAST)
    with pytest.raises(InvalidSignalError, match="above 100"):
        build_series(
            kind=SignalKind.CARBON_INDEX,
            metric=CarbonMetric.MARGINAL,
            zone="x",
            source="t",
            series_type=SeriesType.ACTUAL,
            unit="percentile",
            points=steps([101]),
        )


def test_naive_times_are_refused():
    with pytest.raises(InvalidSignalError, match="no timezone"):
        carbon([(datetime(2024, 1, 1), datetime(2024, 1, 1, 1), 5)])


def test_offsets_are_normalised_to_utc():
    cet = timezone(timedelta(hours=1))
    series = carbon([(datetime(2024, 1, 1, 1, tzinfo=cet), datetime(2024, 1, 1, 2, tzinfo=cet), 5)])
    assert series.points[0].start == T0 and series.points[0].start.tzinfo == UTC


def test_reading_helpers():
    series = carbon([*steps([10, 20]), (T0 + 3 * STEP, T0 + 4 * STEP, 40)])
    assert series.value_at(T0 + STEP + timedelta(minutes=1)) == 20
    assert series.value_at(T0 + 2 * STEP) is None  # the gap
    assert series.gaps() == [(T0 + 2 * STEP, T0 + 3 * STEP)]
    assert series.between(T0 + STEP, T0 + 2 * STEP).values == [20]
    assert (series.start, series.end) == (T0, T0 + 4 * STEP)


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6)), max_size=50))
def test_any_values_either_validate_or_fail_with_invalid_signal_error(values):
    try:
        series = carbon(steps(values))
    except InvalidSignalError as exc:
        assert "points[" in str(exc)
        assert any((isinstance(v, float) and not math.isfinite(v)) or v < 0 for v in values)
    else:
        assert all(math.isfinite(v) and v >= 0 for v in series.values)
        assert all(a.end <= b.start for a, b in zip(series.points, series.points[1:], strict=False))
