"""``free_port``: a port no outgoing connection can take and no other process is handed before its bind.

The harness picks an Airflow component's port before ``db migrate`` and the component binds it many seconds
later; with three test workers starting stacks at once, a port from the kernel's ephemeral range was once
taken meanwhile (``address already in use`` on the Celery deployment's api-server).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from airflow_provider_gridaware.demo import processes
from airflow_provider_gridaware.demo.processes import LOWEST_PORT, ephemeral_ports, free_port


@pytest.fixture(autouse=True)
def _own_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    claims = tmp_path / "claims"
    monkeypatch.setattr(processes, "PORT_CLAIMS", claims)
    return claims


def test_ports_come_from_below_the_ephemeral_range_and_are_bindable() -> None:
    low, _ = ephemeral_ports()
    ports = [free_port() for _ in range(50)]
    assert all(LOWEST_PORT <= port < low for port in ports), ports
    assert len(set(ports)) == 50
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_handed_out_is_not_handed_out_again_while_its_claim_is_fresh(_own_claims: Path) -> None:
    # Claim every port but one: the one left is the only answer, however often it is asked for.
    low, _ = ephemeral_ports()
    _own_claims.mkdir()
    free = _first_free(low)
    for port in range(LOWEST_PORT, low):
        if port != free:
            (_own_claims / str(port)).touch()
    assert free_port() == free
    # Now every port is claimed: the OS picks one (from the ephemeral range), rather than failing.
    assert free_port() >= low


def test_a_stale_claim_is_taken_over(_own_claims: Path) -> None:
    low, _ = ephemeral_ports()
    _own_claims.mkdir()
    stale = time.time() - processes.PORT_CLAIM_TTL - 60
    free = _first_free(low)
    for port in range(LOWEST_PORT, low):
        (_own_claims / str(port)).touch()
    os.utime(_own_claims / str(free), (stale, stale))
    assert free_port() == free
    assert time.time() - (_own_claims / str(free)).stat().st_mtime < 60


def test_a_port_someone_listens_on_is_skipped(_own_claims: Path) -> None:
    low, _ = ephemeral_ports()
    _own_claims.mkdir()
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", _first_free(low)))
        listening.listen()
        taken = listening.getsockname()[1]
        free = _first_free(low, after=taken)
        for port in range(LOWEST_PORT, low):
            if port not in (taken, free):
                (_own_claims / str(port)).touch()
        assert free_port() == free


def test_without_a_folder_of_its_own_for_claims_the_os_picks(
    _own_claims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file where the folder should be (or a read-only temp): no claims possible, still a bindable port.
    _own_claims.write_text("not a folder")
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    # Another user's folder: not trusted with our claims either.
    other = _own_claims.parent / "other"
    other.mkdir()
    monkeypatch.setattr(processes, "PORT_CLAIMS", other)
    monkeypatch.setattr(os, "getuid", lambda: other.stat().st_uid + 1)
    assert free_port() >= ephemeral_ports()[0]
    assert not any(other.iterdir())


def _claim_ports(claims: str, count: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    processes.PORT_CLAIMS = Path(claims)
    queue.put([free_port() for _ in range(count)])


def test_processes_asking_at_once_get_distinct_ports(_own_claims: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_claim_ports, args=(str(_own_claims), 100, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    handed = [port for _ in workers for port in queue.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
    assert len(handed) == 400 and len(set(handed)) == 400


def _first_free(below: int, after: int = LOWEST_PORT + 500) -> int:
    """The first port above ``after`` nobody listens on (the check ``free_port`` itself makes)."""
    return next(p for p in range(after + 1, below) if processes._bindable("127.0.0.1", p))
