"""Transport rules shared by every hook: retries, Retry-After, breaker, redaction; sync and async alike."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_gridaware.signals.errors import (
    CircuitOpenError,
    RateLimitedError,
    SourceAuthError,
    SourceRequestError,
    SourceUnavailableError,
)
from airflow_provider_gridaware.transport import http as http_module
from airflow_provider_gridaware.transport.breaker import CircuitBreaker
from airflow_provider_gridaware.transport.http import (
    AttemptTimeouts,
    HttpRequest,
    HttpTransport,
    RetryPolicy,
    parse_retry_after,
    redact_url,
)
from tests.support.scripted_server import Reply

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, max_retry_after=2.0, total_seconds=10)


def test_retry_after_parsing():
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == pytest.approx(30)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-3") == 0.0


def test_redaction_of_query_and_known_secrets():
    shown = redact_url("https://x.test/api?securityToken=abc123&zone=DE", {"token": "t0ps3cret"}, ["hunter22"])
    assert "abc123" not in shown and "t0ps3cret" not in shown and "zone=DE" in shown
    assert redact_url("https://user:hunter22@x.test/p", secrets=["hunter22"]) == "https://x.test/p"


def test_backoff_is_bounded_and_grows():
    policy = RetryPolicy(backoff_base=1, backoff_max=8)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        delays = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


@pytest.mark.parametrize(
    ("replies", "error", "attempts"),
    [
        ([Reply(503, "down")], SourceUnavailableError, 3),
        ([Reply(401, "no")], SourceAuthError, 1),
        ([Reply(400, "bad zone")], SourceRequestError, 1),
        ([Reply(429, "slow", headers={"Retry-After": "999"})], RateLimitedError, 1),
        ([Reply(502, "x"), Reply(200, {"ok": True})], None, 2),
    ],
)
def test_sync_and_async_sides_agree(scripted_server, replies, error, attempts):
    transport = HttpTransport("t", retry=FAST, read_timeout=2)
    request = HttpRequest("GET", f"{scripted_server.url}/x")
    scripted_server.add("/x", *replies)
    try:
        sync = transport.request(request)
    except Exception as exc:
        sync = exc
    sync_attempts = len(scripted_server.requests_to("/x"))
    scripted_server.requests.clear()
    scripted_server.add("/x", *replies)
    async_ = asyncio.run(_async_outcome(transport, request))
    async_attempts = len(scripted_server.requests_to("/x"))
    for outcome in (sync, async_):
        if error is None:
            assert outcome.json() == {"ok": True}
        else:
            assert isinstance(outcome, error), outcome
    assert sync_attempts == async_attempts == attempts


async def _async_outcome(transport, request):
    try:
        return await transport.arequest(request)
    except Exception as exc:
        return exc


def test_async_requests_load_the_ca_bundle_once_not_per_request(scripted_server, ca_bundle_loads, tmp_path):
    """A trigger's request opens an ``httpx.AsyncClient`` each time; the CA bundle is loaded once, not per request."""
    for _ in range(3):
        scripted_server.add("/x", Reply(200, {"ok": True}))
        request = HttpRequest("GET", f"{scripted_server.url}/x")
        assert asyncio.run(HttpTransport("t", retry=FAST).arequest(request)).status == 200
    assert ca_bundle_loads.call_count == 1
    assert http_module.tls_context(False) is not http_module.tls_context(True)
    assert http_module.tls_context(False).verify_mode == ssl.CERT_NONE
    # A CA bundle path still names the file the certificates are checked against (no DeprecationWarning).
    with pytest.raises(FileNotFoundError):
        http_module.tls_context(str(tmp_path / "missing-ca.pem"))


def test_rate_limited_carries_retry_after(scripted_server):
    scripted_server.add("/x", Reply(429, "slow", headers={"Retry-After": "120"}))
    transport = HttpTransport("t", retry=FAST)
    with pytest.raises(RateLimitedError) as caught:
        transport.request(HttpRequest("GET", f"{scripted_server.url}/x"))
    assert caught.value.retry_after == 120


def test_async_timeout_does_not_hang(scripted_server):
    scripted_server.add("/slow", Reply(200, "{}", delay=2))
    transport = HttpTransport("t", retry=RetryPolicy(max_attempts=1), read_timeout=0.3)
    with pytest.raises(SourceUnavailableError, match=r"no response within 0\.3s"):
        asyncio.run(transport.arequest(HttpRequest("GET", f"{scripted_server.url}/slow")))


def test_error_body_excerpt_has_secrets_redacted(scripted_server):
    scripted_server.add("/x", Reply(400, "invalid token s3cr3t-value for zone"))
    transport = HttpTransport("t", retry=FAST, secrets=["s3cr3t-value"])
    with pytest.raises(SourceRequestError) as caught:
        transport.request(HttpRequest("GET", f"{scripted_server.url}/x", params={"api_key": "k3y-value"}))
    assert "s3cr3t-value" not in str(caught.value) and "k3y-value" not in str(caught.value)
    assert "api_key=%2A%2A%2A" in str(caught.value) or "api_key=***" in str(caught.value)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes():
    clock = FakeClock()
    breaker = CircuitBreaker("c", failure_threshold=2, reset_seconds=10, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match="next trial in 10s"):
        breaker.before_call()
    clock.now = 10
    assert breaker.state == "half-open"
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller waits for the trial's outcome
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 20
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()


