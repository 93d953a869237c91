"""OpenADR 2.0b detection latency: from a real openleadr VTN queuing an event to its GridEvent in the store.

A VTN subprocess on loopback (openleadr 0.5.36) queues events at random moments; the VEN side polls it
with ``OpenADR2bHook.areceive`` at a fixed 1 s cadence (``oadrRequestEvent``, recorded in a SQLite store,
then ``oadrCreatedEvent`` answers), as a triggerer would. Latency = the store's ``stored_at`` of the event
minus the VTN's clock when it queued it (same machine, same clock). With a poll every P seconds the
expected figure is uniform(0, P) plus one round trip and the store write, so p99 sits near P.

``--tls`` runs the VTN with mutual TLS and XML signatures (a throwaway CA), the VEN verifying every
signature against the VTN's fingerprint.

Run: .venv/bin/python benchmarks/bench_openadr2b_detection.py [--events 100] [--poll 1.0] [--tls [--key rsa|ec]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.openadr_vtn import VtnProcess
from tests.support.pki import ThrowawayCA

VEN_ID = "ven-bench"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _poll(
    hook, store, poll_s: float, stop: threading.Event, stored: dict[str, float], vtn: VtnProcess
) -> list[float]:
    """Poll at a fixed cadence; return each poll's duration (s)."""
    durations: list[float] = []
    seq = store.last_seq()
    start = time.monotonic()
    tick = 0
    while not stop.is_set():
        t0 = time.monotonic()
        await hook.areceive(store)
        durations.append(time.monotonic() - t0)
        for row in store.since(seq):
            seq = row.seq
            if row.event.event_id not in stored:
                stored[row.event.event_id] = row.stored_at.timestamp()
                await asyncio.to_thread(vtn.command, "remove_event", ven_id=VEN_ID, event_id=row.event.event_id)
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * poll_s - time.monotonic()))
    return durations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--key", choices=["rsa", "ec"], default="rsa", help="key type of the TLS/signing certificates")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-openadr2b-"))
    os.environ["GRIDAWARE_STORE_URL"] = f"sqlite:///{folder / 'store.db'}"
    extra: dict[str, object] = {"vtn_id": "BENCH_VTN", "poll_interval": args.poll}
    tls: dict[str, str] = {}
    if args.tls:
        ca = ThrowawayCA(folder, "bench-ca", key_kind=args.key)
        vtn_cert, ven_cert = ca.issue("vtn", server=True), ca.issue("ven", server=False)
        tls = {
            "cert": str(vtn_cert.cert_path),
            "key": str(vtn_cert.key_path),
            "ca": str(ca.cert_path),
            "ven_fingerprint": ven_cert.fingerprint,
        }
        extra |= {
            "cert_file": str(ven_cert.cert_path),
            "key_file": str(ven_cert.key_path),
            "ca_file": str(ca.cert_path),
            "vtn_fingerprint": vtn_cert.fingerprint,
        }

    from airflow_provider_gridaware.hooks.openadr2b import OpenADR2bHook
    from airflow_provider_gridaware.store.events import EventStore

    with VtnProcess("BENCH_VTN", tls=tls, poll_s=args.poll) as vtn:
        os.environ["AIRFLOW_CONN_BENCH_VTN"] = json.dumps(
            {"conn_type": "gridaware_openadr2b", "host": vtn.url, "login": "bench", "extra": extra}
        )
        hook = OpenADR2bHook("bench_vtn")
        # The VTN must know the VEN: register once (as `gridaware openadr2b register` does).
        hook.register()
        store = EventStore()
        queued: dict[str, float] = {}
        stored: dict[str, float] = {}
        stop = threading.Event()
        rng = random.Random(args.seed)

        def queue_events() -> None:
            time.sleep(1.5)
            for i in range(args.events):
                # Random gaps: the queuing moment falls anywhere within the poll period.
                time.sleep(rng.uniform(0.3, 1.7) * args.poll)
                answer = vtn.command("add_event", ven_id=VEN_ID, event_id=f"bench-{i}", values=[2])
                queued[f"bench-{i}"] = answer["queued_at"]
            deadline = time.monotonic() + 5 * args.poll
            while len(stored) < args.events and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()

        producer = threading.Thread(target=queue_events)
        producer.start()
        durations = asyncio.run(_poll(hook, store, args.poll, stop, stored, vtn))
        producer.join()

    latencies = [stored[k] - queued[k] for k in queued if k in stored]
    missing = len(queued) - len(latencies)
    mode = f"mutual TLS + XML signatures ({args.key} keys)" if args.tls else "plain HTTP"
    print(f"OpenADR 2.0b detection, openleadr VTN on loopback, {mode}, poll {args.poll:g} s, {len(queued)} events")
    print(
        f"  queued -> stored: p50 {statistics.median(latencies):.3f} s  p99 {_percentile(latencies, 0.99):.3f} s  "
        f"max {max(latencies):.3f} s  (missed: {missing})"
    )
    print(
        f"  one poll (request, verify, parse, store, answer): p50 {statistics.median(durations) * 1000:.1f} ms  "
        f"p99 {_percentile(durations, 0.99) * 1000:.1f} ms over {len(durations)} polls"
    )


if __name__ == "__main__":
    main()
