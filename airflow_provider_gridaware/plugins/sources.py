"""Where the Grid page's data comes from, inside the api-server: Airflow's metadata database (deferred
grid-window tasks and their triggers' requests), the provider's store (grid events), the ledger, and the
zones' signal hooks.

Every source fails on its own: what cannot be read is named in the page's ``problems`` and the rest is
still shown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.ledger.records import TryKey
from airflow_provider_gridaware.ui.waiting import WaitingTask, waiting_task
from airflow_provider_gridaware.ui.zones import ZoneView, zone_view

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.responses import ResponseRecord

log = logging.getLogger(__name__)

#: What ``GridWindowTrigger.serialize()`` names as the trigger's class path.
GRID_WINDOW_CLASSPATH = "airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger"
#: The config key listing zones always shown: ``conn_id:zone`` pairs, comma-separated.
UI_ZONES_KEY = "ui_zones"


def _gridaware_config(key: str) -> str | None:
    from airflow_provider_gridaware.hooks.store import _config

    return _config(key)


def parse_zone_list(text: str | None) -> list[tuple[str, str]]:
    """``"conn_a:GB, conn_b:DE"`` as ``[(conn_a, GB), (conn_b, DE)]``.

    :raises ValueError: an entry is not ``conn_id:zone``.
    """
    pairs: list[tuple[str, str]] = []
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        conn_id, sep, zone = entry.strip().partition(":")
        if not sep or not conn_id.strip() or not zone.strip():
            raise ValueError(f"[gridaware] {UI_ZONES_KEY}: {entry.strip()!r} is not conn_id:zone")
        pairs.append((conn_id.strip(), zone.strip()))
    return pairs


def dag_ids_from_db() -> set[str]:
    """Every DAG id in Airflow's metadata database."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return set(session.scalars(select(DagModel.dag_id)))


def dag_tags_from_db() -> dict[str, list[str]]:
    """Each DAG's tags, from Airflow's metadata database."""
    from airflow.models.dag import DagTag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    tags: dict[str, list[str]] = {}
    with create_session() as session:
        for dag_id, name in session.execute(select(DagTag.dag_id, DagTag.name)):
            tags.setdefault(dag_id, []).append(name)
    return tags


