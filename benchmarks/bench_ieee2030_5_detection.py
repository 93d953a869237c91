"""IEEE 2030.5: detection latency from a server publishing a DERControl to the GridEvent in the store.

The loopback mutual-TLS server gives ``pollRate="1"`` on the DER program list; the hook polls every
``poll_interval()`` seconds (the smallest pollRate it saw) with its real clock, as the trigger does.
Prints figures; asserts nothing about time. Run: ``.venv/bin/python benchmarks/bench_ieee2030_5_detection.py``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_gridaware.store.events import EventStore
from tests.contract.test_ieee2030_5 import tree
from tests.support.pki import ThrowawayCA
from tests.support.sep2_server import ListResource, Sep2Server

EVENTS = 12


def control(n: int, created: int) -> str:
    mrid = f"{n:032X}"
    return (
        f'<DERControl href="/edev/1/derp/1/derc/b{n}"><mRID>{mrid}</mRID><creationTime>{created}</creationTime>'
        f"<EventStatus><currentStatus>0</currentStatus><dateTime>{created}</dateTime>"
        "<potentiallySuperseded>false</potentiallySuperseded></EventStatus>"
        f"<interval><duration>900</duration><start>{created + 600}</start></interval>"
        "<DERControlBase><opModMaxLimW>5000</opModMaxLimW></DERControlBase></DERControl>"
    )


def main() -> None:
    logging.disable(logging.WARNING)
    from airflow_provider_gridaware.hooks.ieee2030_5 import IEEE20305Hook

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        ca = ThrowawayCA(folder, "bench-ca", key_kind="ec")
        server_cert, client = ca.issue("server", server=True), ca.issue("client", server=False)
        resources = tree()
        derp = resources["/edev/1/derp"]
        assert isinstance(derp, ListResource)
        derp.poll_rate = 1
        with Sep2Server(server_cert.cert_path, server_cert.key_path, ca.cert_path, resources=resources) as server:
            extra = {"cert_file": str(client.cert_path), "key_file": str(client.key_path), "ca_file": str(ca.cert_path)}
            os.environ["AIRFLOW_CONN_SEP2_BENCH"] = json.dumps(
                {"conn_type": "gridaware_ieee2030_5", "host": server.url, "extra": extra}
            )
            hook = IEEE20305Hook("sep2_bench")
            published: dict[str, float] = {}
            detected: dict[str, float] = {}
            stop = threading.Event()

            def publish() -> None:
                listing = server.resources["/edev/1/derp/1/derc"]
                assert isinstance(listing, ListResource)
                for n in range(EVENTS):
                    time.sleep(random.uniform(0.3, 1.7))
                    published[f"{n:032X}"] = time.monotonic()
                    listing.items.append(control(n, int(time.time())))
                time.sleep(2.5)
                stop.set()

            with EventStore(f"sqlite:///{folder / 'events.db'}") as store:
                hook.receive(store)  # the first walk reads everything; pollRates are known after it
                publisher = threading.Thread(target=publish, daemon=True)
                publisher.start()
                walks = []
                while not stop.is_set():
                    started = time.monotonic()
                    for received in hook.receive(store):
                        if received.recorded.outcome.stored and received.event.event_id in published:
                            detected.setdefault(received.event.event_id, time.monotonic())
                    walks.append(time.monotonic() - started)
                    time.sleep(max(0.0, hook.poll_interval() - (time.monotonic() - started)))
                publisher.join()
    latencies = sorted(detected[k] - published[k] for k in detected)
    print(
        f"poll interval from pollRate: {hook.poll_interval():.0f} s; walks: {len(walks)}, median walk {statistics.median(walks) * 1000:.1f} ms"
    )
    print(f"events detected: {len(latencies)}/{EVENTS}")
    print(
        f"publish -> stored: median {statistics.median(latencies):.2f} s, "
        f"p90 {latencies[int(0.9 * (len(latencies) - 1))]:.2f} s, max {latencies[-1]:.2f} s (seed guide: under 2 s)"
    )


if __name__ == "__main__":
    main()
