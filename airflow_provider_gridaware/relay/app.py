"""The relay's ASGI application: grid events by POST, checked, stored, and only then answered 2xx.

Routes:

* ``POST /events/{conn_id}``: one event in the gridaware event JSON (``GridEvent`` fields without
  ``source``, ``protocol`` and ``received_at``, which the relay sets), a list of them, or
  ``{"events": [...]}``.
* ``POST /openadr3/{conn_id}``: an OpenADR 3 webhook notification (a subscription's callback; 501 when the
  install has no OpenADR 3 parser).
* ``GET /healthz``: 200 when the store answers.

Every request is authenticated by its connection (``gridaware_webhook``: HMAC signature or bearer token,
see ``relay/auth.py``). What is refused gets a 4xx JSON ``{"error": ...}`` saying exactly why, one log
line, and changes nothing: unknown connection 404, unsigned/forged/stale/wrong token 401, replayed
delivery 409, oversized 413 (the body is not read past the limit), malformed JSON 400, invalid events 422.
Accepted events and the delivery id are committed in one transaction before the 200; if the store cannot
take them the answer is 503 with ``Retry-After`` and nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airflow_provider_gridaware.relay.auth import RelayAuth, RelayAuthError, SeenDeliveries, check_request
from airflow_provider_gridaware.signals.errors import GridSignalError, SourceConfigError
from airflow_provider_gridaware.times import UTC

if TYPE_CHECKING:
    from fastapi import FastAPI

    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.events import EventStore, Recorded

log = logging.getLogger(__name__)

#: fields of the gridaware event JSON a sender may set (the relay sets source, protocol and received_at).
EVENT_FIELDS = frozenset(
    {
        "event_id",
        "modification_number",
        "program",
        "status",
        "signals",
        "targets",
        "test_event",
        "priority",
        "created_at",
        "response_required",
    }
)
#: connection settings are looked up again after this long (seconds, default): a rotated secret takes effect.
AUTH_CACHE_S = 60.0
#: how long the last settings read stay in use while the connection cannot be found or read: Airflow's
#: secrets chain reports a metadata database it cannot reach as "not defined", like a deleted connection.
STALE_AUTH_GRACE_S = 900.0
RETRY_AFTER_S = 5
#: bodies up to this size are parsed on the event loop: parsing is CPU-bound Python either way, and a thread
#: hop would add a GIL hand-over (up to 5 ms each) to every request under load.
INLINE_PARSE_BYTES = 32 * 1024
#: delivery ids are kept this long in the store (beyond any tolerance, a replay is refused as stale).
DELIVERY_MEMORY = timedelta(days=1)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class StoredAs(NamedTuple):
    """Where a connection's OpenADR 3 notifications go: the events' ``source`` and the zones to tag them with."""

    source: str
    zones: tuple[str, ...] = ()


class ConnectionLookupError(Exception):
    """The connection's settings could not be read (metadata database or secrets backend down)."""


class ConnectionMissing(SourceConfigError):
    """No such connection, as far as the secrets backends say (a deleted one, or an unreachable metastore)."""


