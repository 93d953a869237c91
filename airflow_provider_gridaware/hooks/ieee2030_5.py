"""IEEE 2030.5 hook: reads DER controls, load controls and tariffs from a 2030.5 server over mutual TLS.

Connection (type ``gridaware_ieee2030_5``):

- Host: the server URL (``https://2030-5.example.com:8443``); Password: the client private key as PEM
  (optional, masked);
- Extra: ``dcap_path`` (default ``/dcap``), ``cert_file``/``key_file`` or ``cert_pem``/``key_pem``,
  ``ca_file`` or ``ca_pem``, ``server_fingerprint`` (SHA-256 of the server certificate), ``end_device``
  (our LFDI or SFDI), ``page_size``, ``check_hostname``, ``timeout``, ``connect_timeout``, ``zones``.

Needs the ``[ieee2030_5]`` extra (envoy-schema); nothing of it is imported until the hook polls.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.hooks.connection_extra import ConnectionExtra
from airflow_provider_gridaware.hooks.grid_event_base import GridEventHook, ReceivedEvent, record_events
from airflow_provider_gridaware.signals.errors import MalformedPayloadError, SourceConfigError
from airflow_provider_gridaware.times import UTC

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.sources.ieee2030_5 import WalkResult
    from airflow_provider_gridaware.sources.ieee2030_5_client import ClientSettings, Sep2Client
    from airflow_provider_gridaware.sources.ieee2030_5_walk import Walker
    from airflow_provider_gridaware.store.events import EventStore

log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}


class IEEE20305Hook(GridEventHook):
    """Walks an IEEE 2030.5 server from its DeviceCapability and returns its controls and prices as events.

    Keeps what it read between polls: a resource is fetched again only once its ``pollRate`` is up, and
    :meth:`poll_interval` is the smallest ``pollRate`` seen. A resource that cannot be read or parsed is
    reported by its href after the others are recorded.

    :param gridaware_conn_id: connection of type ``gridaware_ieee2030_5``.
    """

    default_conn_name = "gridaware_ieee2030_5_default"
    conn_type = "gridaware_ieee2030_5"
    hook_name = "Grid: IEEE 2030.5 server (mutual TLS)"
    protocol = "ieee2030_5"
    default_poll_interval = 900.0

    def __init__(self, gridaware_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(gridaware_conn_id, **kwargs)
        self._settings: ClientSettings | None = None
        self._client: Sep2Client | None = None
        self._walker: Walker | None = None
        self.clock = time.monotonic
        self.last_result: WalkResult | None = None

    # -- connection -> settings ----------------------------------------------------------------------
    def settings_from_connection(self, conn: Connection) -> ClientSettings:
        from airflow.sdk.log import mask_secret

        from airflow_provider_gridaware.sources.ieee2030_5_client import ClientSettings, normalise_sha256
        from airflow_provider_gridaware.sources.settings import build_base_url

        source = f"{self.protocol}:{conn.conn_id}"
        extra: dict[str, Any] = conn.extra_dejson if conn.extra else {}

        fields = ConnectionExtra(extra, source)
        if not conn.host:
            raise SourceConfigError("the connection needs the server URL in Host", source=source)
        key_pem = conn.password.encode() if conn.password else fields.pem("key_pem", "key_file", "client key file")
        cert_pem = fields.pem("cert_pem", "cert_file", "client certificate file")
        if bool(key_pem) != bool(cert_pem):
            raise SourceConfigError("give both the client certificate and its private key, or neither", source=source)
        for secret in (conn.password, fields.text("key_pem")):
            if secret:
                mask_secret(secret)
        fingerprint = fields.text("server_fingerprint")
        return ClientSettings(
            source=source,
            base_url=build_base_url(conn.host, conn.schema, conn.port, ""),
            dcap_path=fields.text("dcap_path") or "/dcap",
            cert_pem=cert_pem,
            key_pem=key_pem,
            ca_pem=fields.pem("ca_pem", "ca_file", "CA file"),
            server_fingerprint=normalise_sha256(fingerprint, source=source) if fingerprint else None,
            check_hostname=str(extra.get("check_hostname", "true")).strip().lower() in _TRUE,
            end_device=fields.text("end_device"),
            page_size=int(fields.positive_number("page_size", 25)),
            connect_timeout=fields.positive_number("connect_timeout", 5.0),
            read_timeout=fields.positive_number("timeout", 10.0),
        )

    def get_settings(self) -> ClientSettings:
        if self._settings is None:
            self._settings = self.settings_from_connection(self.get_connection(self.gridaware_conn_id))
        return self._settings

    def get_conn(self) -> Walker:
        """The walker of this connection (its client and its pollRate cache), built once per hook."""
        if self._walker is None:
            from airflow_provider_gridaware.sources.ieee2030_5 import models
            from airflow_provider_gridaware.sources.ieee2030_5_client import Sep2Client
            from airflow_provider_gridaware.sources.ieee2030_5_walk import Walker

            models()  # fail here, naming the extra, not mid-walk
            settings = self.get_settings()
            self._client = Sep2Client(settings)
            self._walker = Walker(
                self._client.get,
                source=settings.source,
                clock=self.clock,
                page_size=settings.page_size,
                end_device=settings.end_device,
            )
        return self._walker

    # -- polling -------------------------------------------------------------------------------------
    def poll(self) -> WalkResult:
        """One walk: events, default controls and the errors of resources that could not be read."""
        walker = self.get_conn()
        result = walker.walk(self.get_settings().dcap_path, received_at=datetime.now(UTC))
        self.last_result = result
        return result

    def poll_events(self) -> list[GridEvent]:
        """The server's current events; resources that failed are logged and left out."""
        result = self.poll()
        for error in result.errors:
            log.error("%s", error)
        return result.events

    def poll_interval(self) -> float:
        """The smallest ``pollRate`` the server gave (900 s, the standard's default, before the first walk)."""
        if self._walker is None:
            return self.default_poll_interval
        return float(self._walker.poll_rate())

    def receive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Poll once and record every event before returning.

        :param store: where to record (default: the provider's store).
        :raises MalformedPayloadError: after the good events are stored, naming each resource that failed.
        """
        result = self.poll()
        received = record_events(result.events, store, zones=self.event_zones())
        if result.errors:
            raise MalformedPayloadError(
                f"{len(result.errors)} resource(s) failed, {len(received)} event(s) recorded: "
                + "; ".join(str(e) for e in result.errors),
                source=self.source,
            )
        return received

    async def areceive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        import asyncio

        return await asyncio.to_thread(self.receive, store)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
