"""From a grid event reaching the store to every waiting GridWindowTrigger having it as a constraint.

N GridWindowTriggers (default 5,000) wait in one event loop, as in a triggerer, each planning a 2-hour job in
zone GB on the replay connection (bundled GB trace, no network), with the event store on a throw-away SQLite
file (or ``--postgres URL``). Once every trigger has made its first decision, the benchmark stores ``--events``
grid-event states one at a time: by default a SIMPLE level-2 event a few hours ahead, where no trigger planned
to run, then its cancellation, in turn; with ``--over-plans``, each a new event over the window every trigger
planned (so every one must re-plan: the worst case). For each it times:

* ``install``: from ``EventStore.record`` returning (committed) to the triggerer's watcher holding a snapshot
  with it (the poll interval bounds this); every decision from then on plans with the event;
* ``all``: from the commit to the last of the N triggers having the event as a constraint: it re-planned on the
  new snapshot, or it checked that its planned window lies outside every called event and kept sleeping.

It also counts the store queries the watcher made (one ``last_seq`` a poll, plus one read of the current events
per change) against the number of waiting triggers, and the event-loop lag while the triggers re-plan.
Decisions and window checks are timed by wrapping ``grid_window.decide`` and
``GridWindowTrigger._window_clear_of`` (the product's code runs unchanged inside them).

Run: .venv/bin/python benchmarks/bench_event_wake.py [--n 5000] [--events 20] [--over-plans] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
CONN_ID = "bench_replay"
ZONE = "GB"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def make_event(index: int, start: datetime, *, cancel_odd: bool) -> Any:
    """State ``index``: a called event over four hours from ``start``; with ``cancel_odd``, odd states cancel
    the event before them."""
    from airflow_provider_gridaware.signals.grid_event import (
        EventInterval,
        EventSignal,
        EventSignalKind,
        EventStatus,
        EventTarget,
        build_event,
    )

    cancel = cancel_odd and index % 2 == 1
    signal = EventSignal(
        kind=EventSignalKind.SIMPLE,
        name="SIMPLE",
        unit="level",
        intervals=(EventInterval(start=start, end=start + timedelta(hours=4), value=2),),
    )
    return build_event(
        source="bench:vtn",
        protocol="webhook",
        event_id=f"peak-{index // 2 if cancel_odd else index}",
        modification_number=1 if cancel else 0,
        program="bench",
        status=EventStatus.CANCELLED if cancel else EventStatus.FAR,
        signals=(signal,),
        targets=(EventTarget(kind="zone", value=ZONE),),
        received_at=datetime.now(UTC),
    )


async def measure(n: int, events: int, store_url: str, over_plans: bool) -> dict[str, Any]:
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.store.events import EventStore
    from airflow_provider_gridaware.triggers import grid_window, shared_events
    from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource

    store = EventStore(store_url)
    counts = {"last_seq": 0, "current": 0}

    def last_seq() -> int:
        counts["last_seq"] += 1
        return store.last_seq()

    def current(now: datetime) -> list[Any]:
        counts["current"] += 1
        return store.current(now=now)

    watcher = shared_events.GridEventWatcher(read_last_seq=last_seq, read_current=current)
    shared_events._SHARED[asyncio.get_running_loop()] = watcher

    decided: dict[str, float] = {}  # job id -> monotonic end of its last decision
    fresh: dict[str, float] = {}  # job id -> when it had the last installed snapshot as a constraint
    after = {"installed": float("inf")}
    first_round, installed, all_fresh = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_decide = grid_window.decide
    real_install = watcher.install

    def timed_decide(job: Job, *args: Any, **kwargs: Any) -> Any:
        decision = real_decide(job, *args, **kwargs)
        at = decided[job.job_id or ""] = time.monotonic()
        if len(decided) == n:
            first_round.set()
        if at > after["installed"]:
            fresh.setdefault(job.job_id or "", at)
            if len(fresh) == n:
                all_fresh.set()
        return decision

    real_clear_of = GridWindowTrigger._window_clear_of

    def timed_clear_of(trigger: GridWindowTrigger, *args: Any) -> bool:
        clear = real_clear_of(trigger, *args)
        if clear and time.monotonic() > after["installed"]:  # it keeps its plan: the event is checked against it
            fresh.setdefault(trigger.job.job_id or "", time.monotonic())
            if len(fresh) == n:
                all_fresh.set()
        return clear

    GridWindowTrigger._window_clear_of = timed_clear_of  # type: ignore[method-assign]

    def timed_install(snapshot: Any, seq: int) -> Any:
        new = seq != watcher.seq
        change = real_install(snapshot, seq)
        if new:
            after["installed"] = watcher.read_at
            installed.set()
        return change

    watcher.install = timed_install  # type: ignore[method-assign]
    grid_window.decide = timed_decide  # type: ignore[assignment]
    now = datetime.now(UTC)
    triggers = []
    for i in range(n):
        job = Job(
            duration=timedelta(hours=2),
            earliest_start=now + timedelta(minutes=30),
            deadline=now + timedelta(hours=20),
            zones=(ZONE,),
            job_id=f"bench/{i}",
        )
        request = GridWindowRequest(
            job=job.to_dict(), sources=[SignalSource(conn_id=CONN_ID, zone=ZONE)], refresh_seconds=3600
        )
        triggers.append(GridWindowTrigger(request))
    began = time.monotonic()
    tasks = [asyncio.ensure_future(anext(t.run())) for t in triggers]
    await first_round.wait()
    first_round_s = time.monotonic() - began
    await asyncio.sleep(1.0)

    installs: list[float] = []
    alls: list[float] = []
    lags: list[float] = []
    polls_before, seconds_before = counts["last_seq"], time.monotonic()
    polls_before_at = seconds_before
    for index in range(events):
        installed.clear()
        all_fresh.clear()
        fresh.clear()
        after["installed"] = float("inf")
        # Over the window every trigger has planned (all must re-plan), or a few hours ahead (none planned there).
        planned = triggers[0]._previous
        start = planned.start - timedelta(minutes=30) if over_plans and planned else now + timedelta(hours=1)
        await asyncio.to_thread(store.record, make_event(index, start, cancel_odd=not over_plans))
        committed = time.monotonic()
        lagging = asyncio.ensure_future(_lag(lags))
        await asyncio.wait_for(installed.wait(), 60)
        await asyncio.wait_for(all_fresh.wait(), 300)
        lagging.cancel()
        installs.append(after["installed"] - committed)
        alls.append(max(fresh.values()) - committed)
        await asyncio.sleep(0.5)  # all asleep again before the next event
    replanned = sum(1 for at in decided.values() if at > polls_before_at)
    polls = counts["last_seq"] - polls_before
    poll_rate = polls / (time.monotonic() - seconds_before)
    alive = sum(not t.done() for t in tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    store.close()
    return {
        "n": n,
        "events": events,
        "event_over": "the planned windows" if over_plans else "no planned window",
        "replanned": replanned,
        "alive": alive,
        "first_round_s": round(first_round_s, 1),
        "install_p50_ms": round(statistics.median(installs) * 1000, 1),
        "install_p99_ms": round(percentile(installs, 0.99) * 1000, 1),
        "all_p50_ms": round(statistics.median(alls) * 1000, 1),
        "all_p99_ms": round(percentile(alls, 0.99) * 1000, 1),
        "all_max_ms": round(max(alls) * 1000, 1),
        "lag_p99_ms": round(percentile(lags, 0.99) * 1000, 1) if lags else 0.0,
        "store_polls_per_s": round(poll_rate, 2),
        "event_reads": counts["current"],
    }


async def _lag(lags: list[float]) -> None:
    """Event-loop lag samples (a 10 ms ticker) until cancelled."""
    while True:
        tick = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - tick - 0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="waiting triggers")
    parser.add_argument("--events", type=int, default=20, help="event states stored, one at a time")
    parser.add_argument(
        "--over-plans",
        action="store_true",
        help="each event covers the window the triggers planned (all re-plan), instead of hours they did not plan in",
    )
    parser.add_argument("--postgres", metavar="URL", help="the event store on this PostgreSQL URL instead of SQLite")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-event-wake-")
    os.environ.setdefault("AIRFLOW_HOME", home)
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps({"conn_type": "gridaware_replay"})
    store_url = args.postgres or f"sqlite:///{home}/events.db"
    os.environ["GRIDAWARE_STORE_URL"] = store_url  # the forecast archive the hooks write to, too
    logging.disable(logging.WARNING)  # trigger logs are not what is measured
    result = asyncio.run(measure(args.n, args.events, store_url, args.over_plans))
    print(f"store {store_url.split(':', 1)[0]}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    print(json.dumps(result))
    print(
        f"event ({result['event_over']}) stored -> every one of {result['n']} waiting triggers has it as a constraint "
        f"({result['replanned']} re-planned): "
        f"p50 {result['all_p50_ms']:.0f} ms, p99 {result['all_p99_ms']:.0f} ms over {result['events']} events "
        f"(watcher has it: p50 {result['install_p50_ms']:.0f} ms); "
        f"{result['store_polls_per_s']} store polls/s for all of them"
    )


if __name__ == "__main__":
    main()
