"""The Grid page's FastAPI app, mounted on Airflow's api-server at ``/gridaware`` by the plugin.

Every route needs an authenticated Airflow user (the UI's ``_token`` cookie or a Bearer token), checked
with Airflow's own security dependencies; data about a DAG's tasks is shown only to users who may read
that DAG (the auth manager's ``get_authorized_dag_ids``), and a single task's decision needs read access
to its DAG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

from airflow_provider_gridaware.times import UTC
from airflow_provider_gridaware.ui.page import SAVINGS_PERIOD, grid_page

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerReader, LedgerRecord
    from airflow_provider_gridaware.plugins.sources import ZoneCache
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.ui.waiting import WaitingTask
    from airflow_provider_gridaware.ui.zones import ZoneView

log = logging.getLogger(__name__)

_STATIC = {
    "grid.js": "text/javascript",
    "grid.css": "text/css",
    "icon.svg": "image/svg+xml",
    "icon-dark.svg": "image/svg+xml",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class GridPageSources:
    """What the page reads; each part replaceable (tests, benchmarks).

    :param waiting: ``dag_ids -> (waiting tasks, their (dag_id, request) pairs, problems)``.
    :param ledger: opens the ledger's reader (raises with a clear message when there is none).
    :param events: ``now -> grid events`` (latest state of each).
    :param zones: ``(conn_id, zone) pairs, now -> views``.
    :param configured_zones: ``(conn_id, zone)`` pairs always shown (``[gridaware] ui_zones``).
    :param clock: the current UTC time.
    """

    waiting: Callable[[Iterable[str] | None], tuple[list[WaitingTask], list[tuple[str, dict[str, Any]]], list[str]]]
    ledger: Callable[[], LedgerReader]
    events: Callable[[datetime], list[GridEvent]]
    zones: Callable[[Sequence[tuple[str, str]], datetime], list[ZoneView]]
    configured_zones: Callable[[], list[tuple[str, str]]] = field(default=lambda: [])
    clock: Callable[[], datetime] = _utcnow

    @classmethod
    def from_airflow(cls, zone_cache: ZoneCache | None = None) -> GridPageSources:
        """The sources of a running api-server."""
        from airflow_provider_gridaware.hooks.ledger_reader import open_ledger_reader
        from airflow_provider_gridaware.plugins.sources import (
            UI_ZONES_KEY,
            DeferredGridTasks,
            ZoneCache,
            _gridaware_config,
            parse_zone_list,
            recent_events,
        )

        cache = zone_cache or ZoneCache()
        return cls(
            waiting=DeferredGridTasks().read,
            ledger=open_ledger_reader,
            events=recent_events,
            zones=cache.views,
            configured_zones=lambda: parse_zone_list(_gridaware_config(UI_ZONES_KEY)),
        )


def page_data(sources: GridPageSources, readable_dag_ids: set[str] | None) -> dict[str, Any]:
    """The page's JSON for a user who may read ``readable_dag_ids`` (``None``: every DAG).

    :param sources: where the data comes from.
    :param readable_dag_ids: the DAGs whose tasks and savings the user may see.
    """
    from airflow_provider_gridaware.plugins.sources import zones_of

    now = sources.clock()
    problems: list[str] = []
    try:
        waiting, requests, unreadable = sources.waiting(readable_dag_ids)
        problems += unreadable
    except Exception as exc:
        log.exception("Grid page: reading the deferred tasks failed")
        waiting, requests = [], []
        problems.append(f"waiting tasks: {exc}")
    try:
        pairs = list(dict.fromkeys([*sources.configured_zones(), *zones_of(requests)]))
    except ValueError as exc:
        pairs = list(dict.fromkeys(zones_of(requests)))
        problems.append(str(exc))
    zones = sources.zones(pairs, now) if pairs else []
    events: list[GridEvent] = []
    try:
        events = sources.events(now)
    except Exception as exc:
        log.exception("Grid page: reading grid events failed")
        problems.append(f"grid events: {exc}")
    records: list[LedgerRecord] | None = None
    ledger_error = None
    try:
        dag_filter = None if readable_dag_ids is None else sorted(readable_dag_ids)
        records = sources.ledger().records(now - SAVINGS_PERIOD, now, dag_ids=dag_filter)
    except Exception as exc:  # the ledger is one part of the page: its absence is said, not fatal
        ledger_error = str(exc)
        log.warning("Grid page: no savings shown: %s", exc)
    return grid_page(
        now=now,
        zones=zones,
        waiting=waiting,
        events=events,
        ledger=records,
        ledger_error=ledger_error,
        problems=problems,
    )


def readable_dags(user: Any) -> set[str]:
    """The DAG ids ``user`` may read, from the configured auth manager."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET")


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
    def grid(user: GetUserDep) -> dict[str, Any]:
        """The page's data: zones, waiting tasks, events and 30-day savings, for the DAGs the user may read."""
        return page_data(current_sources(), readable_dags(user))

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
