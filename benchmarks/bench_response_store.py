"""The grid-event response's store writes for a fleet: claim and record the pauses, claim and record the releases.

Run: .venv/bin/python benchmarks/bench_response_store.py [--holds 100] [--rounds 20] [--backend sqlite --backend postgres]

Each round plans an event over ``--holds`` running Jobs with the product's planner, then times each of the
store's four writes for the whole fleet as a pass makes them (``claim_pauses``, ``finish_pauses``, then, after
the event's end, ``claim_releases`` and ``finish_releases``), and a second runner's ``claim_releases`` of the
same holds (it wins none). Prints the median and p90 over the rounds (the first round is a warm-up, not
counted). PostgreSQL gets a throw-away database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from _stores import REPO, add_backend_option, on_each_store

from airflow_provider_gridaware.planning.grid_response import InFlightWork, TargetKind, WorkState, plan_response
from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget, GridEvent
from airflow_provider_gridaware.store.responses import ResponseStore

sys.path.insert(0, str(REPO))  # the events the unit tests build live with the tests
from tests.support.grid_events import T0, make_event, simple_signal

DURING = T0 + timedelta(minutes=30)
AFTER = T0 + timedelta(hours=2)
WRITES = ("claim_pauses", "finish_pauses", "claim_releases", "claim_releases (lost)", "finish_releases")
R = TypeVar("R")


def event(event_id: str, status: EventStatus) -> GridEvent:
    return make_event(
        source="webhook:bench",
        protocol="webhook",
        event_id=event_id,
        modification_number=1 if status is EventStatus.COMPLETED else 0,
        status=status,
        targets=(EventTarget(kind="zone", value="GB"),),
        signals=(simple_signal(start=T0),),
    )


def timed(call: Callable[[], R], took: list[float]) -> R:
    began = time.perf_counter()
    result = call()
    took.append(time.perf_counter() - began)
    return result


def one_round(
    one: ResponseStore, two: ResponseStore, fleet: list[InFlightWork], n: int, took: dict[str, list[float]]
) -> None:
    active, ended = event(f"e{n}", EventStatus.ACTIVE), event(f"e{n}", EventStatus.COMPLETED)
    plan = plan_response([active], fleet, [], now=DURING)
    ids = timed(lambda: one.claim_pauses(plan.pauses), took["claim_pauses"])
    timed(lambda: one.finish_pauses([(i, "paused", {"job": str(i)}) for i in ids if i]), took["finish_pauses"])
    paused = [InFlightWork(w.target, w.kind, w.priority_class, w.zone, WorkState.PAUSED, w.power_kw) for w in fleet]
    end = plan_response([ended], paused, [h.hold for h in one.open_holds()], now=AFTER)
    releases = [(s.hold.hold_id, s.event.modification_number if s.event else None, s.reason) for s in end.releases]
    won = timed(lambda: one.claim_releases(releases), took["claim_releases"])
    lost = timed(lambda: two.claim_releases(releases), took["claim_releases (lost)"])
    assert len(releases) == len(fleet) and all(won) and not any(lost)
    timed(lambda: one.finish_releases([(i, "resumed", {}) for i, _, _ in releases]), took["finish_releases"])


def bench(url: str, holds: int, rounds: int) -> None:
    fleet = [
        InFlightWork(f"job-{i}", TargetKind.KUBERNETES_JOB, PriorityClass.BATCH, "GB", WorkState.RUNNING, 1.0)
        for i in range(holds)
    ]
    took: dict[str, list[float]] = {w: [] for w in WRITES}
    with ResponseStore(url) as one, ResponseStore(url) as two:
        for n in range(rounds + 1):
            one_round(one, two, fleet, n, took)
            if n == 0:  # the warm-up: connections, statement caches
                for samples in took.values():
                    samples.clear()
    for write in WRITES:
        samples = sorted(took[write])
        p90 = samples[min(len(samples) - 1, round(0.9 * (len(samples) - 1)))]
        print(f"  {write:22s} median {statistics.median(samples) * 1000:7.2f} ms  p90 {p90 * 1000:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--holds", type=int, default=100, help="Jobs paused and resumed per round (default 100)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds measured after one warm-up (default 20)")
    add_backend_option(parser)
    args = parser.parse_args()
    heading = f"{args.holds} holds, {args.rounds} rounds"
    on_each_store(args.backend, heading, lambda url: bench(url, args.holds, args.rounds))


if __name__ == "__main__":
    main()
