"""One upstream request per (connection, zone, signal) per refresh, however many triggers wait on it.

Thousands of deferred tasks in one triggerer often watch the same few zones. They all ask this cache;
it returns a fresh-enough series, joins a request already in flight, or makes one request for all.
Failures are cached briefly too, so a dead source is not hammered by every waiting trigger.

Waiting is cheap on purpose: a caller that joins a request in flight holds one small future of its own
(not a chain of coroutine frames), and slowly changing inputs (recent actuals) can be read without
waiting at all while one background request refreshes them (:meth:`SharedSignalCache.background`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_gridaware.signals.errors import GridSignalError

if TYPE_CHECKING:
    from typing import TypeAlias

    from airflow_provider_gridaware.signals.models import SignalSeries

    # What a request ends with: the series, or the source's typed error (returned, not raised, to waiters).
    Outcome: TypeAlias = SignalSeries | GridSignalError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignalKey:
    """What is fetched: the same key means the same upstream request."""

    conn_id: str
    zone: str
    kind: str | None = None
    forecast: bool = True


class _Entry:
    __slots__ = ("error", "failed_at", "fetched_at", "inflight", "requests", "series", "waiters")

    def __init__(self) -> None:
        self.series: SignalSeries | None = None
        self.fetched_at = 0.0
        self.error: GridSignalError | None = None
        self.failed_at = 0.0
        self.inflight: asyncio.Task[None] | None = None
        # One future per caller waiting on the request in flight (cancelling one cancels nothing else).
        self.waiters: list[asyncio.Future[Outcome]] = []
        self.requests = 0


Fetcher = Callable[[SignalKey], Awaitable["SignalSeries"]]


@dataclass
class SharedSignalCache:
    """Per-event-loop cache of signal series with request coalescing.

    :param fetch: coroutine function that performs the upstream request for a key.
    :param error_ttl: seconds a failure is served from cache before the source is asked again.
    :param clock: monotonic clock (injectable for tests).
    """

    fetch: Fetcher
    error_ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[SignalKey, _Entry] = field(default_factory=dict)

    def peek(self, key: SignalKey, *, max_age: float) -> SignalSeries | None:
        """A fresh-enough cached series without awaiting anything (the common case for waiting triggers)."""
        entry = self._entries.get(key)
        if entry is not None and entry.series is not None and self.clock() - entry.fetched_at < max_age:
            return entry.series
        return None

    def lookup(self, key: SignalKey, *, max_age: float) -> Outcome | asyncio.Future[Outcome]:
        """Without awaiting: a series no older than ``max_age`` seconds, a recently cached failure, or else a
        future of the caller's own that ends with the outcome of the one shared request (started if needed).

        Cancelling the future (or the task awaiting it) never cancels the shared request.
        """
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        now = self.clock()
        if entry.series is not None and now - entry.fetched_at < max_age:
            return entry.series
        if entry.inflight is None:
            if entry.error is not None and now - entry.failed_at < min(self.error_ttl, max_age):
                return entry.error
            self._start(key, entry)
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        entry.waiters.append(waiter)
        return waiter

    async def get(self, key: SignalKey, *, max_age: float) -> SignalSeries:
        """A series for ``key`` no older than ``max_age`` seconds; raises the source's typed error."""
        outcome = self.lookup(key, max_age=max_age)
        if isinstance(outcome, asyncio.Future):
            outcome = await outcome
        if isinstance(outcome, GridSignalError):
            raise outcome
        return outcome

    def background(self, key: SignalKey, *, max_age: float) -> SignalSeries | None:
        """The last good series for ``key`` (whatever its age, or ``None``), never awaiting anything.

        When it is older than ``max_age`` (or missing) one background request refreshes it, unless one is in
        flight or a recent failure is cached; nobody waits on that request. For slowly changing inputs, so a
        slow or failing source never holds up (or piles up) its callers.
        """
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        now = self.clock()
        stale = entry.series is None or now - entry.fetched_at >= max_age
        failed_recently = entry.error is not None and now - entry.failed_at < min(self.error_ttl, max_age)
        if stale and entry.inflight is None and not failed_recently:
            self._start(key, entry)
        return entry.series

    def _start(self, key: SignalKey, entry: _Entry) -> None:
        # The entry holds the task (asyncio itself keeps only a weak reference to running tasks).
        entry.inflight = asyncio.ensure_future(self._refresh(key, entry))

    async def _refresh(self, key: SignalKey, entry: _Entry) -> None:
        entry.requests += 1
        outcome: Outcome | Exception
        try:
            outcome = await self.fetch(key)
        except asyncio.CancelledError:
            entry.inflight = None
            waiters, entry.waiters = entry.waiters, []
            for waiter in waiters:
                waiter.cancel()
            raise
        except GridSignalError as exc:
            entry.error, entry.failed_at = exc, self.clock()
            outcome = exc
        except Exception as exc:  # not a source error (a bug): raised in every waiter, as a shared request would
            outcome = exc
        else:
            entry.series, entry.fetched_at, entry.error = outcome, self.clock(), None
        entry.inflight = None
        waiters, entry.waiters = entry.waiters, []
        delivered = False
        for waiter in waiters:
            if waiter.done():  # its caller was cancelled
                continue
            delivered = True
            if isinstance(outcome, Exception) and not isinstance(outcome, GridSignalError):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        if not delivered and isinstance(outcome, Exception) and not isinstance(outcome, GridSignalError):
            log.error("background request for %s failed unexpectedly", key, exc_info=outcome)

    def failure(self, key: SignalKey) -> GridSignalError | None:
        """The error of the last request for ``key`` if it failed (cleared by the next success)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.error

    def last_good(self, key: SignalKey) -> tuple[SignalSeries, float] | None:
        """The last series fetched successfully for ``key`` and its age in seconds, if any."""
        entry = self._entries.get(key)
        if entry is None or entry.series is None:
            return None
        return entry.series, self.clock() - entry.fetched_at

    def request_counts(self) -> dict[SignalKey, int]:
        """Upstream requests made per key (what the triggerer benchmark reports)."""
        return {key: entry.requests for key, entry in self._entries.items()}


async def fetch_with_hook(key: SignalKey) -> SignalSeries:
    """Default fetcher: the provider hook chosen by the connection's type, async side."""
    from airflow_provider_gridaware.hooks.registry import ahook_for_connection
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery

    hook = await ahook_for_connection(key.conn_id)
    kind = SignalKind(key.kind) if key.kind else None
    return await hook.aget_signal(SignalQuery(key.zone, kind, key.forecast))


_CACHES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedSignalCache] = weakref.WeakKeyDictionary()


def shared_cache() -> SharedSignalCache:
    """The cache of the running event loop (the triggerer runs all its triggers in one loop)."""
    loop = asyncio.get_running_loop()
    cache = _CACHES.get(loop)
    if cache is None:
        cache = _CACHES[loop] = SharedSignalCache(fetch_with_hook)
    return cache
