"""SQLite store files run in WAL with full sync (readers do not block the relay's commits; commits are durable)."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_gridaware.store.engine import create_store_engine


def _pragmas(url: str) -> tuple[str, int]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            sync = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    finally:
        engine.dispose()
    return str(mode), int(sync)


def test_a_store_file_is_in_wal_with_full_sync(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert _pragmas(url) == ("wal", 2)


def test_an_in_memory_store_keeps_its_own_journal():
    assert _pragmas("sqlite://")[0] == "memory"
