"""Base class of every demand-response (DR) event hook, and the registry that maps connection types to them.

A DR hook reads one party (a VTN, a 2030.5 server, an OpenADR 3 VTN) through one Airflow connection and
returns :class:`~airflow_provider_gridaware.signals.grid_event.GridEvent` records. :meth:`GridEventHook.receive`
polls once and records every event in the store *before* returning it, so nothing acts on an event the
store does not have. The grid-event trigger and ``gridaware events`` call it; push protocols (the relay,
OpenADR 3 webhooks) write to the same store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from airflow_provider_gridaware.signals.errors import SourceConfigError

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
    from airflow_provider_gridaware.planning.response_policy import ResponsePolicy
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.events import EventStore, Recorded

log = logging.getLogger(__name__)

#: connection type -> ``module:class`` of its hook, imported only when used (protocol stacks are extras).
GRID_EVENT_HOOKS: dict[str, str] = {
    "gridaware_openadr2b": "airflow_provider_gridaware.hooks.openadr2b:OpenADR2bHook",
    "gridaware_openadr3": "airflow_provider_gridaware.hooks.openadr3:OpenADR3Hook",
    "gridaware_ieee2030_5": "airflow_provider_gridaware.hooks.ieee2030_5:IEEE20305Hook",
    "gridaware_webhook": "airflow_provider_gridaware.hooks.webhook:GridWebhookHook",
}


@dataclass(frozen=True)
class ReceivedEvent:
    """An event as received and what storing it did."""

    event: GridEvent
    recorded: Recorded


class GridEventHook(BaseHook):
    """Reads DR events from one party through an Airflow connection.

    Subclasses set :attr:`protocol` and :attr:`conn_type` and implement :meth:`poll_events` (and
    :meth:`apoll_events` when they have a native async client).

    :param gridaware_conn_id: the Airflow connection of the party.
    """

    conn_name_attr = "gridaware_conn_id"
    default_conn_name: ClassVar[str] = "gridaware_events_default"
    conn_type: ClassVar[str] = ""
    hook_name: ClassVar[str] = ""
    #: ``openadr2b``, ``openadr3``, ``ieee2030_5`` or ``webhook`` (the ``protocol`` of its events).
    protocol: ClassVar[str] = ""
    #: seconds between polls unless the connection or the party says otherwise.
    default_poll_interval: ClassVar[float] = 10.0

    def __init__(self, gridaware_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gridaware_conn_id = gridaware_conn_id or self.default_conn_name

    @property
    def source(self) -> str:
        """The ``source`` of this hook's events: ``<protocol>:<connection id>``."""
        return f"{self.protocol}:{self.gridaware_conn_id}"

    def event_zones(self) -> tuple[str, ...]:
        """The grid zones this party's events apply to: the connection's ``zones`` extra (comma list).

        Stored events carry them as ``zone`` targets, so the planner can overlay an event's price on the
        zone's price series.
        """
        conn = self.get_connection(self.gridaware_conn_id)
        return parse_zones((conn.extra_dejson if conn.extra else {}).get("zones"))

    def poll_interval(self) -> float:
        """Seconds until the next poll (a 2030.5 server's ``pollRate`` overrides the default)."""
        return self.default_poll_interval

    # -- what subclasses implement ------------------------------------------------------------------------
    def poll_events(self) -> list[GridEvent]:
        """Ask the party for its current events, normalised. Raises a ``GridSignalError`` subclass on failure."""
        raise NotImplementedError

    async def apoll_events(self) -> list[GridEvent]:
        """Async twin of :meth:`poll_events`; by default the sync one in a thread, off the event loop."""
        return await asyncio.to_thread(self.poll_events)

    # -- receiving = polling + storing ----------------------------------------------------------------
    def receive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Poll once and record every event in the store before returning it.

        :param store: where to record (default: the provider's store, see ``GridStoreHook``).
        """
        return record_events(self.poll_events(), store, zones=self.event_zones())

    async def areceive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Async twin of :meth:`receive`; the store write runs in a thread."""
        events = await self.apoll_events()
        zones = await asyncio.to_thread(self.event_zones)
        return await asyncio.to_thread(record_events, events, store, zones=zones)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection": poll once, report how many events the party has."""
        try:
            events = self.poll_events()
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"{self.source}: connected, {len(events)} event(s) now"


def parse_zones(value: object) -> tuple[str, ...]:
    """Zones from a connection field: a comma list or a JSON list; blanks dropped."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(dict.fromkeys(str(z).strip() for z in items if str(z).strip()))


def with_zones(event: GridEvent, zones: Sequence[str]) -> GridEvent:
    """``event`` with a ``zone`` target for each of ``zones``, unless the party named zones itself."""
    from airflow_provider_gridaware.signals.grid_event import EventTarget

    if not zones or any(t.kind == "zone" for t in event.targets):
        return event
    added = tuple(EventTarget(kind="zone", value=z) for z in zones)
    return event.model_copy(update={"targets": event.targets + added})


def record_events(
    events: list[GridEvent], store: EventStore | None = None, *, zones: Sequence[str] = ()
) -> list[ReceivedEvent]:
    """Record ``events`` in order and log each outcome; a store error propagates (nothing is acknowledged).

    :param zones: grid zones the connection's events apply to (added as ``zone`` targets).
    """
    if store is None:
        from airflow_provider_gridaware.hooks.store import GridStoreHook

        store = GridStoreHook().get_event_store()
    received = []
    for event in (with_zones(e, zones) for e in events):
        recorded = store.record(event)
        level = logging.INFO if recorded.outcome.stored else logging.DEBUG
        log.log(level, "%s: %s", recorded.outcome.value, event.describe())
        received.append(ReceivedEvent(event, recorded))
    return received


def event_hook_class(conn_type: str) -> type[GridEventHook]:
    """The hook class for a DR connection type; a clear error for any other type or a missing extra."""
    target = GRID_EVENT_HOOKS.get(conn_type)
    if target is None:
        known = ", ".join(sorted(GRID_EVENT_HOOKS))
        raise SourceConfigError(f"connection type {conn_type!r} is not a grid-event source (one of {known})")
    module_name, _, class_name = target.partition(":")
    hook_class = getattr(import_module(module_name), class_name)
    assert issubclass(hook_class, GridEventHook)
    return hook_class


def event_hook_for(conn_id: str) -> GridEventHook:
    """The DR hook of connection ``conn_id``, chosen by its connection type."""
    from airflow_provider_gridaware.hooks.registry import get_connection_checked

    conn = get_connection_checked(conn_id)
    return event_hook_class(conn.conn_type or "")(gridaware_conn_id=conn_id)


async def aevent_hook_for(conn_id: str) -> GridEventHook:
    """Async twin of :func:`event_hook_for`, safe inside the triggerer's event loop."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_gridaware.hooks.registry import missing_connection

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, exc) from None
    return event_hook_class(conn.conn_type or "")(gridaware_conn_id=conn_id)


