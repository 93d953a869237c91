"""Transport rules shared by every hook: retries, Retry-After, breaker, redaction; sync and async alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from airflow_provider_gridaware.signals.errors import (
    CircuitOpenError,
    RateLimitedError,
    SourceAuthError,
    SourceRequestError,
    SourceUnavailableError,
)
from airflow_provider_gridaware.transport.breaker import CircuitBreaker
from airflow_provider_gridaware.transport.http import (
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
