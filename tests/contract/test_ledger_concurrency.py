"""The ledger under concurrent writers, on SQLite and on the loopback PostgreSQL: 10 processes x 1,000 writes
(first tries, retries, re-reports of their own and of another process's tries) lose nothing and count nothing
twice; a writer SIGKILLed in a stream of writes leaves every row one whole version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import throwaway_database, unreachable_reason
from tests.unit.test_ledger_store import kill_a_writer_and_check, write_concurrently_and_check


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    reason = unreachable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_database("gridaware_ledger_test") as database:
        yield database


def test_ten_processes_write_a_thousand_records_each_at_once(url: str) -> None:
    write_concurrently_and_check(url)


def test_a_writer_killed_between_two_writes_leaves_a_consistent_ledger(url: str) -> None:
    kill_a_writer_and_check(url)
