"""The fault matrix every HTTP hook is tested against, shared so each hook meets the same bar.

Usage in a contract test module::

    @pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
    def test_faults(fault, scripted_server, ...):
        check_fault(fault, server=scripted_server, path="/v3/forecast", call=lambda: hook.get_forecast("X"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from airflow_provider_gridaware.signals.errors import (
    GridSignalError,
    MalformedPayloadError,
    RateLimitedError,
    SourceAuthError,
    SourceRequestError,
    SourceUnavailableError,
)
from tests.support.scripted_server import Reply, ScriptedServer


@dataclass(frozen=True)
class Fault:
    name: str
    replies: tuple[Reply, ...]
    error: type[GridSignalError]
    message: str  # a fragment the error message must contain
    attempts: int | None = None  # requests the server must have seen
    #: Connection extra laid over every connection the test makes (``make_connection`` in tests/conftest.py).
    extra: dict[str, object] = field(default_factory=dict)


FAULTS = [
    # Every attempt waits out its read timeout: 0.5 s (not the tests' usual 2 s) keeps the four at 2 s in all.
    Fault(
        "timeout",
        (Reply(200, b"{}", delay=3.0),),
        SourceUnavailableError,
        "no response within 0.5s",
        extra={"timeout": 0.5},
    ),
    Fault("http_500", (Reply(500, "internal error"),), SourceUnavailableError, "HTTP 500", attempts=4),
    Fault("http_401", (Reply(401, {"error": "bad credentials"}),), SourceAuthError, "HTTP 401", attempts=1),
    Fault("http_403", (Reply(403, "forbidden"),), SourceAuthError, "HTTP 403", attempts=1),
    Fault("http_404", (Reply(404, "unknown zone"),), SourceRequestError, "HTTP 404", attempts=1),
    Fault(
        "http_429_long_retry_after",
        (Reply(429, "slow down", headers={"Retry-After": "3600"}),),
        RateLimitedError,
        "HTTP 429",
        attempts=1,
    ),
    Fault(
        "truncated_json",
        (
            Reply(
                200,
                b'{"data": [{"point_time": "2023-06-08T00:05:00+00:00", "va',
                content_type="application/json",
            ),
        ),
        MalformedPayloadError,
        "",
        attempts=1,
    ),
    Fault(
        "html_instead_of_json",
        (Reply(200, "<html>maintenance</html>"),),
        MalformedPayloadError,
        "",
        attempts=1,
    ),
]


def check_fault(
    fault: Fault,
    *,
    server: ScriptedServer,
    path: str,
    call: Callable[[], object],
    secrets: tuple[str, ...] = (),
    method: str = "GET",
) -> GridSignalError:
    """Script ``fault`` on ``path``, run ``call``, and check the typed error, its message and timing."""
    server.add(path, *fault.replies, method=method)
    started = time.monotonic()
    with pytest.raises(fault.error) as caught:
        call()
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert fault.message in message, message
    for secret in secrets:
        assert secret not in message, f"secret leaked into: {message}"
    if fault.attempts is not None:
        assert len(server.requests_to(path)) == fault.attempts
    assert elapsed < 20, f"{fault.name} took {elapsed:.1f}s: the call must not hang"
    return caught.value


def check_retry_after_honoured(
    server: ScriptedServer, path: str, ok_body: object, call: Callable[[], object]
) -> object:
    """A 429 with a short Retry-After is retried after waiting, then the good answer is used."""
    server.add(path, Reply(429, "busy", headers={"Retry-After": "1"}), Reply(200, ok_body))
    started = time.monotonic()
    result = call()
    assert time.monotonic() - started >= 0.9, "Retry-After was not honoured"
    assert len(server.requests_to(path)) == 2
    return result


def check_connection_refused(call: Callable[[], object]) -> None:
    with pytest.raises(SourceUnavailableError) as caught:
        call()
    assert "could not connect" in str(caught.value)
