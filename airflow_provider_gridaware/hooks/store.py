"""The provider's store seen from Airflow: where it lives (a connection or config), and archiving what hooks return.

Where the store lives, first match wins:

1. the ``store_conn_id`` argument of :class:`GridStoreHook`;
2. the environment variable ``GRIDAWARE_STORE_URL`` (a SQLAlchemy URL);
3. the Airflow config ``[gridaware] store_conn_id`` (a ``postgres`` or ``sqlite`` connection);
4. ``sqlite:///$AIRFLOW_HOME/gridaware.db``.

Every series a :class:`~airflow_provider_gridaware.hooks.base.GridSignalHook` returns is recorded in the
forecast archive unless ``GRIDAWARE_ARCHIVE=0`` or ``[gridaware] archive = False``. Recording never breaks
a hook: a store error is logged (once per distinct reason, then at debug level), the series is returned,
and that store is left alone for a minute.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.store.archive import ForecastArchive
    from airflow_provider_gridaware.store.events import EventStore
    from airflow_provider_gridaware.store.ledger import LedgerStore
    from airflow_provider_gridaware.store.migrate import OpenedStore
    from airflow_provider_gridaware.store.responses import ResponseStore
    from airflow_provider_gridaware.store.runtime import TaskRuntimeHistory

log = logging.getLogger(__name__)
_Store = TypeVar("_Store", bound="OpenedStore")

CONFIG_SECTION = "gridaware"
#: environment switch: ``0``/``false``/``no``/``off`` disables archiving (beats the config flag).
ARCHIVE_ENV = "GRIDAWARE_ARCHIVE"
_OFF = frozenset({"0", "false", "no", "off"})
_LIBPQ_OPTIONS = frozenset(
    {"sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "application_name", "options", "target_session_attrs"}
)


def _config(key: str) -> str | None:
    from airflow.sdk.configuration import conf

    value = conf.get(CONFIG_SECTION, key, fallback=None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def archive_enabled() -> bool:
    """Whether hooks record what they return (``GRIDAWARE_ARCHIVE``, else ``[gridaware] archive``, else on)."""
    switch = os.environ.get(ARCHIVE_ENV, "").strip() or _config("archive") or "1"
    return switch.lower() not in _OFF


def connection_store_url(conn: Connection) -> str:
    """The SQLAlchemy URL of a ``postgres`` or ``sqlite`` connection (``postgres://`` -> ``postgresql+psycopg2://``).

    Of the extras, only libpq's TLS and session options are passed on (others belong to Airflow's hooks).

    :param conn: the Airflow connection.
    """
    from sqlalchemy import URL

    from airflow_provider_gridaware.store.url import POSTGRES_DRIVER

    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        # Airflow's SQLite connections keep the file path in Host.
        if not conn.host:
            raise ValueError(f"connection {conn.conn_id!r}: a sqlite store needs the database file path in Host")
        return f"sqlite:///{conn.host}"
    if conn_type not in ("postgres", "postgresql"):
        raise ValueError(f"connection {conn.conn_id!r} is of type {conn_type!r}; the store needs postgres or sqlite")
    extra = conn.extra_dejson if conn.extra else {}
    query = {k: str(v) for k, v in extra.items() if k in _LIBPQ_OPTIONS and v not in (None, "")}
    url = URL.create(
        POSTGRES_DRIVER,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


class GridStoreHook(BaseHook):
    """Opens the provider's store: the forecast archive, grid events, task run times and the carbon ledger.

    :param store_conn_id: an Airflow connection (``postgres`` or ``sqlite``) holding the store; default:
        ``$GRIDAWARE_STORE_URL``, then ``[gridaware] store_conn_id``, then SQLite under ``AIRFLOW_HOME``.
    """

    conn_name_attr = "store_conn_id"
    hook_name = "Grid: provider store"
    # Resolved URLs per connection id: recording must not look a connection up on every fetch.
    _urls: ClassVar[dict[str | None, str]] = {}

    def __init__(self, store_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store_conn_id = store_conn_id

    def _conn_id(self) -> str | None:
        if self.store_conn_id:
            return self.store_conn_id
        if os.environ.get("GRIDAWARE_STORE_URL"):
            return None
        return _config("store_conn_id")

    def get_url(self) -> str:
        """The store's SQLAlchemy URL (looked up once per process and connection id)."""
        from airflow_provider_gridaware.store.url import resolve_store_url

        conn_id = self._conn_id()
        if conn_id is None:
            return resolve_store_url()
        if conn_id not in self._urls:
            self._urls[conn_id] = connection_store_url(self.get_connection(conn_id))
        return self._urls[conn_id]

    async def aget_url(self) -> str:
        """Async twin of :meth:`get_url` (a connection lookup must not block the triggerer's loop)."""
        from airflow_provider_gridaware.store.url import resolve_store_url

        conn_id = self._conn_id()
        if conn_id is None:
            return resolve_store_url()
        if conn_id not in self._urls:
            self._urls[conn_id] = connection_store_url(await self.aget_connection(conn_id))
        return self._urls[conn_id]

    def get_archive(self) -> ForecastArchive:
        """The forecast archive in this store, opened (and migrated) once per process."""
        return shared_archive(self.get_url())

    def get_runtime_history(self) -> TaskRuntimeHistory:
        """The task run-time history in this store (``duration="auto"``), opened once per process."""
        return shared_runtime_history(self.get_url())

    def get_event_store(self) -> EventStore:
        """The grid-event log in this store, opened (and migrated) once per process."""
        return shared_event_store(self.get_url())

    def get_response_store(self) -> ResponseStore:
        """The grid-event response's record in this store, opened (and migrated) once per process."""
        return shared_response_store(self.get_url())

    def get_ledger_store(self) -> LedgerStore:
        """The carbon ledger in this store, opened (and migrated) once per process."""
        return shared_ledger_store(self.get_url())

    def get_conn(self) -> ForecastArchive:
        return self.get_archive()