def test_final_http_errors_do_not_open_the_breaker(scripted_server):
    # A 400 means our request is wrong, not that the source is down.
    breaker = CircuitBreaker("c", failure_threshold=1)
    transport = HttpTransport("t", retry=FAST, breaker=breaker)
    scripted_server.add("/x", Reply(400, "bad"))
    for _ in range(3):
        with pytest.raises(SourceRequestError):
            transport.request(HttpRequest("GET", f"{scripted_server.url}/x"))
    assert breaker.state == "closed"


# -- the retry budget against a source that accepts and never answers --------------------------------------
class HangingServer:
    """A loopback socket that accepts connections and never answers (a hung source)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                self._held.append(self._listener.accept()[0])

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the blocked accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join()
        for conn in self._held:
            conn.close()


@dataclass(frozen=True)
class FixedBackoff(RetryPolicy):
    def backoff(self, attempt: int) -> float:
        return self.backoff_base


# Binary fractions, so the budget arithmetic is exact: 0.5 s budget, timeouts 0.0625 s + 0.25 s.
BUDGET = FixedBackoff(max_attempts=10, backoff_base=0.03125, total_seconds=0.5)


def _spy_attempts(monkeypatch, clock: FakeClock, side: str) -> list[tuple[float, float, float]]:
    """Record (clock at start, connect timeout, read timeout) per attempt; a timed-out attempt took its read timeout.

    The clock is virtual: the hung source makes each attempt last exactly its read timeout (connecting to
    loopback is instant), so the arithmetic, not the machine's speed, decides the attempts.
    """
    import httpx
    import requests

    attempts: list[tuple[float, float, float]] = []
    if side == "sync":
        real = requests.Session.request

        def sync_request(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
            connect, read = kwargs["timeout"]
            attempts.append((clock.now, connect, read))
            try:
                return real(session, method, url, **kwargs)
            except requests.Timeout:
                clock.now += read
                raise

        monkeypatch.setattr(requests.Session, "request", sync_request)
    else:
        areal = httpx.AsyncClient.request

        async def async_request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> Any:
            timeout: httpx.Timeout = kwargs["timeout"]
            attempts.append((clock.now, timeout.connect, timeout.read))
            try:
                return await areal(client, method, url, **kwargs)
            except httpx.TimeoutException:
                clock.now += timeout.read
                raise

        monkeypatch.setattr(httpx.AsyncClient, "request", async_request)
    return attempts


@pytest.mark.parametrize("side", ["sync", "async"])
def test_no_attempt_reaches_past_the_retry_budget(monkeypatch, side):
    monkeypatch.setattr(http_module, "MIN_ATTEMPT_SECONDS", 0.125)
    clock = FakeClock()
    attempts = _spy_attempts(monkeypatch, clock, side)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    async def async_sleep(seconds: float) -> None:
        clock.now += seconds

    transport = HttpTransport(
        "hung",
        connect_timeout=0.0625,
        read_timeout=0.25,
        retry=BUDGET,
        sleep=sleep,
        async_sleep=async_sleep,
        clock=clock,
    )
    with HangingServer() as server, pytest.raises(SourceUnavailableError) as caught:
        request = HttpRequest("GET", f"{server.url}/forecast")
        transport.request(request) if side == "sync" else asyncio.run(transport.arequest(request))
    # 1st: full timeouts, ends at 0.25; backoff to 0.28125. 2nd: 0.21875 left, so read is cut to
    # 0.15625 (connect 0.0625 + read = what remains), ends at 0.4375. A 3rd could not start with >= 0.125 left.
    assert attempts == [(0.0, 0.0625, 0.25), (0.28125, 0.0625, 0.15625)]
    assert all(start + connect + read <= BUDGET.total_seconds for start, connect, read in attempts)
    assert "no response within 0.15625s (read timeout) (gave up after 2 attempts)" in str(caught.value)


def test_attempt_timeouts_shrink_to_what_remains():
    clock = FakeClock()
    transport = HttpTransport(
        "t", connect_timeout=5, read_timeout=30, retry=RetryPolicy(total_seconds=120), clock=clock
    )
    assert transport.attempt_timeouts(started=0.0) == AttemptTimeouts(connect=5, read=30)
    clock.now = 110.0
    assert transport.attempt_timeouts(started=0.0) == AttemptTimeouts(connect=5, read=5)
    clock.now = 118.0
    assert transport.attempt_timeouts(started=0.0) == AttemptTimeouts(connect=1, read=1)