_policy_problems: set[str] = set()


def configured_response_policy() -> ResponsePolicy:
    """``[gridaware] response_policy``, the rule waiting and running grid-aware work pauses by, as the response
    operator applies it (its own ``policy`` argument or Variable aside). A policy that does not parse is
    logged once, naming what is wrong, and the defaults apply: a waiting task still keeps out of events.
    """
    from airflow_provider_gridaware.hooks.store import _config
    from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY, ResponsePolicy

    text = _config("response_policy")
    if text is None:
        return DEFAULT_POLICY
    try:
        return ResponsePolicy.from_config(text)
    except ValueError as exc:
        if str(exc) not in _policy_problems:
            _policy_problems.add(str(exc))
            log.error("[gridaware] response_policy is not valid, the defaults apply: %s", exc)
        return DEFAULT_POLICY


def current_grid_events(store_conn_id: str | None = None) -> GridEventSnapshot:
    """The store's current grid events as a price snapshot for the planner (blocking: one store read)."""
    from airflow_provider_gridaware.hooks.store import GridStoreHook
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot

    return GridEventSnapshot(
        GridStoreHook(store_conn_id).get_event_store().current(), policy=configured_response_policy()
    )


def event_log_position() -> int:
    """The default store's newest grid-event position (blocking: one indexed query; watchers poll it)."""
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return GridStoreHook().get_event_store().last_seq()


def events_not_over(now: datetime) -> list[GridEvent]:
    """The default store's events not over at ``now`` (blocking: one store read)."""
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return GridStoreHook().get_event_store().current(now=now)
