"""An OpenADR 2.0b VEN session over openleadr's client: register, request events, answer them.

openleadr's :class:`~openleadr.client.OpenADRClient` builds, signs and parses the messages; this module
replaces only its transport step (``_perform_request``), which logs and swallows every failure, with one
that raises a typed error naming what was wrong: the VTN's TLS certificate refused (foreign CA, wrong
host), a signature by another certificate than the connection's fingerprint, a message that does not
match its signature (tampered), an unsigned message where a signature is expected, a replayed message,
a schema failure, an outage. No Airflow here: the hook passes :class:`VenSettings`.

Security model (OpenADR 2.0b): TLS authenticates the VTN by the CA file and the VEN by its client
certificate; every message is signed (XMLDSig) with a certificate whose fingerprint (last 10 bytes of its
SHA-256) the VEN is given out of band. With ``vtn_fingerprint`` set, every message must carry a valid
signature by that certificate; without it, signatures are not checked (openleadr's behaviour).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_provider_gridaware.signals.errors import (
    MalformedPayloadError,
    SourceAuthError,
    SourceConfigError,
    SourceRequestError,
    SourceUnavailableError,
)
from airflow_provider_gridaware.sources.openadr2b import PROTOCOL, OptPolicy
from airflow_provider_gridaware.times import UTC


class VenNotRegisteredError(SourceConfigError):
    """The VEN has no venID yet, or the VTN no longer knows it: register (again)."""


@dataclass(frozen=True)
class VenSettings:
    """Everything the VEN needs from its connection.

    :param conn_id: the Airflow connection id (names errors and the event ``source``).
    :param vtn_url: the VTN's base URL, up to ``.../OpenADR2/Simple/2.0b``.
    :param ven_name: this VEN's name, as registered.
    :param vtn_id: the VTN's id; a message from another vtnID is refused.
    :param vtn_fingerprint: the VTN's signing certificate fingerprint (``AB:CD:..``), normalised.
    :param ven_id: a venID the VTN assigned out of band (else the one stored by registration).
    :param cert_pem: this VEN's certificate (PEM), for mutual TLS and for signing.
    :param key_pem: its private key (PEM).
    :param key_passphrase: the key's passphrase.
    :param ca_pem: the CA certificates (PEM) that the VTN's TLS certificate must chain to.
    :param check_hostname: TLS host-name check of the VTN's certificate.
    :param poll_interval: seconds between ``oadrRequestEvent`` polls.
    :param opt_policy: how to answer events that ask for a response.
    :param connect_timeout: seconds to connect.
    :param read_timeout: seconds to wait for an answer.
    """

    conn_id: str
    vtn_url: str
    ven_name: str
    vtn_id: str | None = None
    vtn_fingerprint: str | None = None
    ven_id: str | None = None
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    key_passphrase: str | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    check_hostname: bool = True
    poll_interval: float = 10.0
    opt_policy: OptPolicy = OptPolicy.OPT_IN
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    @property
    def source(self) -> str:
        return f"{PROTOCOL}:{self.conn_id}"

    @property
    def tls(self) -> bool:
        return self.vtn_url.lower().startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (CA file, client certificate), or ``None`` for plain HTTP."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.check_hostname = self.check_hostname
        try:
            if self.ca_pem:
                context.load_verify_locations(cadata=self.ca_pem.decode())
            if self.cert_pem and self.key_pem:
                _load_cert_chain(context, self.cert_pem, self.key_pem, self.key_passphrase)
        except (ssl.SSLError, ValueError) as exc:
            raise SourceConfigError(
                f"cannot load the TLS certificate, key or CA file: {exc}", source=self.source
            ) from None
        return context


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, passphrase: str | None) -> None:
    # ssl wants files: write them private to this process, load, delete.
    with tempfile.TemporaryDirectory(prefix="gridaware-ven-") as folder:
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path, passphrase)


@dataclass(frozen=True)
class Registration:
    """What the VTN assigned at registration."""

    ven_id: str
    registration_id: str
    poll_interval: float | None


@dataclass(frozen=True)
class Answer:
    """A parsed, verified message from the VTN and when it arrived."""

    message_type: str
    payload: dict[str, Any]
    received_at: datetime


@lru_cache(maxsize=1)
def _client_class() -> type[Any]:
    """openleadr's client with a transport step that raises instead of logging (imported on first use)."""
    import aiohttp
    from lxml.etree import XMLSyntaxError
    from openleadr import errors as oadr_errors
    from openleadr import utils as oadr_utils
    from openleadr.client import OpenADRClient
    from openleadr.messaging import VERIFIER, _verify_replay_protect, parse_message, validate_xml_schema
    from signxml.exceptions import InvalidInput, InvalidSignature

    class StrictClient(OpenADRClient):
        settings: VenSettings

        async def _ensure_client_session(self) -> None:
            # The session is made by VenSession (TLS from the connection's PEMs, our timeouts).
            assert self.client_session is not None

        async def _perform_request(self, service: str, message: str) -> tuple[str | None, dict[str, Any]]:
            settings = self.settings
            source = settings.source
            url = f"{self.vtn_url}/{service}"
            try:
                async with self.client_session.post(url, data=message) as response:
                    content = await response.read()
                    status = response.status
            except aiohttp.ClientConnectorCertificateError as exc:
                raise SourceAuthError(
                    f"the VTN's TLS certificate at {url} was refused ({exc.certificate_error}): is the CA file the "
                    "VTN's CA and the host name the certificate's?",
                    source=source,
                ) from None
            except aiohttp.ClientSSLError as exc:
                raise SourceAuthError(f"TLS handshake with {url} failed: {exc}", source=source) from None
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
                raise SourceUnavailableError(f"cannot reach the VTN at {url}: {reason}", source=source) from None
            text = content.decode("utf-8", "replace").strip()[:200]
            if status in (401, 403):
                raise SourceAuthError(f"the VTN refused us at {url} (HTTP {status}): {text}", source=source)
            if status >= 500:
                raise SourceUnavailableError(f"the VTN failed at {url} (HTTP {status}): {text}", source=source)
            if status != 200:
                raise SourceRequestError(
                    f"the VTN refused the request (HTTP {status}): {text}", source=source, status=status
                )
            if not content:
                return None, {}
            try:
                tree = validate_xml_schema(content)
            except XMLSyntaxError as exc:
                raise MalformedPayloadError(
                    f"the VTN's answer fails the OpenADR 2.0b schema: {exc}", source=source
                ) from None
            if settings.vtn_fingerprint:
                _verify_signature(tree, settings.vtn_fingerprint, source)
            message_type, payload = parse_message(content)
            answered_as = payload.get("vtn_id")
            if settings.vtn_id and answered_as not in (None, "", settings.vtn_id):
                raise SourceConfigError(
                    f"the VTN answered as vtnID {answered_as!r}, the connection expects {settings.vtn_id!r}",
                    source=source,
                )
            if message_type == "oadrRequestReregistration":
                raise VenNotRegisteredError(
                    f"the VTN does not know venID {self.ven_id!r} (oadrRequestReregistration): register again "
                    f"with `gridaware openadr2b register --conn-id {settings.conn_id}`",
                    source=source,
                )
            return message_type, payload

    def _verify_signature(tree: Any, expected: str, source: str) -> None:
        if tree.find(".//{http://www.w3.org/2000/09/xmldsig#}X509Certificate") is None:
            raise SourceAuthError(
                "the VTN's message is not signed, but the connection gives a VTN fingerprint: refused", source=source
            )
        cert = oadr_utils.extract_pem_cert(tree)
        fingerprint = oadr_utils.certificate_fingerprint(cert)
        if fingerprint != expected:
            raise SourceAuthError(
                f"the VTN's message is signed by certificate {fingerprint}, the connection expects {expected}: "
                "refused (wrong VTN or wrong fingerprint)",
                source=source,
            )
        try:
            VERIFIER.verify(tree, x509_cert=oadr_utils.ensure_bytes(cert), expect_references=2)
        except (InvalidSignature, InvalidInput) as exc:
            raise SourceAuthError(
                f"the VTN's message does not match its XML signature (tampered in transit?): {exc}", source=source
            ) from None
        try:
            _verify_replay_protect(tree)
        except ValueError as exc:
            raise SourceAuthError(f"the VTN's message fails replay protection: {exc}", source=source) from None

    # openleadr raises this for a fingerprint mismatch in its own path; named here so a reader finds both.
    _ = oadr_errors.FingerprintMismatch
    return StrictClient


