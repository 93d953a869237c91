"""One request/response model with a sync (requests) and an async (httpx) side sharing every rule.

Rules, identical on both sides:
- a timeout is always set (connect and read);
- TLS is verified unless the connection says otherwise;
- transient failures (connect errors, timeouts, 429, 500, 502, 503, 504) are retried with exponential
  backoff and jitter, honouring ``Retry-After`` up to a cap;
- failures end in a typed :mod:`~airflow_provider_gridaware.signals.errors` error whose message names
  the request with secrets redacted;
- each call passes through the connection's circuit breaker.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from airflow_provider_gridaware.signals.errors import (
    GridSignalError,
    MalformedPayloadError,
    RateLimitedError,
    SourceAuthError,
    SourceRequestError,
    SourceUnavailableError,
)
from airflow_provider_gridaware.transport.breaker import CircuitBreaker

if TYPE_CHECKING:
    import ssl

    import httpx
    import requests

log = logging.getLogger(__name__)

# Query parameters whose values never reach a log line or an error message.
SENSITIVE_PARAMS = frozenset(
    {
        "securitytoken",
        "token",
        "access_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "client_secret",
        "auth",
    }
)
REDACTED = "***"
# A retry is not started with less of the budget left than this: it could not get an answer anyway.
MIN_ATTEMPT_SECONDS = 0.5
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
BODY_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class HttpRequest:
    """What to send. ``url`` is absolute; ``params`` are added to its query string."""

    method: str
    url: str
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth: tuple[str, str] | None = None
    form: Mapping[str, str] | None = None
    json_body: Any = None
    # Error statuses handed back to the flow unread (a source that explains its errors in the body).
    accept_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True)
class HttpResponse:
    """What came back, already fully read. ``display_url`` has secrets redacted."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    display_url: str
    source: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or :class:`MalformedPayloadError` saying where parsing stopped."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedPayloadError(
                f"GET {self.display_url}: body is not valid JSON ({exc}); first bytes: {self.text[:120]!r}",
                source=self.source,
            ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    :param max_attempts: total tries including the first.
    :param backoff_base: seconds before the first retry; doubles each time.
    :param backoff_max: cap on one backoff sleep.
    :param max_retry_after: the longest ``Retry-After`` we honour by sleeping; a longer one ends the call
        with :class:`RateLimitedError` so the caller (a trigger with a deadline) can decide.
    :param total_seconds: budget for all attempts and sleeps of one call; no attempt's timeouts reach past it.
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    total_seconds: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for retry number ``attempt`` (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def redact_url(url: str, params: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> str:
    """``url`` plus ``params`` with sensitive query values and known secrets replaced by ``***``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list((params or {}).items())
    safe = [(k, REDACTED if k.lower() in SENSITIVE_PARAMS else v) for k, v in query]
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    text = urlunsplit((parts.scheme, netloc, parts.path, urlencode(safe, safe=":/-*"), ""))
    return redact_text(text, secrets)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


@dataclass(frozen=True)
class AttemptTimeouts:
    """The timeouts of one attempt, capped so that the attempt ends within the call's retry budget.

    :param connect: seconds to establish the connection.
    :param read: seconds to wait for each read once connected.
    """

    connect: float
    read: float


class _Retry(Exception):
    """Internal: a transient failure worth another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


class HttpTransport:
    """Sends :class:`HttpRequest` with the shared rules; ``request`` is sync, ``arequest`` async.

    :param source: name used in errors and logs (connection id or source name).
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for each read.
    :param verify: verify TLS certificates (a CA bundle path is accepted too).
    :param retry: the retry policy.
    :param breaker: the circuit breaker shared by all calls on this connection, or ``None``.
    :param secrets: strings that must never appear in a message (tokens, passwords).
    :param sleep: the sync sleep between attempts.
    :param async_sleep: the async sleep between attempts.
    :param clock: monotonic seconds, for the retry budget.
    """

    def __init__(
        self,
        source: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        verify: bool | str = True,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        secrets: Iterable[str] = (),
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.verify = verify
        self.retry = retry or RetryPolicy()
        self.breaker = breaker
        self.secrets: set[str] = {s for s in secrets if s}
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        self._session: requests.Session | None = None

    def add_secret(self, secret: str | None) -> None:
        """Redact ``secret`` (e.g. a token obtained at login) from every later message."""
        if secret:
            self.secrets.add(secret)

    def display(self, request: HttpRequest) -> str:
        return f"{request.method} {redact_url(request.url, request.params, self.secrets)}"

    # -- outcome classification, shared by both sides ----------------------------------------------
    def _classify(self, request: HttpRequest, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``_Retry`` for a transient status, a typed error for a final one; return if OK."""
        if status < 400 or status in request.accept_statuses:
            return
        excerpt = redact_text(body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace"), self.secrets).strip()
        what = f"{self.display(request)} -> HTTP {status}" + (f": {excerpt}" if excerpt else "")
        if status in self.retry.retry_statuses:
            raise _Retry(what, parse_retry_after(headers.get("retry-after")), status)
        if status in (401, 403):
            raise SourceAuthError(f"{what} (check the connection's credentials)", source=self.source)
        raise SourceRequestError(what, source=self.source, status=status)

    def attempt_timeouts(self, started: float) -> AttemptTimeouts:
        """The timeouts for an attempt starting now, in a call that started at ``started`` (clock seconds).

        Connecting and then waiting for a read together never reach past the retry budget: with less
        left than the configured timeouts, both shrink (connect to at most half of what remains).

        :param started: the clock reading when the call began.
        """
        remaining = max(0.0, self.retry.total_seconds - (self._clock() - started))
        connect = min(self.connect_timeout, remaining / 2)
        return AttemptTimeouts(connect=connect, read=min(self.read_timeout, remaining - connect))

    def _next_delay(self, attempt: int, failure: _Retry, started: float) -> float | None:
        """Seconds to sleep before the next attempt, or ``None`` to give up now."""
        if attempt >= self.retry.max_attempts:
            return None
        if failure.retry_after is not None:
            if failure.retry_after > self.retry.max_retry_after:
                return None
            delay = failure.retry_after
        else:
            delay = self.retry.backoff(attempt)
        if self._clock() - started + delay + MIN_ATTEMPT_SECONDS > self.retry.total_seconds:
            return None
        return delay

    def _give_up(self, attempt: int, failure: _Retry) -> GridSignalError:
        message = f"{failure.reason} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})"
        if failure.status in (429, 503) and failure.retry_after is not None:
            return RateLimitedError(message, source=self.source, retry_after=failure.retry_after)
        if failure.status == 429:
            return RateLimitedError(message, source=self.source)
        return SourceUnavailableError(message, source=self.source)

    def _before(self) -> None:
        if self.breaker is not None:
            self.breaker.before_call()

    def _after(self, ok: bool) -> None:
        if self.breaker is not None:
            if ok:
                self.breaker.record_success()
            else:
                self.breaker.record_failure()

    def _response(self, request: HttpRequest, status: int, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        lowered = {k.lower(): v for k, v in headers.items()}
        return HttpResponse(status, lowered, body, redact_url(request.url, request.params, self.secrets), self.source)

    def _transport_failure(self, request: HttpRequest, exc: Exception, timeouts: AttemptTimeouts) -> _Retry:
        """A short, secret-free reason for a failure below HTTP (refused, timed out, reset...)."""
        name = type(exc).__name__
        errno = _ERRNO_RE.search(str(exc))
        if "ConnectTimeout" in name:
            reason = f"connect timed out after {timeouts.connect:g}s"
        elif "Timeout" in name:
            reason = f"no response within {timeouts.read:g}s (read timeout)"
        elif "Connect" in name:
            reason = f"could not connect ({errno.group(1) if errno else 'refused or unreachable'})"
        else:
            detail = redact_text(str(exc), self.secrets).split("?", 1)[0]
            reason = f"{name}: {detail[:160]}"
        return _Retry(f"{self.display(request)}: {reason}")

    # -- sync side -----------------------------------------------------------------------------------
    def request(self, request: HttpRequest) -> HttpResponse:
        """Send ``request`` with retries; return the response or raise a typed error."""
        import requests

        self._before()
        if self._session is None:
            self._session = requests.Session()
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            timeouts = self.attempt_timeouts(started)
            try:
                raw = self._session.request(
                    request.method,
                    request.url,
                    params=dict(request.params) or None,
                    headers=dict(request.headers),
                    auth=request.basic_auth,
                    data=request.form,
                    json=request.json_body,
                    timeout=(timeouts.connect, timeouts.read),
                    verify=self.verify,
                )
                body = raw.content
                self._classify(request, raw.status_code, raw.headers, body)
            except _Retry as failure:
                outcome: _Retry = failure
            except requests.RequestException as exc:
                outcome = self._transport_failure(request, exc, timeouts)
            except GridSignalError:
                self._after(ok=True)  # the source answered; it is the request that is wrong
                raise
            else:
                self._after(ok=True)
                return self._response(request, raw.status_code, raw.headers, body)
            delay = self._next_delay(attempt, outcome, started)
            if delay is None:
                self._after(ok=False)
                raise self._give_up(attempt, outcome)
            log.warning("%s; retry %d in %.1fs", outcome.reason, attempt, delay)
            self._sleep(delay)

    # -- async side ----------------------------------------------------------------------------------
    async def arequest(self, request: HttpRequest) -> HttpResponse:
        """Async twin of :meth:`request` (for triggers): same retries, same errors."""
        import httpx

        self._before()
        started = self._clock()
        attempt = 0
        async with httpx.AsyncClient(verify=tls_context(self.verify)) as client:
            while True:
                attempt += 1
                timeouts = self.attempt_timeouts(started)
                try:
                    raw: httpx.Response = await client.request(
                        request.method,
                        request.url,
                        params=dict(request.params) or None,
                        headers=dict(request.headers),
                        auth=request.basic_auth,
                        data=request.form,
                        json=request.json_body,
                        timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
                    )
                    body = raw.content
                    self._classify(request, raw.status_code, raw.headers, body)
                except _Retry as failure:
                    outcome: _Retry = failure
                except httpx.HTTPError as exc:
                    outcome = self._transport_failure(request, exc, timeouts)
                except GridSignalError:
                    self._after(ok=True)
                    raise
                else:
                    self._after(ok=True)
                    return self._response(request, raw.status_code, raw.headers, body)
                delay = self._next_delay(attempt, outcome, started)
                if delay is None:
                    self._after(ok=False)
                    raise self._give_up(attempt, outcome)
                log.warning("%s; retry %d in %.1fs", outcome.reason, attempt, delay)
                await self._async_sleep(delay)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


@functools.lru_cache(maxsize=16)
def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for a ``verify`` setting (a CA bundle file or directory is accepted too), built once.

    Building one loads the CA bundle (tens of milliseconds of CPU), and ``httpx.AsyncClient`` builds one for
    every client, plain-HTTP URLs included; a trigger's request opens a client each time. A context holds
    no connection state, so the triggerer's requests can share it.
    """
    import ssl

    if isinstance(verify, str):
        if Path(verify).is_dir():
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    import httpx

    return httpx.create_ssl_context(verify=verify)
