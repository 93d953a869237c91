"""An unreachable host: every hook's error names the connection and the host, with secrets redacted.

Airflow's UI "Test" button runs a hook on a throwaway copy of the connection under a random id; that
report names the host instead of the meaningless id.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.hooks.electricity_maps import ElectricityMapsHook
from airflow_provider_gridaware.hooks.entsoe import EntsoePriceHook
from airflow_provider_gridaware.hooks.rest import GridRestHook
from airflow_provider_gridaware.hooks.ukci import UKCarbonIntensityHook
from airflow_provider_gridaware.hooks.watttime import WattTimeHook
from airflow_provider_gridaware.signals.errors import SourceUnavailableError

SECRET = "s3cret-never-shown"
REST_EXTRA = {"forecast_path": "forecast/{zone}", "unit": "gCO2eq/kWh", "auth_type": "api_key", "test_zone": "GB"}
#: hook, zone, connection fields beyond host.
HOOKS: list[tuple[type[GridSignalHook], str, dict[str, Any]]] = [
    (UKCarbonIntensityHook, "GB", {}),
    (WattTimeHook, "CAISO_NORTH", {"login": "user", "password": SECRET}),
    (ElectricityMapsHook, "DE", {"password": SECRET}),
    (EntsoePriceHook, "DE-LU", {"password": SECRET}),
    (GridRestHook, "GB", {"password": SECRET, "extra": REST_EXTRA}),
]


@pytest.fixture
def dead_host() -> Iterator[str]:
    """``127.0.0.1:<port>`` where nothing listens: the port is held bound (so no one takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _fields(hook_fields: dict[str, Any], dead_host: str) -> dict[str, Any]:
    extra = {"max_attempts": 1, **hook_fields.get("extra", {})}
    return {**hook_fields, "host": f"http://{dead_host}", "extra": extra}


@pytest.mark.parametrize("side", ["sync", "async"])
@pytest.mark.parametrize(("hook_class", "zone", "fields"), HOOKS, ids=lambda v: getattr(v, "__name__", None))
def test_error_names_connection_and_host(make_connection, dead_host, hook_class, zone, fields, side):
    conn_id = make_connection(f"dead_{hook_class.source_name}", hook_class.conn_type, **_fields(fields, dead_host))
    hook = hook_class(conn_id)
    call: Callable[[], object] = (
        (lambda: hook.get_forecast(zone)) if side == "sync" else (lambda: asyncio.run(hook.aget_forecast(zone)))
    )
    with pytest.raises(SourceUnavailableError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"[{conn_id}] "), message
    assert f"http://{dead_host}/" in message and "could not connect" in message, message
    assert SECRET not in message


@pytest.mark.parametrize(("hook_class", "zone", "fields"), HOOKS, ids=lambda v: getattr(v, "__name__", None))
def test_airflow_test_button_names_the_host_not_its_throwaway_id(monkeypatch, dead_host, hook_class, zone, fields):
    # What POST /api/v2/connections/test does: a copy of the form under a random id, exported to the
    # environment, then Connection.test_connection() -> hook.test_connection().
    from airflow.models.connection import Connection
    from airflow.utils.strings import get_random_string

    transient_id = get_random_string()
    values = _fields(fields, dead_host)
    conn = Connection(
        conn_id=transient_id,
        conn_type=hook_class.conn_type,
        host=values["host"],
        login=values.get("login"),
        password=values.get("password"),
        extra=json.dumps(values["extra"]),
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_{transient_id.upper()}", conn.get_uri())
    ok, message = conn.test_connection()
    assert not ok
    assert transient_id not in message, message
    assert f"http://{dead_host}" in message and "could not connect" in message, message
    assert SECRET not in message
