"""The Grid page's FastAPI app, mounted on Airflow's api-server at ``/gridaware`` by the plugin.

Every route needs an authenticated Airflow user (the UI's ``_token`` cookie or a Bearer token), checked
with Airflow's own security dependencies; data about a DAG's tasks is shown only to users who may read
that DAG (the auth manager's ``get_authorized_dag_ids``), and a single task's decision needs read access
to its DAG.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from airflow_provider_gridaware.ledger.slo import SLOS_KEY, SustainabilitySlo, evaluate, parse_slos
from airflow_provider_gridaware.times import current_clock
from airflow_provider_gridaware.ui.page import SAVINGS_PERIOD, grid_page, hold_target_dag, is_recent, savings_json
from airflow_provider_gridaware.ui.reports import ReportShelf, checked_file_name

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerReader
    from airflow_provider_gridaware.planning.flexibility import FleetWork
    from airflow_provider_gridaware.plugins.sources import ZoneCache
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.responses import ResponseRecord
    from airflow_provider_gridaware.ui.waiting import WaitingTask
    from airflow_provider_gridaware.ui.zones import ZoneView

log = logging.getLogger(__name__)
_V = TypeVar("_V")
#: The page lists this many waiting tasks by default (the soonest planned); a laptop screen shows far fewer.
WAITING_LIMIT = 500
#: The savings table is recomputed at most this often per set of readable DAGs, in seconds.
SAVINGS_TTL_S = 60.0

_STATIC = {
    "grid.js": "text/javascript",
    "grid.css": "text/css",
    "icon.svg": "image/svg+xml",
    "icon-dark.svg": "image/svg+xml",
}


def _utcnow() -> datetime:
    """Now on the clock the grid-aware tasks decide on (``GRIDAWARE_CLOCK`` in the demo and tests)."""
    return current_clock().now()


def _no_report_location() -> ReportShelf:
    raise LookupError("no report location configured")


def configured_report_shelf() -> Callable[[], ReportShelf]:
    """The reports under ``[gridaware] report_location``, opened on first use and kept."""
    held: list[ReportShelf] = []

    def shelf() -> ReportShelf:
        if not held:
            from airflow_provider_gridaware.hooks.carbon_report import open_report_location, report_location

            url, conn_id = report_location()
            held.append(ReportShelf(open_report_location(url, conn_id), url))
        return held[0]

    return shelf


@dataclass
class GridPageSources:
    """What the page reads; each part replaceable (tests, benchmarks).

    :param waiting: ``dag_ids -> (waiting tasks, the (conn_id, zone) pairs they read, problems)``.
    :param ledger: opens the ledger's reader (raises with a clear message when there is none).
    :param events: ``now -> grid events`` (latest state of each).
    :param zones: ``(conn_id, zone) pairs, now -> views``.
    :param configured_zones: ``(conn_id, zone)`` pairs always shown (``[gridaware] ui_zones``).
    :param clock: the current UTC time.
    :param savings_cache: keeps the savings table per set of readable DAGs (default: not kept).
    :param slos: the sustainability SLOs shown (``[gridaware] slos``, a JSON list).
    :param dag_tags: each DAG's tags (for SLOs set per tag).
    :param fleet: ``now, notes, dag_ids -> running and waiting work`` (``fleet_from_airflow``).
    :param responses: ``(source, event id) keys -> the grid-event response's holds`` of those events.
    :param reports: the daily reports' location (``[gridaware] report_location``).
    :param all_dag_ids: every DAG id Airflow knows (who may read them all sees every daily report; empty:
        a report is shown only to who may read each DAG it names).
    """

    waiting: Callable[[Iterable[str] | None], tuple[list[WaitingTask], list[tuple[str, str]], list[str]]]
    ledger: Callable[[], LedgerReader]
    events: Callable[[datetime], list[GridEvent]]
    zones: Callable[[Sequence[tuple[str, str]], datetime], list[ZoneView]]
    configured_zones: Callable[[], list[tuple[str, str]]] = field(default=lambda: [])
    clock: Callable[[], datetime] = _utcnow
    savings_cache: TtlCache = field(default_factory=lambda: TtlCache(0.0))
    slos: Callable[[], list[SustainabilitySlo]] = field(default=lambda: [])
    dag_tags: Callable[[], dict[str, list[str]]] = field(default=lambda: {})
    fleet: Callable[[datetime, list[str], set[str] | None], list[FleetWork]] = field(
        default=lambda now, notes, dags: []
    )
    responses: Callable[[Sequence[tuple[str, str]]], Sequence[ResponseRecord]] = field(default=lambda keys: [])
    reports: Callable[[], ReportShelf] = field(default=_no_report_location)
    all_dag_ids: Callable[[], set[str]] = field(default=lambda: set())

    @classmethod
    def from_airflow(cls, zone_cache: ZoneCache | None = None) -> GridPageSources:
        """The sources of a running api-server."""
        from airflow_provider_gridaware.fleet import fleet_from_airflow
        from airflow_provider_gridaware.hooks.ledger_reader import open_ledger_reader
        from airflow_provider_gridaware.plugins.sources import (
            UI_ZONES_KEY,
            DeferredGridTasks,
            ZoneCache,
            _gridaware_config,
            dag_ids_from_db,
            dag_tags_from_db,
            parse_zone_list,
            recent_events,
            response_holds,
        )

        cache = zone_cache or ZoneCache()
        return cls(
            waiting=DeferredGridTasks().read,
            ledger=open_ledger_reader,
            events=recent_events,
            zones=cache.views,
            configured_zones=lambda: parse_zone_list(_gridaware_config(UI_ZONES_KEY)),
            savings_cache=TtlCache(SAVINGS_TTL_S),
            slos=lambda: parse_slos(_gridaware_config(SLOS_KEY)),
            dag_tags=dag_tags_from_db,
            fleet=fleet_from_airflow,
            responses=response_holds,
            reports=configured_report_shelf(),
            all_dag_ids=dag_ids_from_db,
        )


def page_data(
    sources: GridPageSources, readable_dag_ids: set[str] | None, *, waiting_limit: int | None = None
) -> dict[str, Any]:
    """The page's JSON for a user who may read ``readable_dag_ids`` (``None``: every DAG).

    :param sources: where the data comes from.
    :param readable_dag_ids: the DAGs whose tasks and savings the user may see.
    :param waiting_limit: list at most this many waiting tasks (the soonest planned); all are counted.
    """
    now = sources.clock()
    problems: list[str] = []
    try:
        waiting, waiting_zones, unreadable = sources.waiting(readable_dag_ids)
        problems += unreadable
    except Exception as exc:
        log.exception("Grid page: reading the deferred tasks failed")
        waiting, waiting_zones = [], []
        problems.append(f"waiting tasks: {exc}")
    try:
        pairs = list(dict.fromkeys([*sources.configured_zones(), *waiting_zones]))
    except ValueError as exc:
        pairs = list(dict.fromkeys(waiting_zones))
        problems.append(str(exc))
    zones = sources.zones(pairs, now) if pairs else []
    events: list[GridEvent] = []
    try:
        events = sources.events(now)
    except Exception as exc:
        log.exception("Grid page: reading grid events failed")
        problems.append(f"grid events: {exc}")

    holds, hidden_holds = event_holds(sources, [e for e in events if is_recent(e, now)], readable_dag_ids, problems)

    try:
        slos = sources.slos()
    except ValueError as exc:
        slos = []
        problems.append(str(exc))

    def savings() -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]], str | None]:
        dag_filter = None if readable_dag_ids is None else sorted(readable_dag_ids)
        period = max([SAVINGS_PERIOD, *(slo.period for slo in slos)])
        try:
            records = sources.ledger().records(now - period, now, dag_ids=dag_filter)
        except Exception as exc:  # the ledger is one part of the page: its absence is said, not fatal
            log.warning("Grid page: no savings shown: %s", exc)
            return None, [], str(exc)
        recent = [r for r in records if r.actual.start >= now - SAVINGS_PERIOD]
        tags = sources.dag_tags() if any(slo.tags for slo in slos) else {}
        shown = []
        for slo in slos:
            covered = {*slo.dag_ids, *(dag for dag in tags if slo.covers(dag, tags))}
            if readable_dag_ids is None or covered <= readable_dag_ids:  # not shown to those who may not read them
                in_period = [r for r in records if r.actual.start >= now - slo.period]
                shown.append(evaluate(slo, in_period, tags).to_json())
        return savings_json(recent), shown, None

    key = None if readable_dag_ids is None else frozenset(readable_dag_ids)
    per_dag, slo_statuses, ledger_error = sources.savings_cache.get(key, savings)
    return grid_page(
        now=now,
        zones=zones,
        waiting=waiting,
        events=events,
        savings=per_dag,
        ledger_error=ledger_error,
        problems=problems,
        waiting_limit=waiting_limit,
        slos=slo_statuses,
        holds=holds,
        hidden_holds=hidden_holds,
    )


def event_holds(
    sources: GridPageSources, events: Sequence[GridEvent], readable_dag_ids: set[str] | None, problems: list[str]
) -> tuple[dict[tuple[str, str], list[ResponseRecord]], dict[tuple[str, str], int]]:
    """Per event, the response's holds the user may see, and how many paused DAGs they may not read.

    A hold on a DAG is shown only to users who may read that DAG; a hold on a Kubernetes or Batch job
    (the record names no DAG) is shown like the event itself, to every signed-in user.

    :param sources: where the holds come from.
    :param events: the events shown.
    :param readable_dag_ids: the DAGs the user may read (``None``: every DAG).
    :param problems: what could not be read is added here.
    """
    shown: dict[tuple[str, str], list[ResponseRecord]] = {}
    hidden: dict[tuple[str, str], int] = {}
    if not events:
        return shown, hidden
    try:
        records = sources.responses([(e.source, e.event_id) for e in events])
    except Exception as exc:  # the events are still shown, without what they paused
        log.exception("Grid page: reading the grid-event response's record failed")
        problems.append(f"what grid events paused: {exc}")
        return shown, hidden
    for record in records:
        key = (record.event_source, record.event_id)
        dag_id = hold_target_dag(record)
        if dag_id is not None and readable_dag_ids is not None and dag_id not in readable_dag_ids:
            hidden[key] = hidden.get(key, 0) + 1
        else:
            shown.setdefault(key, []).append(record)
    return shown, hidden


class TtlCache:
    """Values kept for ``ttl_s`` per key (the 30-day savings change slowly; the page refreshes every minute).

    A value older than ``ttl_s`` is still returned while one background thread computes its successor, so
    only the first request for a key waits for ``compute``.

    :param ttl_s: how long a value is fresh (0: computed on every call, in the caller).
    :param clock: monotonic seconds.
    """

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[Any, tuple[float, Any]] = {}
        self._refreshing: set[Any] = set()
        #: The last background refresh started (tests join it).
        self.refresh_thread: threading.Thread | None = None

    def get(self, key: Any, compute: Callable[[], _V]) -> _V:
        """The value for ``key``: computed now when there is none, refreshed in the background when stale."""
        with self._lock:
            held = self._values.get(key)
            stale = held is not None and self._clock() - held[0] >= self.ttl_s
            if held is not None and stale and self.ttl_s > 0 and key not in self._refreshing:
                self._refreshing.add(key)
                self.refresh_thread = threading.Thread(target=self._refresh, args=(key, compute), daemon=True)
                self.refresh_thread.start()
        if held is not None and (not stale or self.ttl_s > 0):
            return cast("_V", held[1])
        return self._store(key, compute())

    def _refresh(self, key: Any, compute: Callable[[], Any]) -> None:
        try:
            self._store(key, compute())
        except Exception:  # the stale value stays; the next call tries again
            log.exception("Grid page: refreshing a cached value failed")
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _store(self, key: Any, value: _V) -> _V:
        now = self._clock()
        with self._lock:
            # Keys not asked for within a few periods (users who left) are dropped.
            self._values = {k: v for k, v in self._values.items() if now - v[0] < max(self.ttl_s, 1.0) * 5}
            self._values[key] = (now, value)
        return value


def readable_dags(user: Any) -> set[str]:
    """The DAG ids ``user`` may read, from the configured auth manager."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


