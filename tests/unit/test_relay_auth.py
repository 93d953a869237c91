"""The relay's checks without a server: signature, timestamp window, delivery ids, replay memory, body limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import pytest
from starlette.requests import Request

from airflow_provider_gridaware.relay.app import Refused, _read_body
from airflow_provider_gridaware.relay.auth import (
    MAX_TOLERANCE_S,
    RelayAuth,
    RelayAuthError,
    SeenDeliveries,
    check_request,
    sign,
)

SECRET = b"0123456789abcdef-shared"
NOW = 1_780_000_000.0
BODY = b'{"event_id": "peak-1"}'


def hmac_auth(**overrides: Any) -> RelayAuth:
    return RelayAuth(conn_id="utility", secret=SECRET, **overrides)


def headers(body: bytes = BODY, *, at: float = NOW, delivery: str = "d-1", secret: bytes = SECRET) -> dict[str, str]:
    timestamp = str(int(at))
    return {
        "x-gridaware-timestamp": timestamp,
        "x-gridaware-delivery": delivery,
        "x-gridaware-signature": sign(secret, timestamp, delivery, body),
    }


def refusal(auth: RelayAuth, given: dict[str, str], body: bytes = BODY, now: float = NOW) -> RelayAuthError:
    with pytest.raises(RelayAuthError) as caught:
        check_request(auth, given, body, now)
    return caught.value


def test_the_signature_is_hmac_sha256_over_timestamp_delivery_and_body():
    # What a sender in any language computes (the docs' openssl example signs the same text).
    expected = hmac.new(SECRET, b"1780000000.d-1." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1780000000", "d-1", BODY) == f"sha256={expected}"
    assert check_request(hmac_auth(), headers(), BODY, NOW) == "d-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "x-gridaware-signature"}, "unsigned request"),
        (lambda h: {k: v for k, v in h.items() if k != "x-gridaware-timestamp"}, "missing x-gridaware-timestamp"),
        (lambda h: {**h, "x-gridaware-signature": "sha256=" + "0" * 64}, "signature does not match"),
        (lambda h: {**h, "x-gridaware-delivery": "d-2"}, "signature does not match"),  # id is signed too
        (lambda h: {**h, "x-gridaware-timestamp": str(int(NOW) + 1)}, "signature does not match"),
        (lambda h: {**h, "x-gridaware-timestamp": "nan"}, "is not unix seconds"),
        (lambda h: {**h, "x-gridaware-delivery": "a/b"}, "must be 1-128 letters"),
    ],
    ids=["unsigned", "no-timestamp", "forged", "delivery-swapped", "timestamp-swapped", "nan", "bad-delivery"],
)
def test_what_a_request_must_carry(change, message):
    assert message in str(refusal(hmac_auth(), change(headers())))


def test_a_changed_body_or_another_secret_is_forged():
    assert refusal(hmac_auth(), headers(), BODY + b" ").status == 401
    assert refusal(hmac_auth(), headers(secret=b"another-secret-of-16+")).status == 401


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False), (-86_400, False), (86_400, False)],
)
def test_the_timestamp_window_holds_both_ways(offset, accepted):
    given = headers(at=NOW + offset)
    if accepted:
        assert check_request(hmac_auth(), given, BODY, NOW) == "d-1"
    else:
        error = refusal(hmac_auth(), given)
        assert error.status == 401
        assert ("old" if offset < 0 else "far in the future") in str(error)


def test_header_names_are_configurable_and_case_insensitive():
    auth = hmac_auth(
        signature_header="X-Utility-Sig", timestamp_header="X-Utility-Time", delivery_header="X-Utility-Id"
    )
    given = headers()
    renamed = {
        "x-utility-sig": given["x-gridaware-signature"],
        "x-utility-time": given["x-gridaware-timestamp"],
        "x-utility-id": given["x-gridaware-delivery"],
    }
    assert check_request(auth, renamed, BODY, NOW) == "d-1"
    assert "unsigned request: missing x-utility-sig" in str(refusal(auth, given))


def test_bearer_mode():
    auth = RelayAuth(conn_id="vtn", bearer_token="tok-123")
    assert check_request(auth, {"authorization": "Bearer tok-123"}, BODY, NOW) is None
    assert check_request(auth, {"authorization": "bearer tok-123", "x-gridaware-delivery": "n-1"}, BODY, NOW) == "n-1"
    assert "missing bearer token" in str(refusal(auth, {}))
    assert "missing bearer token" in str(refusal(auth, {"authorization": "Basic dXNlcjpwYXNz"}))
    assert "wrong bearer token" in str(refusal(auth, {"authorization": "Bearer tok-1234"}))
    strict = RelayAuth(conn_id="vtn", bearer_token="tok-123", require_delivery_id=True)
    assert refusal(strict, {"authorization": "Bearer tok-123"}).status == 400


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "set a shared secret or a bearer token"),
        ({"secret": b"x" * 16, "bearer_token": "t"}, "one of them"),
        ({"secret": b"short"}, "at least 16 bytes"),
        ({"secret": SECRET, "tolerance_s": 0}, "must be positive"),
        ({"secret": SECRET, "max_body_bytes": 0}, "must be positive"),
        ({"secret": SECRET, "tolerance_s": MAX_TOLERANCE_S + 1}, "delivery ids are remembered for a day"),
        ({"secret": SECRET, "signature_header": "X Sig"}, "is not a header name"),
    ],
)
def test_settings_that_cannot_protect_anything_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        RelayAuth(conn_id="utility", **fields)


def test_the_replay_memory_is_bounded_and_forgets_the_oldest():
    seen = SeenDeliveries(capacity=3)
    for delivery in ("a", "b", "c"):
        seen.add(("utility", delivery))
    assert ("utility", "a") in seen and ("other", "a") not in seen
    seen.add(("utility", "d"))
    assert ("utility", "a") not in seen  # forgotten here; the store still refuses it (contract tests)
    assert all(("utility", d) in seen for d in "bcd")


def _request(chunks: list[bytes], content_length: int | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives in ``chunks``; the list counts how many chunks were read."""
    read: list[int] = []
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        read.append(1)
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    raw_headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw_headers, "query_string": b""}
    return Request(scope, receive), read


def test_the_body_limit_holds_while_reading():
    request, read = _request([b"x" * 1000] * 100)  # streamed, no Content-Length
    with pytest.raises(Refused, match="over the limit of 2500 bytes") as caught:
        asyncio.run(_read_body(request, 2500))
    assert caught.value.status == 413
    assert len(read) == 3  # stopped at the chunk that crossed the limit, not after 100 kB


def test_a_declared_oversized_body_is_refused_unread():
    request, read = _request([b"x" * 10], content_length=10_000)
    with pytest.raises(Refused, match="body of 10000 bytes is over the limit of 2500"):
        asyncio.run(_read_body(request, 2500))
    assert read == []


def test_a_body_at_the_limit_is_read_whole():
    request, _ = _request([b"x" * 1000, b"y" * 1500])
    assert asyncio.run(_read_body(request, 2500)) == b"x" * 1000 + b"y" * 1500