@dataclass
class RelayConfig:
    """What the relay needs.

    :param auth_for: a connection id's authentication (default: its Airflow ``gridaware_webhook`` connection,
        read with ``BaseHook.get_connection``, so ``AIRFLOW_CONN_*`` variables and secrets backends work).
    :param openadr3_target_for: the ``source`` (and zones) of OpenADR 3 notifications for a connection id.
    :param store: the event store (default: the provider's store).
    :param conn_ids: serve only these connection ids (others are 404); ``None`` serves any webhook connection.
    :param settings_ttl_s: a connection is read again after this long (a rotated secret takes effect).
    :param stale_grace_s: how long the last settings read stay in use while the connection cannot be read.
    :param clock: unix seconds now (tests pass their own).
    """

    auth_for: Callable[[str], RelayAuth] | None = None
    openadr3_target_for: Callable[[str], StoredAs] | None = None
    store: EventStore | None = None
    conn_ids: frozenset[str] | None = None
    settings_ttl_s: float = AUTH_CACHE_S
    stale_grace_s: float = STALE_AUTH_GRACE_S
    clock: Callable[[], float] = time.time
    _auth_cache: dict[str, tuple[float, RelayAuth]] = field(default_factory=dict)
    _target_cache: dict[str, tuple[float, StoredAs]] = field(default_factory=dict)
    _seen: SeenDeliveries = field(default_factory=SeenDeliveries)
    _pruned_at: float = 0.0
    _writer: GroupWriter | None = None

    @classmethod
    def standalone(cls, auths: list[RelayAuth], store: EventStore | None = None) -> RelayConfig:
        """A relay that reads no Airflow connection: each ``RelayAuth`` serves its own ``conn_id``."""
        by_id = {auth.conn_id: auth for auth in auths}

        def auth_for(conn_id: str) -> RelayAuth:
            try:
                return by_id[conn_id]
            except KeyError:
                raise SourceConfigError(f"connection {conn_id!r} is not configured on this relay") from None

        return cls(
            auth_for=auth_for,
            openadr3_target_for=lambda conn_id: StoredAs(f"openadr3:{conn_id}", by_id[conn_id].zones),
            store=store,
            conn_ids=frozenset(by_id),
        )

    def get_store(self) -> EventStore:
        if self.store is None:
            from airflow_provider_gridaware.hooks.store import GridStoreHook

            self.store = GridStoreHook().get_event_store()
        return self.store

    async def auth(self, conn_id: str) -> RelayAuth:
        """The connection's settings, read at most once per ``settings_ttl_s`` (a rotated secret takes effect).

        When a look-up fails or finds nothing after an earlier one succeeded, the last settings stay in use
        for ``stale_grace_s`` (a deleted connection stops working after that, as a 503).

        :raises SourceConfigError: no such webhook connection, or an unusable one (answered 404).
        :raises ConnectionLookupError: the look-up failed with nothing to fall back on (answered 503).
        """
        if self.conn_ids is not None and conn_id not in self.conn_ids:
            raise SourceConfigError(f"connection {conn_id!r} is not served by this relay")
        cached = self._auth_cache.get(conn_id)
        if cached is not None and time.monotonic() - cached[0] < self.settings_ttl_s:
            return cached[1]
        resolve = self.auth_for or _connection_auth
        try:
            auth = await asyncio.to_thread(resolve, conn_id)
        except Exception as exc:
            if isinstance(exc, SourceConfigError) and not isinstance(exc, ConnectionMissing):
                self._auth_cache.pop(conn_id, None)  # found but unusable (wrong type, no secret): at once
                raise
            if cached is None:
                if isinstance(exc, SourceConfigError | ConnectionLookupError):
                    raise
                raise ConnectionLookupError(f"could not read connection {conn_id!r}: {_reason(exc)}") from exc
            age = time.monotonic() - cached[0]
            if age < self.stale_grace_s:
                # Keep accepting with the settings read last while the metadata database is away.
                log.warning("relay %s: %s; using the settings read %.0f s ago", conn_id, exc, age)
                return cached[1]
            raise ConnectionLookupError(
                f"connection {conn_id!r} cannot be read now (last read {age:.0f} s ago): {exc}"
            ) from exc
        self._auth_cache[conn_id] = (time.monotonic(), auth)
        return auth

    def openadr3_target(self, conn_id: str) -> StoredAs:
        """Where OpenADR 3 notifications for ``conn_id`` are stored (cached like the settings; blocking)."""
        cached = self._target_cache.get(conn_id)
        if cached is not None and time.monotonic() - cached[0] < self.settings_ttl_s:
            return cached[1]
        if self.openadr3_target_for is not None:
            target = self.openadr3_target_for(conn_id)
        else:
            from airflow_provider_gridaware.hooks.webhook import GridWebhookHook

            source, zones = GridWebhookHook(conn_id).openadr3_target()
            target = StoredAs(source, zones)
        self._target_cache[conn_id] = (time.monotonic(), target)
        return target


def _connection_auth(conn_id: str) -> RelayAuth:
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_gridaware.hooks.webhook import GridWebhookHook

    try:
        return GridWebhookHook(conn_id).relay_auth()
    except AirflowNotFoundException as exc:
        raise ConnectionMissing(
            f"connection {conn_id!r} does not exist ({exc}); create it, or check the conn_id for a typo", source=conn_id
        ) from None
    except SourceConfigError:
        raise
    except Exception as exc:
        # A secrets backend that raises (rather than answering "not found"): retryable, never a 4xx.
        raise ConnectionLookupError(f"could not read connection {conn_id!r}: {_reason(exc)}") from exc


