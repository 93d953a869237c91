"""One upstream request per (connection, zone, signal) per refresh, however many triggers wait on it.

Thousands of deferred tasks in one triggerer often watch the same few zones. They all ask this cache;
it returns a fresh-enough series, joins a request already in flight, or makes one request for all.
Failures are cached briefly too, so a dead source is not hammered by every waiting trigger.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_gridaware.signals.errors import GridSignalError

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries


@dataclass(frozen=True)
class SignalKey:
    """What is fetched: the same key means the same upstream request."""

    conn_id: str
    zone: str
    kind: str | None = None
    forecast: bool = True


@dataclass
class _Entry:
    series: SignalSeries | None = None
    fetched_at: float = 0.0
    error: GridSignalError | None = None
    failed_at: float = 0.0
    inflight: asyncio.Task[SignalSeries] | None = None
    requests: int = 0


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

    async def get(self, key: SignalKey, *, max_age: float) -> SignalSeries:
        """A series for ``key`` no older than ``max_age`` seconds; raises the source's typed error."""
        entry = self._entries.setdefault(key, _Entry())
        now = self.clock()
        if entry.series is not None and now - entry.fetched_at < max_age:
            return entry.series
        if entry.inflight is None:
            if entry.error is not None and now - entry.failed_at < min(self.error_ttl, max_age):
                raise entry.error
            entry.inflight = asyncio.ensure_future(self._refresh(key, entry))
        # shield: one waiter being cancelled (its task killed) must not cancel the shared request.
        return await asyncio.shield(entry.inflight)

    async def _refresh(self, key: SignalKey, entry: _Entry) -> SignalSeries:
        entry.requests += 1
        try:
            series = await self.fetch(key)
        except GridSignalError as exc:
            entry.error, entry.failed_at = exc, self.clock()
            raise
        finally:
            entry.inflight = None
        entry.series, entry.fetched_at, entry.error = series, self.clock(), None
        return series

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
