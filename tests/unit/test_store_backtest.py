"""``backtest --forecasts`` vintages go through the forecast archive, with the same decisions as read directly."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_gridaware.planning.backtest import (
    BacktestInputError,
    archive_forecasts,
    archived_vintages,
    load_vintages,
    read_forecasts,
    read_jobs,
    run_backtest,
    write_decisions,
    write_jobs,
)
from airflow_provider_gridaware.planning.datasets import generate_jobs, write_actual
from airflow_provider_gridaware.planning.policies import PolicySettings
from airflow_provider_gridaware.planning.replay import PointSeries, Replay, ReplayConfig
from airflow_provider_gridaware.store import ForecastArchive
from tests.unit.test_backtest import DAY, T0, daily, run_cli

UTC = timezone.utc
ZONES = ("DE", "FR")


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Actuals for two zones, vintages every 6 h (36 h ahead, noisy, with holes) and jobs."""
    actuals = {"DE": daily(20), "FR": daily(20, -80, seed=3)}
    actual_path = tmp_path / "actual.csv"
    with actual_path.open("w") as out:
        write_actual(
            ((int(t), zone, float(v)) for zone, s in actuals.items() for t, v in zip(s.starts, s.values, strict=True)),
            out,
        )
    rng = np.random.default_rng(7)
    lines = ["issued_at,time,zone,value"]
    for zone, series in actuals.items():
        for issued in range(T0 + 7 * DAY, T0 + 18 * DAY, 6 * 3600):
            index = int(np.searchsorted(series.starts, issued))
            for offset in range(36):
                truth = series.values[index + offset]
                value = "nan" if rng.random() < 0.05 else repr(float(truth * (1 + rng.normal(0, 0.15))))
                lines.append(f"{iso(issued)},{iso(int(series.starts[index + offset]))},{zone},{value}")
    forecasts_path = tmp_path / "forecasts.csv"
    forecasts_path.write_text("\n".join(lines) + "\n")
    jobs_path = tmp_path / "jobs.csv"
    with jobs_path.open("w") as out:
        jobs = generate_jobs(start_s=T0 + 8 * DAY, end_s=T0 + 16 * DAY, count=20, zones=list(ZONES), seed=2)
        write_jobs(jobs, out)
    return actual_path, forecasts_path, jobs_path


def decisions(actual_path: Path, jobs_path: Path, vintages: dict[str, list[tuple[int, PointSeries]]]) -> str:
    from airflow_provider_gridaware.planning.backtest import read_actuals

    config = ReplayConfig(step_s=900, forecaster_step_s=3600, horizon_s=40 * 3600)
    replay = Replay(carbon=read_actuals([actual_path]), carbon_vintages=vintages, config=config)
    result = run_backtest(replay, read_jobs(jobs_path), ["gridaware"], settings=PolicySettings())
    out = io.StringIO()
    write_decisions(result.executions["gridaware"], out)
    return out.getvalue()


def test_vintages_read_back_from_the_archive_are_the_file_vintages(inputs):
    _actual, forecasts, _jobs = inputs
    direct = read_forecasts(forecasts)
    archived = load_vintages(ZONES, forecasts=forecasts)
    assert sorted(archived) == sorted(direct)
    for zone in ZONES:
        assert [issued for issued, _ in archived[zone]] == [issued for issued, _ in direct[zone]]
        for (_, back), (_, read) in zip(archived[zone], direct[zone], strict=True):
            finite = np.isfinite(read.values)
            # Holes are left out of the archive; every value and interval around them is kept exactly.
            assert np.array_equal(back.starts, read.starts[finite]) and np.array_equal(back.ends, read.ends[finite])
            assert np.array_equal(back.values, read.values[finite])


def test_decisions_are_the_same_with_and_without_the_archive(inputs):
    actual, forecasts, jobs = inputs
    direct = decisions(actual, jobs, read_forecasts(forecasts))
    through_archive = decisions(actual, jobs, load_vintages(ZONES, forecasts=forecasts))
    assert through_archive == direct
    # The vintages matter here: without them the policy decides otherwise, so equality above is not vacuous.
    assert decisions(actual, jobs, {}) != direct


def test_cli_replays_vintages_a_store_already_holds(inputs, tmp_path):
    actual, forecasts, jobs = inputs
    store = f"sqlite:///{tmp_path / 'gridaware.db'}"
    common = ("--actual", str(actual), "--jobs", str(jobs), "--forecaster", "none")
    assert run_cli(*common, "--forecasts", str(forecasts), "--out", str(tmp_path / "file.csv")) == 0
    # Record the file into a persistent store, then replay from the store alone.
    assert run_cli(*common, "--forecasts", str(forecasts), "--store", store, "--out", str(tmp_path / "a.csv")) == 0
    assert run_cli(*common, "--store", store, "--out", str(tmp_path / "store.csv")) == 0
    assert (tmp_path / "store.csv").read_text() == (tmp_path / "file.csv").read_text()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "file.csv").read_text()
    assert run_cli(*common, "--out", str(tmp_path / "none.csv")) == 0
    assert (tmp_path / "none.csv").read_text() != (tmp_path / "file.csv").read_text()


def test_several_sources_in_a_store_need_a_choice(inputs, tmp_path):
    _actual, forecasts, _jobs = inputs
    with ForecastArchive(f"sqlite:///{tmp_path / 's.db'}", retention=None) as archive:
        assert archive_forecasts(forecasts, archive) == 2 * 44
        archive_forecasts(forecasts, archive, source="ukci")
        with pytest.raises(BacktestInputError, match=r"several carbon_intensity forecasts for DE: forecasts-file"):
            archived_vintages(archive, ["DE"])
        assert len(archived_vintages(archive, ["DE"], source="ukci")["DE"]) == 44
        assert archived_vintages(archive, ["XX"]) == {}


def test_bad_vintages_and_stores_are_named(tmp_path):
    path = tmp_path / "forecasts.csv"
    path.write_text("issued_at,time,zone,value\n2024-01-01T00:00Z,2024-01-01T01:00Z,DE,-5\n")
    with pytest.raises(BacktestInputError, match=r"forecasts.csv: vintage of DE issued 2024-01-01T00:00:00Z.*negative"):
        load_vintages(["DE"], forecasts=path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BacktestInputError, match=r"forecast store sqlite:///.*a-file/s\.db: unable to open"):
        load_vintages(["DE"], store_url=f"sqlite:///{blocker}/s.db")