# -- parsing bodies -------------------------------------------------------------------------------------------
def parse_gridaware_events(body: bytes, *, source: str, received_at: datetime) -> list[GridEvent]:
    """Events in the gridaware event JSON; errors name the event's position and the field."""
    from airflow_provider_gridaware.signals.grid_event import build_event

    document = _json(body)
    items = document.get("events") if isinstance(document, dict) and "events" in document else document
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise Refused(422, 'expected an event object, a non-empty list of them, or {"events": [...]}')
    events = []
    for index, item in enumerate(items):
        where = f"events[{index}]"
        if not isinstance(item, dict):
            raise Refused(422, f"{where}: not an object")
        unknown = sorted(set(item) - EVENT_FIELDS)
        if unknown:
            raise Refused(422, f"{where}: unknown field(s) {', '.join(unknown)}")
        try:
            events.append(
                build_event(**item, source=source, protocol=source.partition(":")[0], received_at=received_at)
            )
        except GridSignalError as exc:
            raise Refused(422, f"{where}: {exc}") from None
    return events


def parse_openadr3(body: bytes, *, source: str, received_at: datetime) -> list[GridEvent]:
    """Events of an OpenADR 3 webhook notification (501 when this install has no OpenADR 3 parser)."""
    try:
        from airflow_provider_gridaware.sources.openadr3 import parse_openadr3_notification
    except ImportError as exc:
        raise Refused(501, f"OpenADR 3 notifications are not supported by this install ({exc})") from None

    try:
        return parse_openadr3_notification(_json(body), source=source, received_at=received_at)
    except GridSignalError as exc:
        raise Refused(422, str(exc)) from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also a number of more than 4,300 digits
        raise Refused(400, f"body is not JSON: {exc}") from None
    except RecursionError:
        raise Refused(400, "body is not JSON we read: nested too deeply") from None


