"""OpenADR 3: parse throughput of the real event shape, and poll-to-stored time against the loopback VTN.

Prints figures; asserts nothing about time. Run: ``.venv/bin/python benchmarks/bench_openadr3.py``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_gridaware.sources.openadr3 import parse_event
from airflow_provider_gridaware.store.events import EventStore
from tests.support.openadr3_vtn import OpenADR3VTN, fixture

UTC = timezone.utc


def parse_rate(rounds: int = 2000) -> float:
    event = fixture("example_event_3.1.json")
    at = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    started = time.perf_counter()
    for _ in range(rounds):
        parse_event(event, source="openadr3:bench", received_at=at)
    return rounds / (time.perf_counter() - started)


def poll_to_stored(events: int, polls: int = 20) -> list[float]:
    from airflow_provider_gridaware.hooks.openadr3 import OpenADR3Hook

    with tempfile.TemporaryDirectory() as folder, OpenADR3VTN("bench", "bench-secret") as vtn:
        program = vtn.add_program("dr-peak")
        start = datetime.now(UTC) + timedelta(hours=1)
        for i in range(events):
            vtn.add_event(program, start=start + timedelta(minutes=i))
        os.environ["AIRFLOW_CONN_VTN_BENCH"] = json.dumps(
            {"conn_type": "gridaware_openadr3", "host": vtn.url, "login": "bench", "password": "bench-secret"}
        )
        hook = OpenADR3Hook("vtn_bench")
        with EventStore(f"sqlite:///{folder}/events.db") as store:
            hook.receive(store)  # first poll: token, and every event NEW (not timed)
            times = []
            for _ in range(polls):
                started = time.perf_counter()
                hook.receive(store)
                times.append(time.perf_counter() - started)
    return times


def main() -> None:
    logging.disable(logging.INFO)  # one line per stored event would drown the figures
    print(f"parse_event (3.1 fixture, 3 intervals x 3 payloads): {parse_rate():,.0f} events/s")
    for count in (1, 50, 200):
        times = sorted(poll_to_stored(count))
        p50 = statistics.median(times) * 1000
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))] * 1000
        print(f"receive() of {count:>3} events (pages of 50, SQLite store): p50 {p50:6.1f} ms, max {p99:6.1f} ms")


if __name__ == "__main__":
    main()