def readable_for_reports(sources: GridPageSources, user: Any) -> set[str] | None:
    """``None`` when ``user`` may read every DAG Airflow knows, else the DAG ids they may read: a daily
    report names DAGs, and is shown only to who may read them all.

    Not the auth manager's answer for "DAGs" without details: SimpleAuthManager gives it to every viewer,
    teams or not.
    """
    readable = readable_dags(user)
    try:
        known = sources.all_dag_ids()
    except Exception as exc:  # unknown: the report's own DAG list decides
        log.warning("Grid page: Airflow's DAG ids cannot be read: %s", exc)
        return readable
    return None if known and known <= readable else readable


#: Served with every report file: no script runs in a report page (a file planted in the location cannot act
#: as the signed-in user); its charts and inline style load. (A CSP sandbox would also block the charts: its
#: opaque origin sends no session cookie.)
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-cache",
}


def create_app(sources: GridPageSources | None = None) -> FastAPI:
    """The Grid page's app.

    :param sources: where its data comes from (default: the running api-server's, built on first use).
    """
    app = FastAPI(title="Grid awareness", docs_url=None, redoc_url=None, openapi_url=None)
    held: list[GridPageSources] = [] if sources is None else [sources]

    def current_sources() -> GridPageSources:
        if not held:
            held.append(GridPageSources.from_airflow())
        return held[0]

    @app.get("/", response_class=HTMLResponse)
    def page(user: GetUserDep) -> HTMLResponse:
        """The Grid page (HTML; it loads its data from ``api/grid``)."""
        return HTMLResponse(_static_text("index.html"), headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str, user: GetUserDep) -> Response:
        """The page's script and style sheet."""
        media_type = _STATIC.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no static file {name!r}")
        return Response(_static_text(name), media_type=media_type)

    @app.get("/api/grid")
    def grid(user: GetUserDep, limit: int = Query(WAITING_LIMIT, ge=1, le=100_000)) -> Response:
        """The page's data: zones, waiting tasks (the ``limit`` soonest, all counted), events and 30-day savings,
        for the DAGs the user may read."""
        data = page_data(current_sources(), readable_dags(user), waiting_limit=limit)
        # Encoded here: FastAPI's generic encoder would walk every value again (most of the time at 5,000 tasks).
        body = json.dumps(data, separators=(",", ":"))
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/api/flex")
    def flex(user: GetUserDep) -> dict[str, Any]:
        """The fleet's flexibility (``gridaware flex --json``) over the DAGs the user may read."""
        from airflow_provider_gridaware.planning.flexibility import flexibility

        sources = current_sources()
        now = sources.clock()
        notes: list[str] = []
        report = flexibility(sources.fleet(now, notes, readable_dags(user)), now=now)
        report["notes"] = notes
        return report

    @app.get("/api/reports")
    def reports(user: GetUserDep) -> dict[str, Any]:
        """The recent daily reports the user may see (each names only DAGs they may read), newest first."""
        try:
            shelf = current_sources().reports()
            days = shelf.days()
        except Exception as exc:  # the page says why and shows the rest
            log.warning("Grid page: the daily reports cannot be listed: %s", exc)
            return {"location": None, "items": [], "hidden": 0, "error": str(exc)}
        readable = readable_for_reports(current_sources(), user)
        shown = [d.to_json() for d in days if d.readable_by(readable)]
        return {"location": shelf.display, "items": shown, "hidden": len(days) - len(shown), "error": None}

    @app.get("/reports/{day}/{name:path}")
    def report_file(day: str, name: str, user: GetUserDep) -> Response:
        """One file of a daily report (only a report's own files under the configured location)."""
        try:
            checked_file_name(name)  # before storage is touched
            shelf = current_sources().reports()
            listing = shelf.day(day)
            if not listing.readable_by(readable_for_reports(current_sources(), user)):
                raise HTTPException(status_code=403, detail=f"the report of {day} covers DAGs you may not read")
            data, media_type = shelf.read(day, name)
        except LookupError as exc:  # ReportNotFoundError, or no report location
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return Response(data, media_type=media_type, headers=REPORT_HEADERS)

    @app.get("/api/decision/{dag_id}/{run_id}/{task_id}", dependencies=[Depends(requires_access_dag("GET"))])
    def decision(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """One task's decision (needs read access to its DAG): its wait now, or what its ledger says happened."""
        return task_decision(current_sources(), dag_id, run_id, task_id, map_index)

    return app


def task_decision(sources: GridPageSources, dag_id: str, run_id: str, task_id: str, map_index: int) -> dict[str, Any]:
    """A task's decision: waiting (its trigger's) or released (its ledger records); 404 when neither exists.

    :param sources: where the data comes from.
    """
    from airflow_provider_gridaware.ui.page import ledger_record_json

    waiting, _, _ = sources.waiting({dag_id})
    for task in waiting:
        k = task.key
        if (k.run_id, k.task_id, k.map_index) == (run_id, task_id, map_index):
            return {"status": "waiting", "task": task.to_json()}
    now = sources.clock()
    try:
        records = sources.ledger().records(now - SAVINGS_PERIOD, now, dag_ids=[dag_id])
    except Exception as exc:
        raise HTTPException(status_code=404, detail=f"{dag_id}.{task_id} is not waiting, and {exc}") from None
    tries = [
        ledger_record_json(r)
        for r in records
        if (r.key.run_id, r.key.task_id, r.key.map_index) == (run_id, task_id, map_index)
    ]
    if not tries:
        raise HTTPException(
            status_code=404,
            detail=f"{dag_id}.{task_id} in {run_id} is not waiting and has no ledger record in the last 30 days",
        )
    return {"status": "released", "tries": tries}


def _static_text(name: str) -> str:
    return resources.files("airflow_provider_gridaware.plugins").joinpath("static", name).read_text("utf-8")
