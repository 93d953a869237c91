"""Engines for the store, with the locking each dialect needs for safe concurrent writers."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

#: execution option asking SQLite for ``BEGIN IMMEDIATE``: take the write lock first, so a read-then-write
#: transaction waits for another writer instead of failing with "database is locked".
WRITE = {"gridaware_write": True}
SQLITE_BUSY_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 5


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets explicit transactions (``BEGIN IMMEDIATE`` for writes).

    :param url: a SQLAlchemy URL.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        if parsed.database in (None, "", ":memory:"):
            # One connection for everyone, or every connection would see its own empty database.
            kwargs["poolclass"] = StaticPool
            kwargs.pop("pool_pre_ping")
        else:
            # A fresh machine may have no AIRFLOW_HOME yet; if the folder cannot be made, SQLite says why.
            with contextlib.suppress(OSError):
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **kwargs)
        _explicit_sqlite_transactions(engine, wal=parsed.database not in (None, "", ":memory:"))
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg2":
        kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        # INSERT .. ON CONFLICT for many rows: psycopg2's execute_batch sends them in one round trip, not one each.
        kwargs["executemany_mode"] = "values_plus_batch"
    return create_engine(parsed, pool_size=2, max_overflow=4, **kwargs)


def dialect_insert(dialect: Connection | str, table: Any) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (SQLite and PostgreSQL spell it the same way).

    :param dialect: a connection, or its dialect's name.
    :param table: the table to insert into.
    """
    name = dialect if isinstance(dialect, str) else dialect.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise ValueError(f"the gridaware store supports SQLite and PostgreSQL, not {name}")


def _explicit_sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    # The documented pysqlite recipe: the driver must not open transactions itself (it would not do so for
    # DDL, and always DEFERRED), so SQLAlchemy emits BEGIN, IMMEDIATE for writes.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if wal:
            _write_ahead_log(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("gridaware_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _write_ahead_log(cursor: Any) -> None:
    # WAL: readers (the event trigger tailing the store) no longer block a writer's commit, and a commit
    # costs one fsync of the log instead of the rollback journal's several; synchronous=FULL keeps every
    # commit durable, so what the relay acknowledged survives a power cut. The mode is kept in the file.
    # A file system without shared memory (a network mount) refuses WAL: the store then stays in the
    # rollback journal, as before.
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    except sqlite3.OperationalError as exc:
        log.warning("the SQLite store stays in rollback-journal mode (WAL refused: %s)", exc)
