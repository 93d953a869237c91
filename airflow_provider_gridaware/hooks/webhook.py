"""GridWebhookHook: the ``gridaware_webhook`` connection of a party that pushes grid events to the relay.

The connection holds how its senders authenticate (a shared HMAC secret, or a bearer token) and the relay's
limits for them. Polling it returns what the relay stored for it, so ``gridaware events --conn-id`` and
the grid-event trigger treat pushed events like polled ones.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_gridaware.hooks.grid_event_base import GridEventHook, ReceivedEvent, parse_zones, record_events

if TYPE_CHECKING:
    from airflow_provider_gridaware.relay.auth import RelayAuth
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.events import EventStore

AUTH_MODES = ("hmac", "bearer")


class GridWebhookHook(GridEventHook):
    """A party that pushes grid events to ``gridaware relay`` (``POST /events/<conn id>``).

    Connection fields: Password = the shared secret (``hmac``, default) or the bearer token (``bearer``);
    extra ``auth_mode``, ``tolerance_s`` (default 300), ``max_body_bytes`` (default 262144),
    ``require_delivery_id`` (bearer mode), ``openadr3_conn_id`` (OpenADR 3 notifications on
    ``/openadr3/<conn id>`` are stored as that OpenADR 3 connection's events), ``signature_header``,
    ``timestamp_header``, ``delivery_header`` (defaults ``X-Gridaware-Signature``, ``X-Gridaware-Timestamp``,
    ``X-Gridaware-Delivery``).
    """

    conn_type: ClassVar[str] = "gridaware_webhook"
    hook_name: ClassVar[str] = "Grid events: signed webhook (relay)"
    protocol: ClassVar[str] = "webhook"
    default_poll_interval: ClassVar[float] = 1.0

    def relay_auth(self) -> RelayAuth:
        """How this connection's senders authenticate, for the relay."""
        from airflow_provider_gridaware.relay.auth import (
            DEFAULT_MAX_BODY_BYTES,
            DEFAULT_TOLERANCE_S,
            DELIVERY_HEADER,
            SIGNATURE_HEADER,
            TIMESTAMP_HEADER,
            RelayAuth,
        )
        from airflow_provider_gridaware.signals.errors import SourceConfigError

        conn = self.get_connection(self.gridaware_conn_id)
        if (conn.conn_type or "") != self.conn_type:
            raise SourceConfigError(
                f"connection {self.gridaware_conn_id!r} is of type {conn.conn_type!r}, not {self.conn_type}"
            )
        extra: dict[str, Any] = conn.extra_dejson if conn.extra else {}
        mode = str(extra.get("auth_mode") or "hmac").lower()
        if mode not in AUTH_MODES:
            raise SourceConfigError(f"connection {self.gridaware_conn_id!r}: auth_mode {mode!r} is not hmac or bearer")
        if not conn.password:
            raise SourceConfigError(
                f"connection {self.gridaware_conn_id!r}: set the shared secret (or bearer token) as its password"
            )
        try:
            return RelayAuth(
                conn_id=self.gridaware_conn_id,
                secret=conn.password.encode() if mode == "hmac" else None,
                bearer_token=conn.password if mode == "bearer" else None,
                tolerance_s=float(extra.get("tolerance_s") or DEFAULT_TOLERANCE_S),
                max_body_bytes=int(extra.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES),
                require_delivery_id=str(extra.get("require_delivery_id", "false")).lower() in ("1", "true", "yes"),
                signature_header=str(extra.get("signature_header") or SIGNATURE_HEADER),
                timestamp_header=str(extra.get("timestamp_header") or TIMESTAMP_HEADER),
                delivery_header=str(extra.get("delivery_header") or DELIVERY_HEADER),
                zones=parse_zones(extra.get("zones")),
            )
        except ValueError as exc:
            # float()/int() errors do not name the field; say which connection the bad value is in.
            raise SourceConfigError(f"connection {self.gridaware_conn_id!r}: {exc}") from None

    def openadr3_target(self) -> tuple[str, tuple[str, ...]]:
        """The ``source`` of OpenADR 3 notifications received for this connection, and the zones to tag them with.

        With ``openadr3_conn_id`` they are that OpenADR 3 connection's events (its zones, as its own polls
        tag them, so a poll and a notification of one event compare equal); otherwise this connection's.
        """
        conn = self.get_connection(self.gridaware_conn_id)
        extra = conn.extra_dejson if conn.extra else {}
        openadr3_conn_id = extra.get("openadr3_conn_id")
        if not openadr3_conn_id:
            return f"openadr3:{self.gridaware_conn_id}", parse_zones(extra.get("zones"))
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            polled = self.get_connection(str(openadr3_conn_id))
        except AirflowNotFoundException:
            # Not polled from here (push only): store the notifications anyway, untagged, rather than refuse them.
            self.log.warning(
                "connection %r: openadr3_conn_id %r does not exist; no zones", self.gridaware_conn_id, openadr3_conn_id
            )
            return f"openadr3:{openadr3_conn_id}", ()
        return f"openadr3:{openadr3_conn_id}", parse_zones((polled.extra_dejson if polled.extra else {}).get("zones"))

    def poll_events(self) -> list[GridEvent]:
        """The current events the relay stored for this connection (in the provider's store)."""
        return self._stored(None)

    def receive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """The relay's events for this connection read from ``store`` (recording them again changes nothing)."""
        return record_events(self._stored(store), store, zones=self.event_zones())

    async def areceive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        return await asyncio.to_thread(self.receive, store)

    def _stored(self, store: EventStore | None) -> list[GridEvent]:
        if store is None:
            from airflow_provider_gridaware.hooks.store import GridStoreHook

            store = GridStoreHook().get_event_store()
        return [e for e in store.current() if e.source == self.source]
