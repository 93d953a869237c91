"""Hooks archive every series they return, sync and async, and a broken store never breaks a hook."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks import store as store_hooks
from airflow_provider_gridaware.hooks.replay import GridReplayHook
from airflow_provider_gridaware.hooks.store import (
    GridStoreHook,
    close_shared_archives,
    connection_store_url,
    wait_for_pending_records,
)
from airflow_provider_gridaware.hooks.ukci import UKCarbonIntensityHook
from airflow_provider_gridaware.signals import SeriesType, SignalKind
from airflow_provider_gridaware.simulator import SimulatorHandle, start_simulator
from airflow_provider_gridaware.store import ForecastArchive

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 9, 47, tzinfo=UTC)
CI = SignalKind.CARBON_INTENSITY


@pytest.fixture
def replay_hook(make_connection) -> GridReplayHook:
    return GridReplayHook(make_connection("replay_gb", "gridaware_replay"), clock=lambda: NOW)


def test_sync_forecast_and_actuals_are_archived(replay_hook, store_url):
    forecast = replay_hook.get_forecast("GB")
    actuals = replay_hook.get_actuals("GB", NOW - timedelta(hours=6), NOW)
    replay_hook.get_forecast("GB")  # the same vintage again: stored once
    with ForecastArchive(store_url, retention=None) as archive:
        [vintage] = archive.vintages("replay", "GB", CI)
        assert vintage.series == forecast and vintage.issue_time_stated
        back = archive.actuals("replay", "GB", CI, NOW - timedelta(hours=6), NOW)
    assert back is not None and back.points == actuals.points


@pytest.mark.asyncio
async def test_async_forecast_is_archived_in_the_background(replay_hook, store_url):
    forecast = await replay_hook.aget_forecast("GB")
    await wait_for_pending_records()
    with ForecastArchive(store_url, retention=None) as archive:
        [vintage] = archive.vintages("replay", "GB", CI)
    assert vintage.series == forecast


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with start_simulator() as handle:
        yield handle


def test_ukci_forecast_from_the_simulator_is_archived_with_its_fetch_time_flag(sim, make_connection, store_url):
    hook = UKCarbonIntensityHook(make_connection("ukci_sim", "gridaware_ukci", host=f"{sim.url}/ukci"))
    series = hook.get_forecast("GB")
    with ForecastArchive(store_url, retention=None) as archive:
        [vintage] = archive.vintages("ukci", "GB", CI)
    assert vintage.series == series and len(vintage.points) == 96
    assert not vintage.issue_time_stated  # the API states no issue time


def test_a_broken_store_is_logged_once_and_the_hook_still_answers(replay_hook, tmp_path, monkeypatch, caplog, mocker):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite:///{blocker}/gridaware.db"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    caplog.set_level(logging.DEBUG, logger="airflow_provider_gridaware.hooks.store")
    opened = mocker.spy(store_hooks, "shared_archive")
    try:
        first = replay_hook.get_forecast("GB")
        second = replay_hook.get_forecast("GB")  # within a minute of the failure: the store is left alone
        store_hooks._failed_until[url] = 0.0  # the minute has passed: tried again, same reason
        third = replay_hook.get_forecast("GB")
    finally:
        close_shared_archives()
    assert first == second == third and first.series_type is SeriesType.FORECAST and len(first) > 0
    assert opened.call_count == 2
    records = [r for r in caplog.records if r.name == "airflow_provider_gridaware.hooks.store"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert (
        records[0]
        .getMessage()
        .startswith(
            "Could not archive the GB carbon_intensity forecast from replay in the gridaware store"
            " (OperationalError: unable to open database file)"
        )
    )
    assert "failed less than 60 s ago" in records[1].getMessage()


@pytest.mark.asyncio
async def test_a_broken_store_does_not_break_the_async_path(replay_hook, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GRIDAWARE_STORE_URL", "mysql://nowhere/db")
    caplog.set_level(logging.WARNING, logger="airflow_provider_gridaware.hooks.store")
    series = await replay_hook.aget_forecast("GB")
    await wait_for_pending_records()
    assert len(series) > 0
    assert any("'mysql' is not supported" in r.getMessage() for r in caplog.records)


def test_archiving_can_be_switched_off(replay_hook, store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDAWARE_ARCHIVE", "0")
    replay_hook.get_forecast("GB")
    assert not (tmp_path / "gridaware.db").exists()
    monkeypatch.delenv("GRIDAWARE_ARCHIVE")
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__ARCHIVE", "False")
    replay_hook.get_forecast("GB")
    assert not (tmp_path / "gridaware.db").exists()
    monkeypatch.setenv("GRIDAWARE_ARCHIVE", "1")  # the environment switch beats the config flag
    replay_hook.get_forecast("GB")
    assert (tmp_path / "gridaware.db").exists()


def test_store_connection_becomes_a_sqlalchemy_url(make_connection, monkeypatch, tmp_path):
    monkeypatch.delenv("GRIDAWARE_STORE_URL")
    pg = make_connection(
        "store_pg",
        "postgres",
        host="127.0.0.1",
        port=5432,
        login="postgres",
        schema="grid",
        extra={"sslmode": "disable"},
    )
    # Only libpq options of the extras reach the URL (the fixture adds Airflow-only ones like timeout).
    assert GridStoreHook(pg).get_url() == "postgresql+psycopg2://postgres@127.0.0.1:5432/grid?sslmode=disable"
    lite = make_connection("store_lite", "sqlite", host=str(tmp_path / "s.db"))
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__STORE_CONN_ID", lite)
    try:
        assert GridStoreHook().get_url() == f"sqlite:///{tmp_path / 's.db'}"
        # GRIDAWARE_STORE_URL beats the configured connection; an explicit connection id beats both.
        monkeypatch.setenv("GRIDAWARE_STORE_URL", "sqlite:///elsewhere.db")
        assert GridStoreHook().get_url() == "sqlite:///elsewhere.db"
        assert GridStoreHook(pg).get_url().startswith("postgresql+psycopg2://")
    finally:
        close_shared_archives()


def test_connections_the_store_cannot_use_are_refused():
    from airflow.sdk import Connection

    with pytest.raises(ValueError, match="needs the database file path"):
        connection_store_url(Connection(conn_id="empty_lite", conn_type="sqlite"))
    with pytest.raises(ValueError, match="'mysql'; the store needs postgres or sqlite"):
        connection_store_url(Connection(conn_id="my", conn_type="mysql", host="h"))


def test_rest_vintages_say_whether_the_connection_maps_an_issue_time(
    scripted_server, make_connection, store_url, mocker
):
    from airflow_provider_gridaware.hooks.rest import GridRestHook
    from tests.conftest import api_shape
    from tests.contract.test_rest_hook import END, FORECAST, START, UKCI_EXTRAS

    recorded = mocker.spy(store_hooks, "_record_into")
    scripted_server.add(FORECAST, api_shape("ukci_intensity_fw48h_response.json"))
    plain = make_connection("rest_plain", "gridaware_rest", host=f"{scripted_server.url}/api", extra=UKCI_EXTRAS)
    GridRestHook(plain).get_forecast("GB", start=START, end=END)
    scripted_server.add(
        "/api/carbon-intensity/forecast", api_shape("electricitymaps_v3_carbon-intensity_forecast_response.json")
    )
    stated_extra = {
        "forecast_path": "carbon-intensity/forecast?zone={zone}",
        "records_path": "forecast",
        "time_field": "datetime",
        "value_field": "carbonIntensity",
        "unit": "gCO2eq/kWh",
        "issued_at_field": "updatedAt",
    }
    stated = make_connection("rest_stated", "gridaware_rest", host=f"{scripted_server.url}/api", extra=stated_extra)
    GridRestHook(stated).get_forecast("ES")
    # (url, series, issue_time_stated): the fixture's 2022 vintage may be pruned by the default retention at
    # once, so the flag is checked where the hook hands it to the archive.
    assert [(c.args[1].source, c.args[2]) for c in recorded.call_args_list] == [
        ("rest_plain", False),
        ("rest_stated", True),
    ]
