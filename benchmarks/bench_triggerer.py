"""Triggerer scale: N deferred GridWindowTriggers in one process against the local simulator.

For each N, in a fresh subprocess per mode, it runs N triggers concurrently in one event loop (as the
triggerer does) and reports: upstream requests per refresh (against distinct (source, zone) pairs),
event-loop lag p50/p99 (a 10 ms ticker), and RSS per trigger; Airflow's own DateTimeTrigger is the floor.

Run: .venv/bin/python benchmarks/bench_triggerer.py [--n 1000 5000] [--refresh 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
SOURCES = [  # three distinct (source, zone) pairs, all served by the simulator
    ("bench_ukci", "gridaware_ukci", "/ukci", "GB", {}),
    ("bench_watttime", "gridaware_watttime", "/watttime", "GB", {"login": "bench", "password": "bench"}),
    ("bench_em", "gridaware_electricitymaps", "/electricitymaps", "GB", {"password": "bench"}),
]


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def make_triggers(mode: str, n: int, refresh: float) -> list[object]:
    now = datetime.now(UTC)
    if mode == "datetime":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        return [DateTimeTrigger(moment=now + timedelta(hours=12)) for _ in range(n)]
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, GridWindowTrigger, SignalSource

    triggers: list[object] = []
    for i in range(n):
        conn_id, _, _, zone, _ = SOURCES[i % len(SOURCES)]
        # Earliest start 2 h ahead: every trigger keeps waiting for the whole measurement.
        job = Job(
            duration=timedelta(hours=2),
            earliest_start=now + timedelta(hours=2),
            deadline=now + timedelta(hours=20),
            zones=(zone,),
            job_id=f"bench/run/task_{i}",
        )
        request = GridWindowRequest(
            job=job.to_dict(), sources=[SignalSource(conn_id=conn_id, zone=zone)], refresh_seconds=refresh
        )
        triggers.append(GridWindowTrigger(request))
    return triggers


async def measure(mode: str, n: int, refresh: float, seconds: float) -> dict[str, object]:
    # Warm up imports and module state with one trigger, so RSS per trigger counts only per-trigger state.
    warm = make_triggers(mode, 1, refresh)
    warm_task = asyncio.ensure_future(_drain(warm[0]))
    await asyncio.sleep(2.0)
    gc.collect()
    baseline = rss_bytes()
    started = time.monotonic()
    triggers = make_triggers(mode, n, refresh)
    tasks = [asyncio.ensure_future(_drain(t)) for t in triggers]
    await asyncio.sleep(0)
    # The first plan of every trigger happens at deferral; measure the steady state after it.
    settle = min(refresh, 10.0) + 2.0
    await asyncio.sleep(settle)
    first_round_s = time.monotonic() - started

    requests_before = _request_counts(mode)
    lags: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - t - 0.01)
    requests_after = _request_counts(mode)
    gc.collect()
    rss = rss_bytes()
    alive = sum(not task.done() for task in tasks)
    for task in [*tasks, warm_task]:
        task.cancel()
    await asyncio.gather(*tasks, warm_task, return_exceptions=True)
    lags.sort()
    upstream = {k: requests_after.get(k, 0) - requests_before.get(k, 0) for k in requests_after}
    forecast_requests = sum(v for k, v in upstream.items() if k.endswith("forecast"))
    return {
        "mode": mode,
        "n": n,
        "alive": alive,
        "first_round_s": round(first_round_s, 1),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 2),
        "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1000, 2),
        "lag_max_ms": round(lags[-1] * 1000, 1),
        "rss_per_trigger_kb": round((rss - baseline) / n / 1024, 2),
        "refreshes": round(seconds / refresh, 1),
        "forecast_requests": forecast_requests,
        "requests_per_refresh": round(forecast_requests / (seconds / refresh), 2) if mode == "grid" else 0,
        "distinct_pairs": len(SOURCES) if mode == "grid" else 0,
    }


def _request_counts(mode: str) -> dict[str, int]:
    if mode != "grid":
        return {}
    from airflow_provider_gridaware.triggers.shared_signals import shared_cache

    counts = shared_cache().request_counts()
    return {f"{k.conn_id}/{k.zone}/{'forecast' if k.forecast else 'history'}": v for k, v in counts.items()}


async def _drain(trigger: object) -> None:
    async for _ in trigger.run():  # type: ignore[attr-defined]
        return


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)  # trigger logs are not what is measured
    result = asyncio.run(measure(args.mode, args.count, args.refresh, args.seconds))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--refresh", type=float, default=20.0, help="trigger refresh interval (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-state measurement (s)")
    parser.add_argument("--worker", dest="mode", choices=["grid", "datetime"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        worker(args)
        return

    from airflow_provider_gridaware.simulator import start_simulator

    with start_simulator(in_process=False, token_ttl=3600) as sim:
        env = {**os.environ, "AIRFLOW_HOME": tempfile.mkdtemp(prefix="bench-airflow-")}
        for conn_id, conn_type, path, _, extra in SOURCES:
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
                {"conn_type": conn_type, "host": sim.url + path, **extra}
            )
        print(f"simulator {sim.url}; refresh {args.refresh:g} s; steady state measured over {args.seconds:g} s")
        header = (
            "mode",
            "n",
            "alive",
            "first_round_s",
            "lag_p50_ms",
            "lag_p99_ms",
            "lag_max_ms",
            "rss_per_trigger_kb",
            "forecast_requests",
            "refreshes",
            "requests_per_refresh",
            "distinct_pairs",
        )
        print("  ".join(f"{h:>14}" for h in header))
        for n in args.n:
            for mode in ("datetime", "grid"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        mode,
                        "--count",
                        str(n),
                        "--refresh",
                        str(args.refresh),
                        "--seconds",
                        str(args.seconds),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if out.returncode != 0:
                    print(f"{mode} n={n} failed:\n{out.stderr[-3000:]}")
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print("  ".join(f"{row[h]!s:>14}" for h in header))


if __name__ == "__main__":
    main()
