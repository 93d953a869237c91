"""The webhook relay under load: accept-to-stored latency at a steady request rate, and zero accepted events lost.

Starts ``gridaware relay`` (the shipped command, uvicorn) as a subprocess with a fresh SQLite store and a
``gridaware_webhook`` connection from the environment, sends signed deliveries at ``--rate`` per second for
``--seconds`` from this process (httpx, asyncio), then checks that every event answered 2xx is in the store.
A 2xx is only sent after the store committed, so the client's send-to-2xx time is accept-to-stored.

Prints figures; asserts nothing about time. Run: ``.venv/bin/python benchmarks/bench_relay.py [--rate 200] [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_gridaware.relay.auth import sign
from airflow_provider_gridaware.store.events import EventStore

SECRET = "benchmark-shared-secret-0123456789"
VENV_BIN = Path(sys.executable).parent
SENDERS = 50


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def event_body(index: int) -> bytes:
    start = int(time.time()) + 3600
    iso = lambda s: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s))  # noqa: E731
    return json.dumps(
        {
            "event_id": f"bench-{index}",
            "modification_number": 0,
            "status": "far",
            "signals": [
                {
                    "kind": "simple",
                    "name": "SIMPLE",
                    "unit": "level",
                    "intervals": [{"start": iso(start), "end": iso(start + 3600), "value": 1}],
                }
            ],
        }
    ).encode()


async def drive(url: str, rate: float, seconds: float) -> tuple[list[float], list[str], int, dict[int, list[float]]]:
    latencies: list[float] = []
    by_window: dict[int, list[float]] = {}
    accepted: list[str] = []
    failures = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:

        async def one(index: int) -> None:
            nonlocal failures
            body = event_body(index)
            timestamp, delivery = str(int(time.time())), uuid.uuid4().hex
            headers = {
                "X-Gridaware-Timestamp": timestamp,
                "X-Gridaware-Delivery": delivery,
                "X-Gridaware-Signature": sign(SECRET.encode(), timestamp, delivery, body),
            }
            began = time.perf_counter()
            try:
                response = await client.post(f"{url}/events/bench", content=body, headers=headers)
            except httpx.HTTPError:
                failures += 1
                return
            if response.status_code == 200:
                latencies.append(time.perf_counter() - began)
                by_window.setdefault(int(index / rate) // 10, []).append(latencies[-1])
                accepted.append(f"bench-{index}")
            else:
                failures += 1

        started = time.perf_counter()
        total = int(rate * seconds)
        next_index = 0

        async def sender() -> None:
            # Each request leaves at its scheduled time (index / rate) on the first free sender: the rate
            # holds whatever the answers take, as long as fewer than SENDERS are in flight.
            nonlocal next_index
            while next_index < total:
                index, next_index = next_index, next_index + 1
                delay = started + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await one(index)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return latencies, accepted, failures, by_window


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--store", default=None, help="SQLAlchemy URL of an empty store (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store_url = args.store or f"sqlite:///{Path(folder) / 'store.db'}"
        port = free_port()
        env = {
            **os.environ,
            "GRIDAWARE_STORE_URL": store_url,
            "AIRFLOW_CONN_BENCH": json.dumps({"conn_type": "gridaware_webhook", "password": SECRET}),
            "AIRFLOW_HOME": folder,
        }
        # The relay logs a line per delivery: to a file, as a service would (a pipe nobody reads would block it).
        log_file = (Path(folder) / "relay.log").open("wb")
        relay = subprocess.Popen(
            [str(VENV_BIN / "gridaware"), "relay", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if relay.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"relay did not start: {relay.stderr.read().decode()[-2000:] if relay.stderr else ''}"
                    )
                time.sleep(0.1)
            latencies, accepted, failures, by_window = asyncio.run(drive(url, args.rate, args.seconds))
        finally:
            relay.terminate()
            relay.wait(timeout=20)
            log_file.close()
        with EventStore(store_url) as store:
            stored = {s.event.event_id for s in store.since(0, limit=10_000_000)}
    lost = [event_id for event_id in accepted if event_id not in stored]
    kind = store_url.split(":", 1)[0]
    print(f"relay: {args.rate:g} signed requests/s for {args.seconds:g} s, {kind} store, uvicorn 1 worker")
    print(f"  accepted {len(accepted)}, refused or failed {failures}, lost (2xx but not stored) {len(lost)}")
    if latencies:
        print(
            f"  accept-to-stored: p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )
        for window, values in sorted(by_window.items()):
            print(
                f"    sent in {window * 10:>3}-{window * 10 + 10} s: p50 {statistics.median(values) * 1000:.1f} ms,"
                f" p99 {percentile(values, 0.99) * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