# One opened store object per (kind, URL) and process: opening migrates and builds an engine.
_opened: dict[tuple[type[OpenedStore], str], OpenedStore] = {}
_opened_lock = threading.Lock()


def shared_archive(url: str) -> ForecastArchive:
    """One :class:`ForecastArchive` per store URL and process.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.store.archive import ForecastArchive

    return _shared(ForecastArchive, url)


def shared_runtime_history(url: str) -> TaskRuntimeHistory:
    """One :class:`~airflow_provider_gridaware.store.runtime.TaskRuntimeHistory` per store URL and process.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.store.runtime import TaskRuntimeHistory

    return _shared(TaskRuntimeHistory, url)


def shared_event_store(url: str) -> EventStore:
    """One :class:`~airflow_provider_gridaware.store.events.EventStore` per store URL and process.

    Unlike the archive, recording an event is never best effort: its errors reach the caller, which must
    not acknowledge an event the store does not have.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.store.events import EventStore

    return _shared(EventStore, url)


def shared_response_store(url: str) -> ResponseStore:
    """One :class:`~airflow_provider_gridaware.store.responses.ResponseStore` per store URL and process.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.store.responses import ResponseStore

    return _shared(ResponseStore, url)


def shared_ledger_store(url: str) -> LedgerStore:
    """One :class:`~airflow_provider_gridaware.store.ledger.LedgerStore` per store URL and process.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.store.ledger import LedgerStore

    return _shared(LedgerStore, url)


def _shared(kind: type[_Store], url: str) -> _Store:
    with _opened_lock:
        opened = _opened.get((kind, url))
        if opened is None:
            opened = _opened[(kind, url)] = kind(url)
        return cast("_Store", opened)


def close_shared_archives() -> None:
    """Close every store object opened here (tests, and processes that switch stores)."""
    with _opened_lock:
        for opened in _opened.values():
            opened.close()
        _opened.clear()
    GridStoreHook._urls.clear()
    forget_store_failures()


# -- recording what hooks return --------------------------------------------------------------------------
_reported: set[str] = set()
_pending: set[asyncio.Task[None]] = set()
#: after a failed write, the store is left alone this long (seconds): a down database must not add its
#: connect timeout to every fetch.
RETRY_AFTER_FAILURE_S = 60.0
_failed_until: dict[str, float] = {}


def forget_store_failures() -> None:
    """Forget which stores failed and which reasons were logged: the next write is tried at once and its
    failure logged as a warning again (tests, and processes that switch stores)."""
    _failed_until.clear()
    _reported.clear()


def _reason(exc: BaseException) -> str:
    # SQLAlchemy wraps the driver's error with its SQL and a link: the driver's first line is the reason.
    cause = getattr(exc, "orig", None) or exc
    return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"


def _report(series: SignalSeries, exc: BaseException) -> None:
    reason = _reason(exc)
    level = logging.DEBUG if reason in _reported else logging.WARNING
    _reported.add(reason)
    log.log(
        level,
        "Could not archive the %s %s %s from %s in the gridaware store (%s); the hook returns it all the same",
        series.zone,
        series.kind.value,
        series.series_type.value,
        series.source,
        reason,
    )


def _record_into(url: str, series: SignalSeries, issue_time_stated: bool) -> None:
    if time.monotonic() < _failed_until.get(url, 0.0):
        log.debug(
            "Not archiving %s %s: the store failed less than %.0f s ago",
            series.source,
            series.zone,
            RETRY_AFTER_FAILURE_S,
        )
        return
    try:
        shared_archive(url).record(series, issue_time_stated=issue_time_stated)
    except Exception:
        _failed_until[url] = time.monotonic() + RETRY_AFTER_FAILURE_S
        raise
    _failed_until.pop(url, None)


def record_signal(series: SignalSeries, *, issue_time_stated: bool = True) -> None:
    """Record ``series`` in the forecast archive now; errors are logged, never raised.

    :param series: what a hook returned.
    :param issue_time_stated: ``False`` if the source gave no issue time (``issued_at`` is the fetch time).
    """
    try:
        if archive_enabled():
            _record_into(GridStoreHook().get_url(), series, issue_time_stated)
    except Exception as exc:
        _report(series, exc)


def record_signal_soon(series: SignalSeries, *, issue_time_stated: bool = True) -> None:
    """Record ``series`` in a background task (the write runs in a thread, off the event loop).

    The caller does not wait; :func:`wait_for_pending_records` does (tests, orderly shutdown).

    :param series: what a hook returned.
    :param issue_time_stated: ``False`` if the source gave no issue time (``issued_at`` is the fetch time).
    """
    try:
        if not archive_enabled():
            return
    except Exception as exc:
        _report(series, exc)
        return
    task = asyncio.get_running_loop().create_task(_arecord(series, issue_time_stated))
    _pending.add(task)  # the loop holds tasks weakly: keep it alive until done
    task.add_done_callback(_pending.discard)


async def _arecord(series: SignalSeries, issue_time_stated: bool) -> None:
    try:
        url = await GridStoreHook().aget_url()
        await asyncio.to_thread(_record_into, url, series, issue_time_stated)
    except Exception as exc:
        _report(series, exc)


async def wait_for_pending_records() -> None:
    """Wait until every background recording started on this loop has finished."""
    loop = asyncio.get_running_loop()
    mine = [task for task in _pending if task.get_loop() is loop]
    if mine:
        await asyncio.gather(*mine, return_exceptions=True)
