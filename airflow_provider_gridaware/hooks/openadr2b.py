"""OpenADR 2.0b VEN hook: registers once with a VTN, polls it with ``oadrRequestEvent``, answers opt-in/out.

Connection (type ``gridaware_openadr2b``):

- Host: the VTN URL up to the 2.0b prefix (``https://vtn.example.com/OpenADR2/Simple/2.0b``);
- Login: this VEN's name; Password: the VEN's private key as PEM (optional; masked);
- Extra: ``vtn_id``, ``vtn_fingerprint`` (the VTN's signing certificate: every message must then be signed
  by it), ``ven_id`` (if the VTN assigned one out of band), ``cert_file``/``key_file`` or ``cert_pem``/
  ``private_key`` (PEM), ``key_passphrase``, ``ca_file`` or ``ca_pem``, ``check_hostname``,
  ``poll_interval`` (s), ``opt_policy`` (``opt_in``, ``opt_out_test_events``, ``opt_out``), ``timeout``,
  ``connect_timeout``.

The venID and registrationID from :meth:`OpenADR2bHook.register` are kept in the provider's store
(``gridaware_store_meta``), so every worker and triggerer polls as the same VEN. Needs the ``[openadr]``
extra (openleadr); nothing of it is imported until the hook polls or registers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from airflow_provider_gridaware.hooks.connection_extra import ConnectionExtra
from airflow_provider_gridaware.hooks.grid_event_base import GridEventHook, ReceivedEvent, record_events
from airflow_provider_gridaware.signals.errors import SourceConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.sources.openadr2b import Distribution
    from airflow_provider_gridaware.sources.openadr2b_ven import Registration, VenSession, VenSettings
    from airflow_provider_gridaware.store.events import EventStore

log = logging.getLogger(__name__)
T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def registration_keys(conn_id: str) -> tuple[str, str]:
    """The store-meta keys of a connection's venID and registrationID."""
    from airflow_provider_gridaware.store.meta import meta_key

    return meta_key("openadr2b", conn_id, "ven_id"), meta_key("openadr2b", conn_id, "registration_id")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to the end from sync code: ``asyncio.run``, or in a private thread if a loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=runner, name="gridaware-openadr2b")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class OpenADR2bHook(GridEventHook):
    """Reads demand-response events from an OpenADR 2.0b VTN as a VEN (openleadr's client).

    :meth:`receive` / :meth:`areceive` poll, record every event in the store, then answer the events that
    ask for a response (``oadrCreatedEvent``, opt-in or opt-out by the connection's ``opt_policy``), so the
    VTN hears "opt in" only for events the store has. :meth:`poll_events` only reads.

    :param gridaware_conn_id: the ``gridaware_openadr2b`` connection of the VTN.
    """

    conn_type: ClassVar[str] = "gridaware_openadr2b"
    hook_name: ClassVar[str] = "Grid: OpenADR 2.0b VTN (VEN client)"
    protocol: ClassVar[str] = "openadr2b"
    default_conn_name: ClassVar[str] = "gridaware_openadr2b_default"
    default_poll_interval: ClassVar[float] = 10.0

    def __init__(self, gridaware_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(gridaware_conn_id, **kwargs)
        self._settings: VenSettings | None = None
        self._ven_id: str | None = None
        # (event_id, modification_number) answered by this hook: answers are not repeated every poll.
        self._answered: set[tuple[str, int]] = set()

    # -- connection -> settings --------------------------------------------------------------------------
    def settings_from_connection(self, conn: Connection) -> VenSettings:
        """The VEN's settings from an Airflow connection; secrets are masked in logs."""
        from airflow.sdk.log import mask_secret

        from airflow_provider_gridaware.optional_providers import requires_extra

        with requires_extra("openadr", "OpenADR2bHook"):
            import openleadr  # noqa: F401  (fail here, with the extra's name, not mid-poll)

        from airflow_provider_gridaware.sources.openadr2b import OptPolicy, normalise_fingerprint
        from airflow_provider_gridaware.sources.openadr2b_ven import VenSettings
        from airflow_provider_gridaware.sources.settings import build_base_url

        source = f"{self.protocol}:{conn.conn_id}"
        extra: dict[str, Any] = conn.extra_dejson if conn.extra else {}

        fields = ConnectionExtra(extra, source)
        if not conn.host:
            raise SourceConfigError("the connection needs the VTN URL in Host", source=source)
        ven_name = conn.login or fields.text("ven_name")
        if not ven_name:
            raise SourceConfigError("the connection needs this VEN's name in Login", source=source)
        key_pem = conn.password.encode() if conn.password else fields.pem("private_key", "key_file", "private key file")
        cert_pem = fields.pem("cert_pem", "cert_file", "certificate file")
        if bool(key_pem) != bool(cert_pem):
            raise SourceConfigError("give both the VEN's certificate and its private key, or neither", source=source)
        passphrase = fields.text("key_passphrase")
        for secret in (conn.password, fields.text("private_key"), passphrase):
            if secret:
                mask_secret(secret)
        fingerprint = fields.text("vtn_fingerprint")
        return VenSettings(
            conn_id=conn.conn_id,
            vtn_url=build_base_url(conn.host, conn.schema, conn.port, ""),
            ven_name=ven_name,
            vtn_id=fields.text("vtn_id"),
            vtn_fingerprint=normalise_fingerprint(fingerprint, source=source) if fingerprint else None,
            ven_id=fields.text("ven_id"),
            cert_pem=cert_pem,
            key_pem=key_pem,
            key_passphrase=passphrase,
            ca_pem=fields.pem("ca_pem", "ca_file", "CA file"),
            check_hostname=str(extra.get("check_hostname", "true")).strip().lower() in _TRUE,
            poll_interval=fields.positive_number("poll_interval", self.default_poll_interval),
            opt_policy=OptPolicy.parse(fields.text("opt_policy"), source=source),
            connect_timeout=fields.positive_number("connect_timeout", 5.0),
            read_timeout=fields.positive_number("timeout", 10.0),
        )

    def get_settings(self) -> VenSettings:
        if self._settings is None:
            self._settings = self.settings_from_connection(self.get_connection(self.gridaware_conn_id))
        return self._settings

    async def aget_settings(self) -> VenSettings:
        if self._settings is None:
            self._settings = self.settings_from_connection(await self.aget_connection(self.gridaware_conn_id))
        return self._settings

    def poll_interval(self) -> float:
        return self.get_settings().poll_interval if self._settings is None else self._settings.poll_interval

    # -- registration ----------------------------------------------------------------------------------
    def stored_registration(self, store_url: str | None = None) -> tuple[str | None, str | None]:
        """(venID, registrationID) kept in the store for this connection, or ``(None, None)``."""
        from airflow_provider_gridaware.store.meta import read_meta

        url = store_url or self._store_url()
        ven_key, registration_key = registration_keys(self.gridaware_conn_id)
        return read_meta(ven_key, url=url), read_meta(registration_key, url=url)

    def _store_url(self) -> str:
        from airflow_provider_gridaware.hooks.store import GridStoreHook

        return GridStoreHook().get_url()

    def register(self, store_url: str | None = None) -> Registration:
        """Register with the VTN (``oadrQueryRegistration`` + ``oadrCreatePartyRegistration``) and keep the venID
        and registrationID in the store. Safe to repeat: the VTN answers with the same ids.

        :param store_url: the store to keep them in (default: the provider's store).
        """
        return run_sync(self.aregister(store_url))

    async def aregister(self, store_url: str | None = None) -> Registration:
        """Async twin of :meth:`register`."""
        from airflow_provider_gridaware.sources.openadr2b_ven import VenSession
        from airflow_provider_gridaware.store.meta import write_meta

        settings = await self.aget_settings()
        async with VenSession(settings, ven_id=settings.ven_id) as session:
            registration = await session.register()
        if store_url is None:
            from airflow_provider_gridaware.hooks.store import GridStoreHook

            store_url = await GridStoreHook().aget_url()
        ven_key, registration_key = registration_keys(self.gridaware_conn_id)
        values = {ven_key: registration.ven_id, registration_key: registration.registration_id}
        await asyncio.to_thread(write_meta, values, url=store_url)
        self._ven_id = registration.ven_id
        log.info(
            "%s: registered VEN %r as venID %s, registrationID %s",
            settings.source,
            settings.ven_name,
            registration.ven_id,
            registration.registration_id,
        )
        return registration

    async def _aven_id(self, settings: VenSettings, store_url: str | None) -> str:
        if self._ven_id:
            return self._ven_id
        if settings.ven_id:
            self._ven_id = settings.ven_id
            return self._ven_id
        if store_url is None:
            from airflow_provider_gridaware.hooks.store import GridStoreHook

            store_url = await GridStoreHook().aget_url()
        ven_id, _registration = await asyncio.to_thread(self.stored_registration, store_url)
        if not ven_id:
            from airflow_provider_gridaware.sources.openadr2b_ven import VenNotRegisteredError

            raise VenNotRegisteredError(
                f"VEN {settings.ven_name!r} is not registered with this VTN: run `gridaware openadr2b register "
                f"--conn-id {self.gridaware_conn_id}` once (or give the VTN's venID as extra 'ven_id')",
                source=settings.source,
            )
        self._ven_id = ven_id
        return ven_id

    # -- polling ---------------------------------------------------------------------------------------
    async def _arequest(self, session: VenSession) -> Distribution:
        from airflow_provider_gridaware.sources.openadr2b import events_from_distribution

        settings = session.settings
        answer = await session.request_events()
        distribution = events_from_distribution(
            answer.payload, source=settings.source, received_at=answer.received_at, expected_vtn_id=settings.vtn_id
        )
        for rejected in distribution.rejected:
            log.error(
                "%s: event %s mod %d refused, not stored: %s",
                settings.source,
                rejected.event_id,
                rejected.modification_number,
                rejected.reason,
            )
        return distribution

    def poll_events(self) -> list[GridEvent]:
        """The VTN's current events for this VEN (one ``oadrRequestEvent``); answers nothing."""
        return run_sync(self.apoll_events())

    async def apoll_events(self, store_url: str | None = None) -> list[GridEvent]:
        """Async twin of :meth:`poll_events`."""
        from airflow_provider_gridaware.sources.openadr2b_ven import VenSession

        settings = await self.aget_settings()
        ven_id = await self._aven_id(settings, store_url)
        async with VenSession(settings, ven_id=ven_id) as session:
            return (await self._arequest(session)).events

    def receive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Poll once, record every event, then answer those that ask for a response."""
        return run_sync(self.areceive(store))

    async def areceive(self, store: EventStore | None = None) -> list[ReceivedEvent]:
        """Async twin of :meth:`receive`: one session for the request and the answers."""
        from airflow_provider_gridaware.sources.openadr2b_ven import VenSession

        settings = await self.aget_settings()
        ven_id = await self._aven_id(settings, store.url if store is not None else None)
        async with VenSession(settings, ven_id=ven_id) as session:
            distribution = await self._arequest(session)
            zones = await asyncio.to_thread(self.event_zones)
            received = await asyncio.to_thread(record_events, distribution.events, store, zones=zones)
            await self._aanswer(session, distribution)
        return received

    async def _aanswer(self, session: VenSession, distribution: Distribution) -> None:
        """``oadrCreatedEvent`` for every event (or modification) asking for an answer we have not given yet."""
        from airflow_provider_gridaware.signals.errors import GridSignalError
        from airflow_provider_gridaware.signals.grid_event import EventStatus

        settings = session.settings
        answers: list[tuple[str, int, str]] = [
            (event.event_id, event.modification_number, settings.opt_policy.decide(event))
            for event in distribution.events
            if event.response_required
            and event.status is not EventStatus.COMPLETED
            and (event.event_id, event.modification_number) not in self._answered
        ]
        # An event we cannot read is one we cannot act on: say so rather than stay silent.
        answers += [
            (r.event_id, r.modification_number, "optOut")
            for r in distribution.rejected
            if r.response_required and (r.event_id, r.modification_number) not in self._answered
        ]
        if not answers:
            return
        try:
            await session.created_event(distribution.request_id, answers)
        except GridSignalError as exc:
            # The events are stored; the answer is retried at the next poll.
            log.warning("%s: could not answer %d event(s) (retried next poll): %s", settings.source, len(answers), exc)
            return
        self._answered.update((event_id, modification) for event_id, modification, _opt in answers)
        for event_id, modification, opt in answers:
            log.info("%s: answered event %s mod %d with %s", settings.source, event_id, modification, opt)

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test connection": one ``oadrRequestEvent`` (needs the VEN registered)."""
        return super().test_connection()
