"""Triggerer scale: N deferred GridWindowTriggers in one process against the local simulator.

For each N, in fresh subprocesses per mode, it runs N triggers concurrently in one event loop (as the
triggerer does); Airflow's own DateTimeTrigger, measured the same way, is the floor. It reports:

* upstream forecast requests per refresh (against the distinct (source, zone) pairs);
* event-loop lag p50/p99/max (a 10 ms ticker) over the steady-state window;
* ``rss_kb``: process RSS growth per trigger, from the baseline (after warm-up) to the end of the
  steady-state window. It includes what the allocator keeps after the first round (not returned to the OS);
* ``heap_kb``: live Python heap per trigger (tracemalloc, current size at the end of one refresh period
  after the first round), in a separate run of its own so tracing does not distort lag or RSS;
  ``replanning`` is how many triggers were inside a re-plan at that moment (waiting on a fetch, or for the
  loop to resume them), rather than asleep: tracing slows the loop, so at 5,000 triggers this is not 0.

Both modes warm up the same way before the baseline: one trigger per source pair (3) runs for 2 s, so
one-off costs (imports, HTTP clients, the first fetch of each source) are in the baseline, not per
trigger; ``base_mb`` is the process RSS at that baseline, so that fixed cost stays visible.

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
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
SOURCES = [  # three distinct (source, zone) pairs, all served by the simulator
    ("bench_ukci", "gridaware_ukci", "/ukci", "GB", {}),
    ("bench_watttime", "gridaware_watttime", "/watttime", "GB", {"login": "bench", "password": "bench"}),
    ("bench_em", "gridaware_electricitymaps", "/electricitymaps", "GB", {"password": "bench"}),
]


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def make_triggers(mode: str, n: int, refresh: float, name: str = "run") -> list[object]:
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
            job_id=f"bench/{name}/task_{i}",
        )
        request = GridWindowRequest(
            job=job.to_dict(), sources=[SignalSource(conn_id=conn_id, zone=zone)], refresh_seconds=refresh
        )
        triggers.append(GridWindowTrigger(request))
    return triggers


async def measure(mode: str, n: int, refresh: float, seconds: float, heap: bool) -> dict[str, object]:
    # Warm up: one trigger per source pair (the same count in both modes), so the baseline holds the one-off
    # costs (imports, module state, HTTP clients, the first fetch of every source) and not per-trigger state.
    warm = make_triggers(mode, len(SOURCES), refresh, name="warm")
    warm_tasks = [asyncio.ensure_future(_drain(t)) for t in warm]
    await asyncio.sleep(2.0)
    gc.collect()
    baseline = rss_bytes()
    if heap:
        tracemalloc.start(1)  # after the baseline: only what the N triggers (and their first round) leave alive
    started = time.monotonic()
    triggers = make_triggers(mode, n, refresh)
    gens: list[Any] = []
    tasks = [asyncio.ensure_future(_drain(t, gens)) for t in triggers]
    await asyncio.sleep(0)
    # The first plan of every trigger happens at deferral; measure the steady state after it.
    settle = min(refresh, 10.0) + 2.0
    await asyncio.sleep(settle)
    first_round_s = time.monotonic() - started

    requests_before = _request_counts(mode)
    lags: list[float] = []
    # The heap run only needs every trigger to re-plan once more in the steady state (one refresh period).
    end = time.monotonic() + (refresh if heap else seconds)
    while time.monotonic() < end:
        t = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - t - 0.01)
    requests_after = _request_counts(mode)
    gc.collect()
    rss = rss_bytes()
    traced = tracemalloc.get_traced_memory()[0] if heap else 0
    # Asleep: in asyncio.sleep (DateTimeTrigger) or waiting on the grid-event watcher between decisions.
    replanning = sum(getattr(g.ag_await, "__name__", "sleep") not in ("sleep", "sleep_or_change") for g in gens)
    alive = sum(not task.done() for task in tasks)
    for task in [*tasks, *warm_tasks]:
        task.cancel()
    await asyncio.gather(*tasks, *warm_tasks, return_exceptions=True)
    if heap:
        return {"heap_kb": round(traced / n / 1024, 2), "replanning": replanning, "alive_heap": alive}
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
        "base_mb": round(baseline / 2**20, 1),
        "rss_kb": round((rss - baseline) / n / 1024, 2),
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


async def _drain(trigger: object, gens: list[Any] | None = None) -> None:
    gen = trigger.run()  # type: ignore[attr-defined]
    if gens is not None:
        gens.append(gen)  # to see, at the end, which triggers are asleep and which are re-planning
    async for _ in gen:
        return


def worker(args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)  # trigger logs are not what is measured
    result = asyncio.run(measure(args.mode, args.count, args.refresh, args.seconds, args.heap))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--refresh", type=float, default=20.0, help="trigger refresh interval (s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-state measurement (s)")
    parser.add_argument("--worker", dest="mode", choices=["grid", "datetime"], help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--heap", action="store_true", help=argparse.SUPPRESS)
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
        print(
            f"simulator {sim.url}; refresh {args.refresh:g} s; steady state measured over {args.seconds:g} s\n"
            "rss_kb: RSS growth per trigger from the post-warm-up baseline to the end (allocator-retained memory included);\n"
            "heap_kb: live Python heap per trigger (tracemalloc, separate run, one refresh after the first round);\n"
            "replanning: triggers of that heap run caught inside a re-plan (waiting on a fetch or the loop), not asleep;\n"
            "both modes warm up alike (3 triggers, one per source pair, 2 s); base_mb: process RSS at that baseline"
        )
        header = (
            "mode",
            "n",
            "alive",
            "first_round_s",
            "lag_p50_ms",
            "lag_p99_ms",
            "lag_max_ms",
            "base_mb",
            "rss_kb",
            "heap_kb",
            "replanning",
            "forecast_requests",
            "refreshes",
            "requests_per_refresh",
            "distinct_pairs",
        )
        print("  ".join(f"{h:>14}" for h in header))
        rows: dict[tuple[int, str], dict[str, object]] = {}
        for n in args.n:
            for mode in ("datetime", "grid"):
                row = _run_worker(env, mode, n, args)
                heap = _run_worker(env, mode, n, args, heap=True)
                if row is None or heap is None:
                    continue
                row.update(heap)
                rows[(n, mode)] = row
                print("  ".join(f"{row[h]!s:>14}" for h in header))
        for n in args.n:
            grid, floor = rows.get((n, "grid")), rows.get((n, "datetime"))
            if grid and floor:
                print(
                    f"n={n}: GridWindowTrigger / DateTimeTrigger memory per trigger: "
                    f"rss {_ratio(grid['rss_kb'], floor['rss_kb'])}, heap {_ratio(grid['heap_kb'], floor['heap_kb'])}"
                )


def _ratio(a: object, b: object) -> str:
    return f"{float(a) / float(b):.2f}x" if float(b) > 0 else "n/a"  # type: ignore[arg-type]


def _run_worker(
    env: dict[str, str], mode: str, n: int, args: argparse.Namespace, *, heap: bool = False
) -> dict[str, object] | None:
    command = [
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
    ]
    out = subprocess.run(
        [*command, "--heap"] if heap else command, env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        print(f"{mode} n={n}{' (heap)' if heap else ''} failed:\n{out.stderr[-3000:]}")
        return None
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
