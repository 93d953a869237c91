"""The triggerer-wide signal cache: one upstream request per key per refresh, failures not hammered."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.signals import (
    CarbonMetric,
    SeriesType,
    SignalKind,
    SourceUnavailableError,
    build_series,
)
from airflow_provider_gridaware.triggers.shared_signals import SharedSignalCache, SignalKey

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def a_series(value: float = 1.0):
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="Z",
        source="t",
        series_type=SeriesType.FORECAST,
        issued_at=T0,
        unit="g/kWh",
        points=[(T0, T0 + timedelta(hours=1), value)],
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_concurrent_waiters_share_one_request():
    calls: list[SignalKey] = []

    async def fetch(key):
        calls.append(key)
        await asyncio.sleep(0.05)
        return a_series()

    async def main():
        cache = SharedSignalCache(fetch)
        keys = [SignalKey("c1", "DE"), SignalKey("c1", "FR")]
        results = await asyncio.gather(*(cache.get(keys[i % 2], max_age=300) for i in range(2000)))
        assert all(r.values == [1.0] for r in results)
        return cache

    cache = asyncio.run(main())
    assert sorted(k.zone for k in calls) == ["DE", "FR"]
    assert set(cache.request_counts().values()) == {1}


def test_refresh_after_max_age_and_keep_last_good_on_failure():
    clock = Clock()
    outcomes = [a_series(1.0), SourceUnavailableError("down", source="c1"), a_series(3.0)]

    async def fetch(key):
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def main():
        cache = SharedSignalCache(fetch, error_ttl=30, clock=clock)
        key = SignalKey("c1", "DE")
        assert (await cache.get(key, max_age=60)).values == [1.0]
        clock.now = 30
        assert (await cache.get(key, max_age=60)).values == [1.0]  # still fresh: no request
        clock.now = 61
        with pytest.raises(SourceUnavailableError):
            await cache.get(key, max_age=60)
        series, age = cache.last_good(key)
        assert series.values == [1.0] and age == 61
        clock.now = 80
        with pytest.raises(SourceUnavailableError):  # failure served from cache: the source is not hammered
            await cache.get(key, max_age=60)
        assert cache.request_counts()[key] == 2
        clock.now = 92
        assert (await cache.get(key, max_age=60)).values == [3.0]
        assert cache.request_counts()[key] == 3

    asyncio.run(main())


def test_cancelled_waiter_does_not_cancel_the_shared_request():
    async def fetch(key):
        await asyncio.sleep(0.05)
        return a_series(7.0)

    async def main():
        cache = SharedSignalCache(fetch)
        key = SignalKey("c1", "DE")
        first = asyncio.ensure_future(cache.get(key, max_age=60))
        second = asyncio.ensure_future(cache.get(key, max_age=60))
        await asyncio.sleep(0.01)
        first.cancel()
        assert (await second).values == [7.0]
        assert cache.request_counts()[key] == 1

    asyncio.run(main())


def test_waiters_hold_a_future_each_and_unexpected_errors_reach_every_waiter():
    async def fetch(key):
        await asyncio.sleep(0.01)
        raise RuntimeError("bug in the hook")

    async def main():
        cache = SharedSignalCache(fetch)
        key = SignalKey("c1", "DE")
        first, second = cache.lookup(key, max_age=60), cache.lookup(key, max_age=60)
        assert isinstance(first, asyncio.Future) and isinstance(second, asyncio.Future) and first is not second
        results = await asyncio.gather(cache.get(key, max_age=60), first, second, return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        assert cache.request_counts()[key] == 1

    asyncio.run(main())


def test_background_serves_the_last_good_series_while_one_request_refreshes_it():
    clock = Clock()
    started: list[float] = []

    async def main():
        release = asyncio.Event()

        async def fetch(key):
            started.append(clock.now)
            if len(started) > 1:
                await release.wait()  # a slow refresh
            return a_series(float(len(started)))

        cache = SharedSignalCache(fetch, clock=clock)
        key = SignalKey("c1", "DE", forecast=False)
        assert cache.background(key, max_age=60) is None  # nothing yet: one request starts, nobody waits on it
        assert cache.background(key, max_age=60) is None
        await asyncio.sleep(0.01)
        first = cache.background(key, max_age=60)
        assert first is not None and first.values == [1.0] and len(started) == 1
        clock.now = 61
        for _ in range(3):  # stale: still served at once, and refreshed by a single background request
            assert cache.background(key, max_age=60) is first
            await asyncio.sleep(0)
        assert len(started) == 2
        release.set()
        await asyncio.sleep(0.01)
        refreshed = cache.background(key, max_age=60)
        assert refreshed is not None and refreshed.values == [2.0]
        assert cache.request_counts()[key] == 2

    asyncio.run(main())


def test_background_failures_are_cached_too():
    clock = Clock()

    async def fetch(key):
        raise SourceUnavailableError("down", source="c1")

    async def main():
        cache = SharedSignalCache(fetch, error_ttl=30, clock=clock)
        key = SignalKey("c1", "DE", forecast=False)
        for now in (0, 10, 20):
            clock.now = now
            assert cache.background(key, max_age=3600) is None
            await asyncio.sleep(0)
        assert cache.request_counts()[key] == 1
        assert isinstance(cache.failure(key), SourceUnavailableError)
        clock.now = 31
        cache.background(key, max_age=3600)
        await asyncio.sleep(0)
        assert cache.request_counts()[key] == 2

    asyncio.run(main())
