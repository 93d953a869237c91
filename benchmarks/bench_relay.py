"""The webhook relay under load: accept-to-stored latency at a steady request rate, and zero accepted events lost.

Starts ``gridaware relay`` (the shipped command, uvicorn) as a subprocess with a fresh SQLite store and a
``gridaware_webhook`` connection from the environment, sends signed deliveries at ``--rate`` per second for
``--seconds`` from this process (aiohttp, asyncio, open loop), then checks that every event answered 2xx is in
the store. A 2xx is only sent after the store committed, so the client's send-to-2xx time is accept-to-stored.
It also prints how late the client sent against its schedule (the machine is shared: a late client offers
less than the asked rate) and the relay's CPU time.

Prints figures; asserts nothing about time. Run:
``.venv/bin/python benchmarks/bench_relay.py [--rate 200] [--seconds 60] [--postgres | --store-url URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_gridaware.relay.auth import sign
from airflow_provider_gridaware.store.events import EventStore

SECRET = "benchmark-shared-secret-0123456789"
VENV_BIN = Path(sys.executable).parent


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


async def drive(url: str, rate: float, seconds: float) -> Driven:
    """Open loop: request ``i`` leaves at ``start + i / rate`` whatever the earlier answers take."""
    try:
        import aiohttp  # in the venv through openleadr; much lighter per request than httpx, so the client keeps up
    except ImportError:
        raise SystemExit("bench_relay needs aiohttp (installed with the [openadr] extra, via openleadr)") from None

    driven = Driven()
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(index: int, due: float) -> None:
            body = event_body(index)
            timestamp, delivery = str(int(time.time())), uuid.uuid4().hex
            headers = {
                "Content-Type": "application/json",
                "X-Gridaware-Timestamp": timestamp,
                "X-Gridaware-Delivery": delivery,
                "X-Gridaware-Signature": sign(SECRET.encode(), timestamp, delivery, body),
            }
            began = time.perf_counter()
            driven.lag.append(began - due)
            try:
                async with session.post(f"{url}/events/bench", data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                driven.failures[type(exc).__name__] = driven.failures.get(type(exc).__name__, 0) + 1
                return
            if status == 200:
                driven.latencies.append(time.perf_counter() - began)
                driven.accepted.append(f"bench-{index}")
            else:
                driven.failures[str(status)] = driven.failures.get(str(status), 0) + 1

        tasks = []
        started = time.perf_counter()
        for index in range(int(rate * seconds)):
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(index, due)))
        await asyncio.gather(*tasks)
    return driven


@dataclass
class Driven:
    latencies: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="signed requests per second (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--store-url", help="store URL (default: a fresh SQLite file)")
    store.add_argument("--postgres", action="store_true", help="a throw-away database on the loopback PostgreSQL")
    args = parser.parse_args()
    # A SIGTERM (timeout, CI) must still stop the relay subprocess and drop the throw-away database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.postgres:
        from tests.support.postgres import throwaway_database

        with throwaway_database("gridaware_bench") as url:
            args.store_url = url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store_url = args.store_url or f"sqlite:///{Path(folder) / 'store.db'}"
        port = free_port()
        env = {
            **os.environ,
            "GRIDAWARE_STORE_URL": store_url,
            "AIRFLOW_CONN_BENCH": json.dumps({"conn_type": "gridaware_webhook", "password": SECRET}),
            "AIRFLOW_HOME": folder,
        }
        relay = subprocess.Popen(
            [str(VENV_BIN / "gridaware"), "relay", "--port", str(port), "--log-level", "warning"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
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
            with EventStore(store_url) as store:
                before = store.last_seq()
            cpu_before = _cpu_seconds(relay.pid)
            driven = asyncio.run(drive(url, args.rate, args.seconds))
            relay_cpu = _cpu_seconds(relay.pid) - cpu_before
        finally:
            relay.terminate()
            try:
                relay.wait(timeout=20)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()
        with EventStore(store_url) as store:
            stored = {s.event.event_id for s in store.since(before, limit=10_000_000)}
    lost = [event_id for event_id in driven.accepted if event_id not in stored]
    backend = "PostgreSQL" if store_url.startswith("postgresql") else "SQLite"
    print(f"relay: {args.rate:g} signed requests/s for {args.seconds:g} s, {backend} store, uvicorn 1 worker")
    print(
        f"  sent {len(driven.lag)}, accepted {len(driven.accepted)}, refused or failed {sum(driven.failures.values())}"
        f" {driven.failures or ''}, lost (2xx but not in the store) {len(lost)}"
    )
    if driven.latencies:
        ms = sorted(x * 1000 for x in driven.latencies)
        print(
            f"  accept-to-stored (send -> 2xx): p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms,"
            f" max {ms[-1]:.1f} ms"
        )
    lag = sorted(x * 1000 for x in driven.lag)
    # The client shares 2 cores with the relay: if it sent late, the offered rate was lower than asked.
    print(f"  client send lag behind schedule: p99 {percentile(lag, 0.99):.1f} ms; relay CPU {relay_cpu:.1f} s")
    print(f"  machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; last minute {_cpu_pressure()}")


def _cpu_pressure() -> str:
    # Linux PSI: the share of time runnable tasks waited for a CPU (other work on a shared machine).
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "CPU pressure unknown"
    avg60 = dict(part.split("=") for part in some.split()[1:])["avg60"]
    return f"tasks waited for a CPU {avg60} % of the time"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
