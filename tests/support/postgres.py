"""A throw-away PostgreSQL database on the loopback server, for store tests and the archive benchmark."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

#: the loopback server (trust auth); the store needs only a database it may create tables in.
SERVER_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def unreachable_reason(server_url: str = SERVER_URL) -> str | None:
    """Why the server cannot be used (driver missing, connection refused), or ``None`` if it can."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "the postgres extra (psycopg2-binary) is not installed"
    from sqlalchemy.exc import OperationalError

    engine = create_engine(server_url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return f"PostgreSQL at {server_url} is not reachable: {str(exc.orig).strip().splitlines()[0]}"
    finally:
        engine.dispose()
    return None


@contextmanager
def throwaway_database(prefix: str, server_url: str = SERVER_URL) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, and drop it (even with open connections) after.

    :param prefix: start of the database name (``gridaware_test``, ``gridaware_bench``).
    :param server_url: a URL of the server's maintenance database.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
