"""The live path learns a source's track record from what the hooks archived, as the backtest does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.forecast_calibration import calibration_for
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series
from airflow_provider_gridaware.store.archive import ForecastArchive

UTC = timezone.utc
NOW = datetime(2024, 6, 15, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def level(t: datetime) -> float:
    return 200.0 + 10.0 * ((t.hour % 12) - 6)


def series(series_type: SeriesType, start: datetime, count: int, *, issued_at: datetime | None, low_by: float = 0.0):
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="ukci",
        series_type=series_type,
        issued_at=issued_at,
        unit="gCO2eq/kWh",
        points=[
            (start + i * HALF_HOUR, start + (i + 1) * HALF_HOUR, level(start + i * HALF_HOUR) - low_by)
            for i in range(count)
        ],
    )


@pytest.fixture
def store_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    archive = ForecastArchive(url, clock=lambda: NOW)  # recorded "now": the default retention keeps it
    start = NOW - timedelta(days=16)
    archive.record(series(SeriesType.ACTUAL, start, 16 * 48, issued_at=None))
    for day in range(14):  # a provider that runs 20 g low, one vintage a day
        issued = NOW - timedelta(days=14 - day)
        archive.record(series(SeriesType.FORECAST, issued, 48, issued_at=issued, low_by=20.0))
    archive.close()
    return url


def test_a_source_that_ran_low_is_corrected_up_from_the_archive(store_url):
    forecast = series(SeriesType.FORECAST, NOW, 96, issued_at=NOW, low_by=20.0)
    calibration = calibration_for(forecast, now=NOW, store_url=store_url)
    assert calibration is not None and calibration.has_history
    assert float(calibration.bias_at(6 * 3600)) == pytest.approx(-20.0 * 14 / 17, abs=2.0)  # shrunk n/(n+3)
    assert "ran low" in calibration.reason()


def test_no_archived_vintages_means_the_forecast_as_published(store_url):
    early = NOW - timedelta(days=30)
    forecast = series(SeriesType.FORECAST, early, 96, issued_at=early)
    assert calibration_for(forecast, now=early, store_url=store_url) is None


def test_a_broken_store_never_breaks_planning(tmp_path, caplog):
    forecast = series(SeriesType.FORECAST, NOW, 96, issued_at=NOW)
    (tmp_path / "dir").mkdir()
    assert calibration_for(forecast, now=NOW, store_url=f"sqlite:///{tmp_path / 'dir'}") is None
    assert "no calibration for ukci/GB" in caplog.text
