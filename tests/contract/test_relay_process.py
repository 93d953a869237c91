"""``gridaware relay`` as the shipped command in its own process, with no Airflow running: SIGKILLed under load
and restarted, it has lost no acknowledged event and still refuses replays of what it acknowledged before."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from airflow_provider_gridaware.store.events import EventStore
from tests.contract.test_relay import SECRET, event_json, signed
from tests.support.http import LOOPBACK

GRIDAWARE = Path(sys.executable).parent / "gridaware"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class LogLines(list[str]):
    """The relay's log lines as its reader thread collects them; a test awaits a line (it is read after the
    response it belongs to may already have arrived)."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def add(self, line: str) -> None:
        with self.changed:
            self.append(line)
            self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(text in line for line in self), timeout)


@contextmanager
def relay_process(args: list[str], env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str], LogLines]]:
    """Run ``gridaware relay --port 0 ...``; yields its URL, process and log lines; stops it (by PID) on exit."""
    process = subprocess.Popen(
        [str(GRIDAWARE), "relay", "--port", "0", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    port: list[str] = []
    lines = LogLines()
    found = threading.Event()

    def read() -> None:  # uvicorn logs the port it bound; keep draining so the pipe never fills
        assert process.stderr is not None
        for line in process.stderr:
            lines.add(line)
            match = _LISTENING.search(line)
            if match and not port:
                port.append(match.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(60):
            raise RuntimeError(f"gridaware relay did not start: {''.join(lines)[-2000:]}")
        yield f"http://127.0.0.1:{port[0]}", process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # Nothing of Airflow runs: the connection is an environment variable, the store a SQLite file.
    return {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "GRIDAWARE_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "AIRFLOW_CONN_UTILITY": json.dumps({"conn_type": "gridaware_webhook", "password": SECRET}),
        "RELAY_SECRET": SECRET,
    }


def send(url: str, index: int, conn_id: str = "utility") -> tuple[str, int]:
    body = json.dumps(event_json(f"load-{index}")).encode()
    try:
        response = LOOPBACK.post(f"{url}/events/{conn_id}", content=body, headers=signed(body), timeout=10)
    except httpx.HTTPError:
        return f"load-{index}", 0
    return f"load-{index}", response.status_code


def test_a_sigkill_under_load_loses_no_acknowledged_event_and_replays_stay_refused(env, tmp_path):
    body = json.dumps(event_json("before-crash")).encode()
    headers = signed(body)
    with relay_process([], env) as (url, process, _lines):
        assert LOOPBACK.post(f"{url}/events/utility", content=body, headers=headers, timeout=10).status_code == 200
        stop = threading.Event()
        results: list[tuple[str, int]] = []

        def load() -> None:
            with ThreadPoolExecutor(max_workers=8) as pool:
                index = 0
                while not stop.is_set():
                    results.extend(pool.map(lambda i: send(url, i), range(index, index + 8)))
                    index += 8

        loader = threading.Thread(target=load)
        loader.start()
        deadline = time.monotonic() + 30
        while sum(status == 200 for _, status in results) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # mid-load: requests in flight get no answer
        process.wait()
        stop.set()
        loader.join()
    acknowledged = {event_id for event_id, status in results if status == 200}
    assert len(acknowledged) >= 100
    assert {status for _, status in results} <= {200, 0}  # 0: no answer (the kill), never an error answer

    with relay_process([], env) as (url, _process, _lines):
        replay = LOOPBACK.post(f"{url}/events/utility", content=body, headers=headers, timeout=10)
        assert replay.status_code == 409, replay.text
        assert "already in the store" in replay.json()["error"]
        assert send(url, 10**6)[1] == 200  # and the restarted relay accepts new deliveries
    with EventStore(env["GRIDAWARE_STORE_URL"]) as store:
        stored = {s.event.event_id for s in store.since(0, limit=100_000)}
    assert acknowledged - stored == set()
    assert {"before-crash", f"load-{10**6}"} <= stored


def test_standalone_mode_needs_no_airflow_connection(env):
    # No connection "aggregator" exists anywhere; the secret comes from an environment variable.
    args = ["--conn-id", "aggregator", "--secret-env", "RELAY_SECRET", "--max-body-bytes", "4096"]
    with relay_process(args, env) as (url, _process, _lines):
        assert send(url, 1, conn_id="aggregator")[1] == 200
        assert send(url, 2, conn_id="utility")[1] == 404  # not served: only --conn-id ones are
        big = json.dumps(event_json(program="x" * 5000)).encode()
        response = LOOPBACK.post(f"{url}/events/aggregator", content=big, headers=signed(big), timeout=10)
        assert response.status_code == 413, response.text
        forged = LOOPBACK.post(
            f"{url}/events/aggregator", content=b"{}", headers=signed(b"{}", secret="x" * 20), timeout=10
        )
        assert forged.status_code == 401
    with EventStore(env["GRIDAWARE_STORE_URL"]) as store:
        assert [s.event.source for s in store.since(0)] == ["webhook:aggregator"]


def test_the_command_refuses_a_standalone_setup_it_cannot_serve(env):
    for args, message in [
        (["--secret-env", "RELAY_SECRET"], "needs at least one --conn-id"),
        (["--conn-id", "a", "--secret-env", "NO_SUCH_VARIABLE"], "NO_SUCH_VARIABLE is not set"),
        (["--conn-id", "a", "--tolerance-s", "60"], "need --secret-env or --token-env"),
    ]:
        done = subprocess.run(
            [str(GRIDAWARE), "relay", "--port", "0", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr)


def test_bearer_standalone_with_required_delivery_ids(env):
    env = {**env, "RELAY_TOKEN": "internal-system-token"}
    args = ["--conn-id", "internal", "--token-env", "RELAY_TOKEN", "--require-delivery-id"]
    body = json.dumps(event_json("bearer-1")).encode()
    with relay_process(args, env) as (url, _process, _lines):
        auth = {"Authorization": "Bearer internal-system-token"}
        no_id = LOOPBACK.post(f"{url}/events/internal", content=body, headers=auth, timeout=10)
        assert no_id.status_code == 400 and "missing x-gridaware-delivery" in no_id.json()["error"]
        headers = {**auth, "X-Gridaware-Delivery": uuid.uuid4().hex}
        assert LOOPBACK.post(f"{url}/events/internal", content=body, headers=headers, timeout=10).status_code == 200
        assert LOOPBACK.post(f"{url}/events/internal", content=body, headers=headers, timeout=10).status_code == 409


def test_connections_from_the_metadata_database_also_while_it_is_away(env, tmp_path):
    airflow = str(Path(sys.executable).parent / "airflow")
    home = tmp_path / "airflow"
    metadata = home / "airflow.db"
    env = {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{metadata}"}
    env.pop("AIRFLOW_CONN_UTILITY")
    for command in (
        ["db", "migrate"],
        ["connections", "add", "from_db", "--conn-type", "gridaware_webhook", "--conn-password", SECRET],
    ):
        done = subprocess.run([airflow, *command], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    with relay_process([], env) as (url, _process, _lines):  # without the flag: env and secrets backends only
        assert send(url, 1, conn_id="from_db")[1] == 404
    args = ["--connections-from-metadata-db", "--settings-ttl-s", "0"]
    with relay_process(args, env) as (url, _process, lines):
        assert send(url, 2, conn_id="from_db")[1] == 200
        metadata.write_bytes(b"")  # the metadata database is gone (emptied); the store is not
        assert send(url, 3, conn_id="from_db")[1] == 200  # last settings read, within the grace
        assert lines.wait_for("using the settings read"), "".join(lines)[-2000:]
    with EventStore(env["GRIDAWARE_STORE_URL"]) as store:
        assert {s.event.event_id for s in store.since(0)} == {"load-2", "load-3"}