class DeferredGridTasks:
    """Deferred tasks waiting on a ``GridWindowTrigger``, read from Airflow's metadata database.

    One query joins ``task_instance`` and ``trigger``. A trigger's kwargs never change while it exists, so
    each is decrypted and read once and kept by trigger id (dropped when not seen for
    :attr:`forget_after_s`); a trigger that cannot be read is named, not fatal.

    :param forget_after_s: how long an entry no query returned is kept.
    :param clock: monotonic seconds.
    """

    def __init__(self, *, forget_after_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._read: dict[int, tuple[WaitingTask, tuple[tuple[str, str], ...]]] = {}
        self._seen: dict[int, float] = {}

    def read(self, dag_ids: Iterable[str] | None) -> tuple[list[WaitingTask], list[tuple[str, str]], list[str]]:
        """The waiting tasks of ``dag_ids`` (``None``: all), the (connection, zone) pairs they read, and the
        problems met.

        :param dag_ids: the DAGs the user may read.
        """
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.trigger import Trigger
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        query = (
            select(
                Trigger.id,
                TaskInstance.dag_id,
                TaskInstance.run_id,
                TaskInstance.task_id,
                TaskInstance.map_index,
                TaskInstance.try_number,
                Trigger.encrypted_kwargs,
            )
            .join(Trigger, TaskInstance.trigger_id == Trigger.id)
            .where(TaskInstance.state == TaskInstanceState.DEFERRED, Trigger.classpath == GRID_WINDOW_CLASSPATH)
        )
        if dag_ids is not None:
            wanted = sorted(dag_ids)
            if not wanted:
                return [], [], []
            query = query.where(TaskInstance.dag_id.in_(wanted))
        with create_session() as session:
            rows = session.execute(query).all()
        return self.from_rows(rows)

    def from_rows(
        self, rows: Iterable[tuple[int, str, str, str, int, int, str]]
    ) -> tuple[list[WaitingTask], list[tuple[str, str]], list[str]]:
        """Waiting tasks from ``(trigger id, dag_id, run_id, task_id, map_index, try_number, encrypted kwargs)``."""
        from airflow.models.trigger import Trigger

        tasks: list[WaitingTask] = []
        zones: dict[tuple[str, str], None] = {}
        problems: list[str] = []
        now = self._clock()
        with self._lock:
            for trigger_id, dag_id, run_id, task_id, map_index, try_number, encrypted in rows:
                held = self._read.get(trigger_id)
                if held is None:
                    key = TryKey(dag_id, run_id, task_id, map_index, try_number)
                    try:
                        request = Trigger._decrypt_kwargs(encrypted)["request"]
                        held = self._read[trigger_id] = (waiting_task(key, request), tuple(carbon_sources(request)))
                    except Exception as exc:  # one unreadable trigger must not hide the others
                        problems.append(f"{dag_id}.{task_id} ({run_id}): its trigger could not be read: {exc}")
                        continue
                self._seen[trigger_id] = now
                tasks.append(held[0])
                zones.update(dict.fromkeys(held[1]))
            for trigger_id in [t for t, seen in self._seen.items() if now - seen > self.forget_after_s]:
                self._read.pop(trigger_id, None)
                self._seen.pop(trigger_id, None)
        return tasks, list(zones), problems


def carbon_sources(request: dict[str, Any]) -> list[tuple[str, str]]:
    """The (connection, zone) carbon sources a trigger's request reads, in order."""
    return [
        (str(source["conn_id"]), str(source["zone"]))
        for source in request.get("sources") or ()
        if source.get("kind", "carbon_intensity") == "carbon_intensity"
    ]


def recent_events(now: datetime) -> list[GridEvent]:
    """Every event's latest state from the provider's store (the page keeps active and recent ones)."""
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return GridStoreHook().get_event_store().current(now=now, include_final=True)


def response_holds(events: Sequence[tuple[str, str]]) -> list[ResponseRecord]:
    """The grid-event response's holds of these events, from the provider's store (oldest first)."""
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return GridStoreHook().get_response_store().records_of_events(events)


def read_zone(conn_id: str, zone: str, now: datetime) -> ZoneView:
    """One zone's view: its forecast, recent actuals and the forecast's calibration, read through its hook.

    A failure is kept in the view's ``error`` with the source's own message.
    """
    from airflow_provider_gridaware.hooks.forecast_calibration import calibration_for
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.errors import GridSignalError

    try:
        hook = hook_for_connection(conn_id)
        forecast = hook.get_forecast(zone)
    except GridSignalError as exc:
        return ZoneView(zone=zone, conn_id=conn_id, error=str(exc))
    try:
        actuals = hook.get_actuals(zone, now - timedelta(hours=2), now)
    except GridSignalError as exc:
        log.info("no recent actuals for %s/%s (%s): the forecast's value now is shown", conn_id, zone, exc)
        actuals = None
    return zone_view(zone, conn_id, forecast, now=now, actuals=actuals, calibration=calibration_for(forecast, now=now))


class ZoneCache:
    """Zone views, read in the background and kept for ``max_age``: a page load never waits on a slow
    source longer than ``wait_s`` (it then shows the last view, or says the zone is still loading).

    :param read: reads one zone (``read_zone``).
    :param max_age: how long a view is shown before it is read again.
    :param wait_s: how long a request waits for a zone being read.
    :param clock: monotonic seconds.
    """

    def __init__(
        self,
        read: Callable[[str, str, datetime], ZoneView] = read_zone,
        *,
        max_age: timedelta = timedelta(minutes=5),
        wait_s: float = 8.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age_s = max_age.total_seconds()
        self._wait_s = wait_s
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[tuple[str, str], tuple[float, ZoneView]] = {}
        self._pending: dict[tuple[str, str], Future[ZoneView]] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gridaware-zones")

    def views(self, pairs: Sequence[tuple[str, str]], now: datetime) -> list[ZoneView]:
        """A view per (connection, zone), in order."""
        waiting: list[tuple[tuple[str, str], Future[ZoneView]]] = []
        shown: dict[tuple[str, str], ZoneView] = {}
        with self._lock:
            for pair in pairs:
                held = self._views.get(pair)
                if held is not None:
                    shown[pair] = held[1]
                if held is None or self._clock() - held[0] > self._max_age_s:
                    future = self._pending.get(pair)
                    if future is None:
                        future = self._pending[pair] = self._pool.submit(self._fetch, pair, now)
                    if held is None:
                        waiting.append((pair, future))
        deadline = self._clock() + self._wait_s
        for pair, future in waiting:
            try:
                shown[pair] = future.result(timeout=max(0.0, deadline - self._clock()))
            except FutureTimeout:
                shown[pair] = ZoneView(zone=pair[1], conn_id=pair[0], error="still reading its signal; refresh shortly")
        return [shown[pair] for pair in pairs]

    def _fetch(self, pair: tuple[str, str], now: datetime) -> ZoneView:
        try:
            view = self._read(pair[0], pair[1], now)
        except Exception as exc:  # an unexpected error in a hook: shown on the zone, logged here
            log.exception("reading zone %s/%s for the Grid page failed", *pair)
            view = ZoneView(zone=pair[1], conn_id=pair[0], error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._views[pair] = (self._clock(), view)
            self._pending.pop(pair, None)
        return view
