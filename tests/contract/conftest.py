"""Fixtures shared by contract tests: a store of the test's own, a moto_server with AWS Batch in two regions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_gridaware.hooks.store import close_shared_archives
from airflow_provider_gridaware.store.meta import close_meta_engines
from airflow_provider_gridaware.triggers import batch as batch_trigger
from airflow_provider_gridaware.triggers import resume_guard
from tests.support.moto_server import MotoServer, aws_connection

#: The resume guard's hold in contract tests (wall seconds): still held, but not for the 30 s that matter only
#: against a real scheduler's stale events (that race is the integration layer's test_resume_race).
GUARD_SECONDS = 0.5

#: zone -> (region, job queue): two regions, each with a compute environment, a queue and the job definition.
REGIONS = {"GB": ("eu-west-2", "gridaware-gb"), "SE": ("eu-north-1", "gridaware-se")}
CONN = "aws_moto"


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A store of this test's own (the session-wide tmp store is shared by every other test), closed after."""
    url = f"sqlite:///{tmp_path / 'gridaware.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    monkeypatch.delenv("GRIDAWARE_ARCHIVE", raising=False)
    yield url
    close_shared_archives()
    close_meta_engines()


@pytest.fixture(autouse=True)
def _short_resume_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dispatch triggers hold until the guard's not_before before firing: 30 s per test otherwise, against a
    # trigger-run timeout of 30 s (six contract tests spent ~180 s here, each within a second of timing out).
    monkeypatch.setattr(resume_guard, "RESUME_GUARD_SECONDS", GUARD_SECONDS)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A fresh moto with Batch in both ``REGIONS``, the ``aws_moto`` connection, and no waits in triggers."""
    moto.reset()
    for region, queue in REGIONS.values():
        moto.setup_batch(region, queue=queue)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", aws_connection(moto.url, "eu-west-2"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(batch_trigger, "_sleep", _no_wait)
    return moto


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)
