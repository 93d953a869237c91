"""Checking a webhook request before anything reads its body as an event. Pure: no Airflow, no web framework.

HMAC mode: the sender signs ``<timestamp>.<delivery id>.<body>`` with the shared secret (HMAC-SHA256) and
sends ``X-Gridaware-Signature: sha256=<hex>``, ``X-Gridaware-Timestamp: <unix seconds>`` and
``X-Gridaware-Delivery: <unique id>`` (the three names are configurable per connection). The timestamp must
be within the tolerance of the relay's clock (both ways), and a delivery id is accepted once. The delivery
id is inside the signed text: were it not, a captured request could be replayed under a fresh id. Bearer mode (OpenADR 3 subscriptions, internal systems
that cannot sign): ``Authorization: Bearer <token>``, plus the same delivery id when the sender has one.
Every comparison of a secret is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "x-gridaware-signature"
TIMESTAMP_HEADER = "x-gridaware-timestamp"
DELIVERY_HEADER = "x-gridaware-delivery"
DEFAULT_TOLERANCE_S = 300.0
DEFAULT_MAX_BODY_BYTES = 256 * 1024
#: the store remembers delivery ids for a day; a replay must turn stale (2 x tolerance) well before that.
MAX_TOLERANCE_S = 6 * 3600.0
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RelayAuthError(Exception):
    """A request the relay refuses; ``status`` is the HTTP status to answer with, the message says why."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RelayAuth:
    """How one connection's senders prove who they are.

    :param conn_id: the connection (and the URL's ``{conn_id}``).
    :param secret: the HMAC shared secret (HMAC mode).
    :param bearer_token: the token (bearer mode); exactly one of the two is set.
    :param tolerance_s: how far a signed timestamp may be from the relay's clock.
    :param max_body_bytes: larger bodies are refused unread.
    :param require_delivery_id: bearer mode only: refuse requests without a delivery id.
    :param signature_header: the header carrying ``sha256=<hex>``.
    :param timestamp_header: the header carrying the signed unix seconds.
    :param delivery_header: the header carrying the delivery id.
    :param zones: grid zones this connection's events apply to (``zone`` targets added when a sender names
        none, as the polling hooks do).
    """

    conn_id: str
    secret: bytes | None = None
    bearer_token: str | None = None
    tolerance_s: float = DEFAULT_TOLERANCE_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    require_delivery_id: bool = False
    signature_header: str = SIGNATURE_HEADER
    timestamp_header: str = TIMESTAMP_HEADER
    delivery_header: str = DELIVERY_HEADER
    zones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.bearer_token is None):
            raise ValueError(f"relay connection {self.conn_id!r}: set a shared secret or a bearer token (one of them)")
        if self.secret is not None and len(self.secret) < 16:
            raise ValueError(f"relay connection {self.conn_id!r}: the shared secret must have at least 16 bytes")
        if self.tolerance_s <= 0 or self.max_body_bytes <= 0:
            raise ValueError(f"relay connection {self.conn_id!r}: tolerance and body limit must be positive")
        if self.tolerance_s > MAX_TOLERANCE_S:
            raise ValueError(
                f"relay connection {self.conn_id!r}: tolerance {self.tolerance_s:g} s is over {MAX_TOLERANCE_S:g} s"
                " (delivery ids are remembered for a day)"
            )
        for name in (self.signature_header, self.timestamp_header, self.delivery_header):
            if not _HEADER_NAME.match(name):
                raise ValueError(f"relay connection {self.conn_id!r}: {name!r} is not a header name")
        # Lower-case once: ASGI servers hand header names over in lower case.
        for attribute in ("signature_header", "timestamp_header", "delivery_header"):
            object.__setattr__(self, attribute, getattr(self, attribute).lower())

    @property
    def mode(self) -> str:
        return "hmac" if self.secret is not None else "bearer"


def sign(secret: bytes, timestamp: str, delivery_id: str, body: bytes) -> str:
    """The signature header value for a request (what a sender computes)."""
    digest = hmac.new(secret, f"{timestamp}.{delivery_id}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def check_request(auth: RelayAuth, headers: Mapping[str, str], body: bytes, now_s: float) -> str | None:
    """Check a request; returns its delivery id (``None`` for a bearer request without one).

    :param headers: lower-case header names.
    :raises RelayAuthError: with the status and the reason (never the secret or the signature).
    """
    delivery = headers.get(auth.delivery_header)
    if delivery is not None and not _DELIVERY_ID.match(delivery):
        raise RelayAuthError(f"{auth.delivery_header} must be 1-128 letters, digits or ._:-", 400)
    if auth.bearer_token is not None:
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise RelayAuthError("missing bearer token (Authorization: Bearer ...)")
        if not hmac.compare_digest(token.strip().encode(), auth.bearer_token.encode()):
            raise RelayAuthError("wrong bearer token")
        if delivery is None and auth.require_delivery_id:
            raise RelayAuthError(f"missing {auth.delivery_header}", 400)
        return delivery
    assert auth.secret is not None
    signature, timestamp = headers.get(auth.signature_header), headers.get(auth.timestamp_header)
    if signature is None:
        raise RelayAuthError(f"unsigned request: missing {auth.signature_header}")
    if timestamp is None:
        raise RelayAuthError(f"missing {auth.timestamp_header}")
    if delivery is None:
        raise RelayAuthError(f"missing {auth.delivery_header}", 400)
    try:
        sent_at = float(timestamp)
    except ValueError:
        raise RelayAuthError(f"{auth.timestamp_header} {timestamp[:40]!r} is not unix seconds", 400) from None
    if not math.isfinite(sent_at):
        raise RelayAuthError(f"{auth.timestamp_header} {timestamp[:40]!r} is not unix seconds", 400)
    if abs(now_s - sent_at) > auth.tolerance_s:
        direction = "old" if sent_at < now_s else "far in the future"
        raise RelayAuthError(
            f"stale request: timestamp is {abs(now_s - sent_at):.0f} s {direction} (tolerance {auth.tolerance_s:g} s)"
        )
    expected = sign(auth.secret, timestamp, delivery, body)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise RelayAuthError("forged or corrupted request: the signature does not match the body")
    return delivery


class SeenDeliveries:
    """Delivery ids accepted lately, per connection, in memory (the store keeps them across restarts).

    :param capacity: how many ids to remember before the oldest are forgotten.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
