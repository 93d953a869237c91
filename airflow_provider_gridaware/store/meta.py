"""Small key/value facts in the store (``gridaware_store_meta``): a VEN's registration, when it was pruned.

Adapters keep what a party assigned once (an OpenADR ``venID`` and ``registrationID``) here, so every
worker and triggerer that opens the same store sees it. Keys are at most 64 characters, values 256.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime

from sqlalchemy import Engine, delete, select

from airflow_provider_gridaware.store.engine import WRITE
from airflow_provider_gridaware.store.migrate import open_store
from airflow_provider_gridaware.store.schema import store_meta
from airflow_provider_gridaware.store.url import resolve_store_url
from airflow_provider_gridaware.times import UTC

MAX_KEY = 64
MAX_VALUE = 256

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def meta_key(*parts: str) -> str:
    """``part:part:...``, hashed in the middle when it would pass the column's 64 characters.

    The first and last part stay readable (``openadr2b:<hash>:ven_id``).
    """
    key = ":".join(parts)
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"{parts[0][:16]}:{digest}:{parts[-1][:20]}"


def _engine(url: str | None) -> Engine:
    resolved = resolve_store_url(url)
    with _lock:
        engine = _engines.get(resolved)
        if engine is None:
            engine = _engines[resolved] = open_store(resolved)
        return engine


def read_meta(key: str, *, url: str | None = None) -> str | None:
    """The value stored under ``key``, or ``None``.

    :param url: the store's SQLAlchemy URL (default: ``$GRIDAWARE_STORE_URL`` or the SQLite file).
    """
    with _engine(url).connect() as connection:
        value = connection.execute(select(store_meta.c.value).where(store_meta.c.key == key)).scalar()
    return str(value) if value is not None else None


def write_meta(values: dict[str, str], *, url: str | None = None) -> None:
    """Store ``values`` (key -> value) in one transaction, replacing what was there."""
    for key, value in values.items():
        if len(key) > MAX_KEY or len(value) > MAX_VALUE:
            raise ValueError(f"store meta {key!r}: keys hold {MAX_KEY} characters and values {MAX_VALUE}")
    now = datetime.now(UTC)
    with _engine(url).connect().execution_options(**WRITE) as connection, connection.begin():
        # Delete then insert: portable across SQLite and PostgreSQL, atomic inside the transaction.
        connection.execute(delete(store_meta).where(store_meta.c.key.in_(list(values))))
        connection.execute(store_meta.insert(), [{"key": k, "value": v, "updated_at": now} for k, v in values.items()])


def delete_meta(*keys: str, url: str | None = None) -> None:
    """Forget ``keys``."""
    with _engine(url).connect().execution_options(**WRITE) as connection, connection.begin():
        connection.execute(delete(store_meta).where(store_meta.c.key.in_(list(keys))))


def close_meta_engines() -> None:
    """Dispose of the engines opened here (tests, and processes that switch stores)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
