"""Hook for an OpenADR 3 VTN (REST/JSON): events by program over OAuth2, and webhook subscriptions to the relay."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.hooks.base import HttpSettingsMixin
from airflow_provider_gridaware.hooks.grid_event_base import GridEventHook, ReceivedEvent, record_events, with_zones
from airflow_provider_gridaware.signals.errors import MalformedPayloadError
from airflow_provider_gridaware.sources import openadr3
from airflow_provider_gridaware.sources.flow import arun_flow, run_flow
from airflow_provider_gridaware.sources.settings import SourceSettings, build_base_url
from airflow_provider_gridaware.times import UTC
from airflow_provider_gridaware.transport.http import HttpTransport

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.events import EventStore

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class OpenADR3Hook(HttpSettingsMixin, GridEventHook):
    """Reads the events of an OpenADR 3 VTN (3.0.1 or 3.1) as a VEN or BL client with OAuth2 client credentials.

    Each poll gets a token (cached until shortly before it expires; a 401 gets one new token), lists the
    programs, then ``GET /events?programID=`` page by page for each followed program. :meth:`receive`
    records every event before returning; an event the VTN no longer lists is recorded as cancelled (the
    spec cancels by deleting), and a malformed event is reported after the others are stored.
    :meth:`subscribe` points a subscription per program at the relay's ``/openadr3/<conn_id>`` route.

    :param gridaware_conn_id: connection of type ``gridaware_openadr3``: Host is the VTN's base URL (with
        its path prefix), Login/Password the OAuth2 client id and secret; extras ``oauth2_url`` (the token
        URL, else asked of the VTN's ``/auth/server``), ``programs`` (names or ids, comma separated; empty = all),
        ``client_name``, ``scope``, ``client_auth`` (form or basic), ``near_minutes``, ``verify_ssl``.
    """

    default_conn_name = "gridaware_openadr3_default"
    conn_type = "gridaware_openadr3"
    hook_name = "Grid events: OpenADR 3 VTN"
    protocol = openadr3.PROTOCOL

    def __init__(self, gridaware_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(gridaware_conn_id, **kwargs)
        self._transport: HttpTransport | None = None
        self._clock = _now

    # -- connection -> settings -> transport ---------------------------------------------------------
    def settings_from_connection(self, conn: Connection) -> SourceSettings:
        return SourceSettings(
            conn_id=conn.conn_id,
            base_url=build_base_url(conn.host, conn.schema, conn.port, ""),
            login=conn.login or None,
            password=conn.password or None,
            extra=conn.extra_dejson if conn.extra else {},
        )

    def _on_token(self, settings: SourceSettings) -> openadr3.OnSecret:
        transport = self.transport_for(settings)

        def register(token: str) -> None:
            if token in transport.secrets:
                return
            transport.add_secret(token)
            from airflow.sdk.log import mask_secret

            mask_secret(token)

        return register

    def get_conn(self) -> HttpTransport:
        return self.transport_for(self.get_settings())

    # -- polling -----------------------------------------------------------------------------------
    def poll(self) -> openadr3.Poll:
        """One poll of the VTN: the events that parsed and the errors of those that did not."""
        settings = self.get_settings()
        flow = openadr3.poll_flow(settings, received_at=self._clock(), on_secret=self._on_token(settings))
        return run_flow(flow, self.transport_for(settings))

    async def apoll(self) -> openadr3.Poll:
        """Async twin of :meth:`poll` (for triggers)."""
        settings = await self.aget_settings()
        flow = openadr3.poll_flow(settings, received_at=self._clock(), on_secret=self._on_token(settings))
        return await arun_flow(flow, self.transport_for(settings))

    def poll_events(self) -> list[GridEvent]:
        """The VTN's current events of the followed programs; malformed ones are logged and left out."""
        result = self.poll()
        for error in result.errors:
            log.error("%s", error)
        return result.events

    async def apoll_events(self) -> list[GridEvent]:
        result = await self.apoll()
        for error in result.errors:
            log.error("%s", error)
        return result.events

    def receive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Poll once and record every event (and every deletion, as cancelled) before returning.

        :param store: where to record (default: the provider's store).
        :raises MalformedPayloadError: after the well-formed events are stored, naming each malformed one.
        """
        return self._record(self.poll(), store)

    async def areceive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        import asyncio

        result = await self.apoll()
        return await asyncio.to_thread(self._record, result, store)

    def _record(self, result: openadr3.Poll, store: EventStore | None) -> list[ReceivedEvent]:
        if store is None:
            from airflow_provider_gridaware.hooks.store import GridStoreHook

            store = GridStoreHook().get_event_store()
        # Zones first: the stored state carries them, so an unchanged event must too, or it would look modified.
        zones = self.event_zones()
        tagged = [with_zones(e, zones) for e in result.events]
        events = [openadr3.sequence_modification(e, store.latest(e.source, e.event_id)) for e in tagged]
        received = record_events(events, store)
        # The spec cancels by deleting: a live event of a followed program the VTN no longer lists is cancelled.
        listed = {e.event_id for e in result.events} | result.refused_ids
        gone = [
            openadr3.cancelled_copy(e, received_at=result.received_at)
            for e in store.current(now=result.received_at)
            if e.source == self.source and e.event_id not in listed and e.program in result.programs
        ]
        received += record_events(gone, store)
        if result.errors:
            raise MalformedPayloadError(
                f"{len(result.errors)} event(s) refused, {len(received)} recorded: "
                + "; ".join(str(e) for e in result.errors),
                source=self.source,
            )
        return received

    # -- subscriptions -----------------------------------------------------------------------------
    def subscribe(self, callback_url: str, *, bearer_token: str | None = None) -> list[dict[str, Any]]:
        """Have the VTN POST event notifications to ``callback_url`` (the relay's ``/openadr3/<conn_id>``).

        Idempotent: our subscription (same ``client_name`` and callback) is reused when it matches and
        updated when it does not; one per followed program.

        :param callback_url: where the VTN sends notifications.
        :param bearer_token: the token the VTN is to present to the callback (the relay checks it).
        :return: the subscriptions as the VTN holds them.
        """
        settings = self.get_settings()
        transport = self.transport_for(settings)
        transport.add_secret(bearer_token)
        flow = openadr3.subscribe_flow(
            settings, callback_url, bearer_token=bearer_token, on_secret=self._on_token(settings)
        )
        return run_flow(flow, transport)

    def unsubscribe(self, callback_url: str | None = None) -> list[str]:
        """Delete our subscriptions (those with our ``client_name``, and ``callback_url`` if given); their ids."""
        settings = self.get_settings()
        flow = openadr3.unsubscribe_flow(settings, callback_url, on_secret=self._on_token(settings))
        return run_flow(flow, self.transport_for(settings))