# -- the app ----------------------------------------------------------------------------------------------
def create_relay_app(config: RelayConfig | None = None) -> Starlette:
    """The relay as an ASGI app (``gridaware relay`` serves it; tests mount it on loopback)."""
    config = config or RelayConfig()

    async def events(request: Request) -> JSONResponse:
        conn_id = request.path_params["conn_id"]

        def parse(body: bytes, at: datetime, auth: RelayAuth) -> list[GridEvent]:
            return _zoned(parse_gridaware_events(body, source=f"webhook:{conn_id}", received_at=at), auth.zones)

        return await _handle(request, config, parse, inline_up_to=INLINE_PARSE_BYTES)

    async def openadr3(request: Request) -> JSONResponse:
        conn_id = request.path_params["conn_id"]

        def parse(body: bytes, at: datetime, _auth: RelayAuth) -> list[GridEvent]:
            try:
                target = config.openadr3_target(conn_id)
            except Exception as exc:
                raise Refused(503, f"could not read connection {conn_id!r}: {_reason(exc)}") from None
            events = _zoned(parse_openadr3(body, source=target.source, received_at=at), target.zones)
            return _sequenced(config, events)

        return await _handle(request, config, parse)

    async def healthz(_request: Request) -> JSONResponse:
        try:
            last = await asyncio.to_thread(config.get_store().last_seq)
        except Exception as exc:
            return JSONResponse({"status": "unhealthy", "error": _reason(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "last_seq": last})

    return Starlette(
        routes=[
            Route("/events/{conn_id}", events, methods=["POST"]),
            Route("/openadr3/{conn_id}", openadr3, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def warm_up(config: RelayConfig) -> None:
    """Pay the imports (the Task SDK for connections: about a second) and the store's opening before the
    first sender is waiting, not during its request. Call it in the main thread before serving: importing
    Airflow sets up its logging, which must come before the server's own (``gridaware relay`` does)."""
    from airflow_provider_gridaware.signals import grid_event  # noqa: F401

    if config.auth_for is None:
        from airflow_provider_gridaware.hooks import webhook  # noqa: F401
    try:
        config.get_store().last_seq()
    except Exception as exc:
        # Start anyway: /healthz says the store is down and requests get 503 until it is back.
        log.warning("relay: the store is not reachable at start: %s", _reason(exc))


def relay_fastapi_app(config: RelayConfig | None = None) -> FastAPI:
    """The relay inside a FastAPI app, for Airflow's plugin ``fastapi_apps`` (mounted at its ``url_prefix``)."""
    from fastapi import FastAPI

    app = FastAPI(title="gridaware relay", openapi_url=None, docs_url=None, redoc_url=None)
    app.mount("/", create_relay_app(config))
    return app


def _zoned(events: list[GridEvent], zones: tuple[str, ...]) -> list[GridEvent]:
    # As the polling hooks do: the planner overlays an event's price on the prices of the zones it targets.
    if not zones:
        return events
    from airflow_provider_gridaware.hooks.grid_event_base import with_zones

    return [with_zones(event, zones) for event in events]


def _sequenced(config: RelayConfig, events: list[GridEvent]) -> list[GridEvent]:
    # OpenADR 3 has no modification number: a changed event must get a higher one than the stored state.
    from airflow_provider_gridaware.sources.openadr3 import sequence_modification

    store = config.get_store()
    try:
        return [sequence_modification(e, store.latest(e.source, e.event_id)) for e in events]
    except GridSignalError as exc:
        raise Refused(422, str(exc)) from None
    except Exception as exc:
        log.error("relay: the store could not be read: %s", _reason(exc))
        raise Refused(503, f"the store is unavailable ({_reason(exc)}); retry in {RETRY_AFTER_S} s") from None


async def _handle(
    request: Request,
    config: RelayConfig,
    parse: Callable[[bytes, datetime, RelayAuth], list[GridEvent]],
    *,
    inline_up_to: int = 0,
) -> JSONResponse:
    conn_id = request.path_params["conn_id"]
    client = request.client.host if request.client else "?"
    try:
        try:
            auth = await config.auth(conn_id)
        except SourceConfigError as exc:
            raise Refused(404, f"no relay connection {conn_id!r}: {exc}") from None
        except ConnectionLookupError as exc:
            raise Refused(503, f"{exc}; retry in {RETRY_AFTER_S} s") from None
        body = await _read_body(request, auth.max_body_bytes)
        now = config.clock()
        try:
            delivery = check_request(auth, {k.lower(): v for k, v in request.headers.items()}, body, now)
        except RelayAuthError as exc:
            raise Refused(exc.status, str(exc)) from None
        if delivery is not None and (conn_id, delivery) in config._seen:
            raise Refused(409, f"replayed delivery {delivery!r}")
        received_at = datetime.fromtimestamp(now, UTC)
        if len(body) <= inline_up_to:
            events = parse(body, received_at, auth)
        else:
            events = await asyncio.to_thread(parse, body, received_at, auth)
        recorded = await _store(config, conn_id, delivery, events)
    except Refused as refused:
        log.warning("relay %s: refused %d from %s: %s", conn_id, refused.status, client, refused)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if refused.status == 503 else None
        return JSONResponse({"error": str(refused)}, status_code=refused.status, headers=headers)
    if delivery is not None:
        config._seen.add((conn_id, delivery))
    stored = [
        {"event_id": e.event_id, "modification_number": e.modification_number, "outcome": r.outcome.value, "seq": r.seq}
        for e, r in zip(events, recorded, strict=True)
    ]
    log.info("relay %s: accepted %d event(s) from %s (delivery %s)", conn_id, len(events), client, delivery)
    return JSONResponse({"stored": stored})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"body is over the limit of {limit} bytes")
    return bytes(body)


class GroupWriter:
    """Writes what concurrent requests accepted in one store transaction per batch (group commit).

    A request waits for the commit that holds its events; under load, many requests share one commit, so
    the store's per-commit cost (an fsync on SQLite) is not paid per request.
    """

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self._pending: list[tuple[str, str | None, list[GridEvent], asyncio.Future[list[Recorded] | None]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def write(self, conn_id: str, delivery: str | None, events: list[GridEvent]) -> list[Recorded] | None:
        future: asyncio.Future[list[Recorded] | None] = asyncio.get_running_loop().create_future()
        self._pending.append((conn_id, delivery, events, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.ensure_future(self._drain())
        return await future

    def _commit(self, deliveries: list[tuple[str, str | None, list[GridEvent]]]) -> list[list[Recorded] | None]:
        store, now = self.config.get_store(), self.config.clock()
        if now - self.config._pruned_at > 3600:
            store.forget_deliveries(datetime.fromtimestamp(now, UTC) - DELIVERY_MEMORY)
            self.config._pruned_at = now
        return store.record_deliveries(deliveries)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            deliveries = [(conn_id, delivery, events) for conn_id, delivery, events, _ in batch]
            try:
                results = await asyncio.to_thread(self._commit, deliveries)
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


async def _store(config: RelayConfig, conn_id: str, delivery: str | None, events: list[GridEvent]) -> list[Recorded]:
    if config._writer is None:
        config._writer = GroupWriter(config)
    try:
        recorded = await config._writer.write(conn_id, delivery, events)
    except Exception as exc:
        log.error("relay %s: the store did not take %d event(s): %s", conn_id, len(events), _reason(exc))
        raise Refused(503, f"the store is unavailable ({_reason(exc)}); retry in {RETRY_AFTER_S} s") from None
    if recorded is None:
        raise Refused(409, f"replayed delivery {delivery!r} (already in the store)")
    return recorded


def _reason(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {text}"
