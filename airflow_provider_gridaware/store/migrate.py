"""Bring a store's tables to the newest schema with the Alembic migrations shipped in this package.

Safe when several processes open the same database at once: the upgrade runs under a PostgreSQL
transaction-level advisory lock, or SQLite's write lock (``BEGIN IMMEDIATE``), and re-reads the version
after taking it; a store already at the newest revision takes no lock at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine, column, inspect, select, table, text

from airflow_provider_gridaware.store.engine import WRITE, create_store_engine
from airflow_provider_gridaware.store.schema import VERSION_TABLE
from airflow_provider_gridaware.store.url import resolve_store_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The newest revision shipped (a test holds it to the migrations' head): opening a store already at it needs
#: no Alembic, whose import and script scan cost a short-lived task process ~0.3 s.
HEAD_REVISION = "0006_ledger"
# Any fixed 63-bit number: the key every process of every version agrees on ("gridawar" in ASCII).
ADVISORY_LOCK_KEY = int.from_bytes(b"gridawar", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations (no ``alembic.ini`` needed).

    :param connection: the connection ``env.py`` migrates (``None`` for offline commands).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision shipped in this package, from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations in {MIGRATIONS_DIR}"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the store's tables are at (``None`` for an empty database).

    Read directly: Alembic's migration context would log its set-up at INFO on every open.

    :param connection: a connection to the store.
    """
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    revision = connection.execute(select(column("version_num")).select_from(table(VERSION_TABLE))).scalar()
    return str(revision) if revision is not None else None


def upgrade_store(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision``; idempotent and safe under concurrent callers.

    :param engine: the store's engine.
    :param revision: target revision (``head`` = newest).
    """
    target = HEAD_REVISION if revision == "head" else revision
    with engine.connect() as connection:
        at = current_revision(connection)
        connection.rollback()
    if at == target:
        return
    with engine.connect().execution_options(**WRITE) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # Released by the commit; a second opener waits here, then finds the tables at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        from alembic import command

        command.upgrade(alembic_config(connection), target)


def open_store(url: str) -> Engine:
    """An engine for the store at ``url``, its tables migrated to the newest schema.

    :param url: a SQLAlchemy URL.
    """
    engine = create_store_engine(url)
    try:
        upgrade_store(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


_Opened = TypeVar("_Opened", bound="OpenedStore")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class OpenedStore:
    """The life cycle the store's parts share: a URL resolved, an engine opened, the tables migrated.

    :param url: SQLAlchemy URL of the store; default ``$GRIDAWARE_STORE_URL`` or
        ``sqlite:///$AIRFLOW_HOME/gridaware.db``.
    :param clock: current UTC time (default: the system clock).
    """

    def __init__(self, url: str | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.url = resolve_store_url(url)
        self._clock = clock or _utcnow
        self._engine = open_store(self.url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self: _Opened) -> _Opened:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store's connections."""
        self._engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``), committed on leaving."""
        with self._engine.connect().execution_options(**WRITE) as connection, connection.begin():
            yield connection
