"""Find the provider's hook class for a connection type, without importing every hook."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from airflow_provider_gridaware.get_provider_info import CONNECTION_TYPES, EVENT_CONNECTION_TYPES
from airflow_provider_gridaware.signals.errors import SourceConfigError

if TYPE_CHECKING:
    from airflow_provider_gridaware.hooks.base import GridSignalHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

#: signal connection types only: demand-response connections have hooks of another kind (grid_event_base).
HOOK_CLASS_PATHS: dict[str, str] = {
    c["connection-type"]: c["hook-class-name"]
    for c in CONNECTION_TYPES
    if c["connection-type"] not in EVENT_CONNECTION_TYPES
}


def hook_class_for(conn_type: str | None, *, conn_id: str = "") -> type[GridSignalHook]:
    """The hook class serving ``conn_type`` (``gridaware_ukci`` ...), imported on demand."""
    class_path = HOOK_CLASS_PATHS.get(conn_type or "")
    if class_path is None:
        raise SourceConfigError(
            f"connection type {conn_type!r} is not a grid signal source; expected one of: "
            f"{', '.join(sorted(HOOK_CLASS_PATHS))}",
            source=conn_id or None,
        )
    module_name, class_name = class_path.rsplit(".", 1)
    hook_class: type[GridSignalHook] = getattr(importlib.import_module(module_name), class_name)
    return hook_class


def get_connection_checked(conn_id: str) -> Connection:
    """The connection ``conn_id`` (blocking look-up); a missing one is a :class:`SourceConfigError` naming it."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, exc) from None


def hook_for_connection(conn_id: str) -> GridSignalHook:
    """A hook instance for ``conn_id``, chosen by the connection's type (blocking look-up).

    :raises SourceConfigError: no such connection, or not a grid signal connection type.
    """
    conn = get_connection_checked(conn_id)
    return hook_class_for(conn.conn_type, conn_id=conn_id)(conn_id)


async def ahook_for_connection(conn_id: str) -> GridSignalHook:
    """Async twin of :func:`hook_for_connection`, safe inside the triggerer's event loop."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise missing_connection(conn_id, exc) from None
    return hook_class_for(conn.conn_type, conn_id=conn_id)(conn_id)


def missing_connection(conn_id: str, exc: Exception) -> SourceConfigError:
    return SourceConfigError(
        f"connection {conn_id!r} does not exist ({exc}); create it, or check the conn_id for a typo",
        source=conn_id,
    )