class VenSession:
    """One HTTP(S) session to the VTN, for a few requests; use as an async context manager.

    :param settings: the VEN's settings.
    :param ven_id: the venID to speak as (``None`` only to register).
    """

    def __init__(self, settings: VenSettings, *, ven_id: str | None = None) -> None:
        self.settings = settings
        self.ven_id = ven_id
        self._client: Any = None

    async def __aenter__(self) -> VenSession:
        import aiohttp

        ssl_context = self.settings.ssl_context()
        client = _client_class()(
            ven_name=self.settings.ven_name,
            vtn_url=self.settings.vtn_url,
            ven_id=self.ven_id,
            show_fingerprint=False,
            # openleadr reads cert and key from files; we sign from the PEMs we were given.
            disable_signature=True,
        )
        if self.settings.cert_pem and self.settings.key_pem:
            from functools import partial

            from openleadr.messaging import create_message

            client._create_message = partial(
                create_message,
                cert=self.settings.cert_pem,
                key=self.settings.key_pem,
                passphrase=self.settings.key_passphrase,
                disable_signature=False,
            )
        client.settings = self.settings
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.settings.connect_timeout, sock_read=self.settings.read_timeout
        )
        client.client_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else False),
            headers={"content-type": "application/xml"},
            timeout=timeout,
        )
        self._client = client
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None and self._client.client_session is not None:
            await self._client.client_session.close()
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("VenSession used outside `async with`")
        return self._client

    # -- events ----------------------------------------------------------------------------------------
    async def request_events(self) -> Answer:
        """``oadrRequestEvent``: the VTN's current events for this VEN (an ``oadrDistributeEvent``)."""
        if not self.ven_id:
            raise VenNotRegisteredError("no venID to request events with", source=self.settings.source)
        message_type, payload = await self.client.request_event()
        received_at = datetime.now(UTC)
        if message_type == "oadrResponse":
            # An openleadr VTN answers oadrResponse when it has no event for us.
            _check_code(payload, self.settings.source, "oadrRequestEvent")
            return Answer("oadrDistributeEvent", {**payload, "events": []}, received_at)
        if message_type != "oadrDistributeEvent":
            raise MalformedPayloadError(
                f"oadrRequestEvent was answered with {message_type}, not oadrDistributeEvent",
                source=self.settings.source,
            )
        return Answer(message_type, payload, received_at)

    async def created_event(self, request_id: str | None, responses: Sequence[tuple[str, int, str]]) -> None:
        """``oadrCreatedEvent``: answer ``(event_id, modification_number, optIn|optOut)`` for each event, in one message.

        :param request_id: the requestID of the ``oadrDistributeEvent`` answered.
        """
        if not responses:
            return
        request_id = request_id or "0"
        event_responses = [
            {
                "response_code": 200,
                "response_description": "OK",
                "request_id": request_id,
                "event_id": event_id,
                "modification_number": modification,
                "opt_type": opt,
            }
            for event_id, modification, opt in responses
        ]
        message = self.client._create_message(
            "oadrCreatedEvent",
            ven_id=self.ven_id,
            response={"response_code": 200, "response_description": "OK", "request_id": request_id},
            event_responses=event_responses,
        )
        _message_type, payload = await self.client._perform_request("EiEvent", message)
        _check_code(payload, self.settings.source, "oadrCreatedEvent")

    # -- registration ----------------------------------------------------------------------------------
    async def register(self) -> Registration:
        """``oadrQueryRegistration`` then ``oadrCreatePartyRegistration``; the VTN assigns venID and registrationID."""
        source = self.settings.source
        _type, info = await self.client.query_registration()
        _check_code(info, source, "oadrQueryRegistration")
        request_id = (info.get("response") or {}).get("request_id")
        result = await self.client.create_party_registration(ven_id=self.ven_id, request_id=request_id)
        payload = result[1] if result else {}
        _check_code(payload, source, "oadrCreatePartyRegistration")
        ven_id, registration_id = self.client.ven_id, self.client.registration_id
        if not ven_id or not registration_id:
            raise SourceAuthError(
                f"the VTN did not register VEN {self.settings.ven_name!r} (no venID or registrationID in its "
                "answer): does it know this VEN's name and certificate fingerprint?",
                source=source,
            )
        self.ven_id = ven_id
        frequency = payload.get("requested_oadr_poll_freq")
        poll = frequency.total_seconds() if isinstance(frequency, timedelta) else None
        return Registration(str(ven_id), str(registration_id), poll)


def _check_code(payload: dict[str, Any], source: str, what: str) -> None:
    response = payload.get("response") or {}
    code = response.get("response_code", 200)
    try:
        code = int(code)
    except (TypeError, ValueError):
        raise MalformedPayloadError(f"{what}: response code {code!r}", source=source) from None
    if code != 200:
        description = response.get("response_description") or "no description"
        if code == 452:  # OpenADR "invalid ID": the VTN does not know our venID
            raise VenNotRegisteredError(f"{what}: the VTN answered 452 {description}: register again", source=source)
        raise SourceRequestError(
            f"{what}: the VTN answered OpenADR code {code}: {description}", source=source, status=code
        )
