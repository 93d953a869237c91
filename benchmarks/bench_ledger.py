"""Carbon ledger: what a task's end path pays to write its record, and what the daily report pays to read a day.

Run: .venv/bin/python benchmarks/bench_ledger.py [--records 2000] [--backend sqlite --backend postgres]

Each record is built by the product's own code (``ledger.figures.build_record`` over an estimated draw and a
day of half-hourly actuals, with its counterfactual), then written one transaction each through
``LedgerStore.write`` (as the end paths do), re-reported once each (upserts), and a day is read back with
``records(since, until)``. Prints the compute and write latency percentiles and the read time.
PostgreSQL gets a throw-away database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from _stores import add_backend_option, on_each_store

from airflow_provider_gridaware.ledger.energy import EnergyProfile, estimated_draw
from airflow_provider_gridaware.ledger.figures import Released, ZoneSignals, build_record
from airflow_provider_gridaware.ledger.records import LedgerRecord, TryKey
from airflow_provider_gridaware.signals.models import build_series
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.store.ledger import LedgerStore

UTC = timezone.utc
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def signals() -> dict[str, ZoneSignals]:
    points = [(T0 + i * timedelta(minutes=30), T0 + (i + 1) * timedelta(minutes=30), 100.0 + i) for i in range(96)]
    return {
        zone: ZoneSignals(
            carbon_actual=build_series(
                kind=SignalKind.CARBON_INTENSITY,
                metric=CarbonMetric.AVERAGE,
                zone=zone,
                source="bench",
                series_type=SeriesType.ACTUAL,
                unit="gCO2eq/kWh",
                points=points,
            )
        )
        for zone in ("GB", "FR")
    }


def compute(i: int, by_zone: dict[str, ZoneSignals]) -> LedgerRecord:
    start = T0 + timedelta(minutes=i % 1000)
    end = start + timedelta(hours=2)
    released = Released(
        planned_start=start,
        planned_end=end,
        reason="bench",
        waited_s=3600.0,
        waiting_since=start - timedelta(hours=1),
        home_zone="GB",
    )
    return build_record(
        TryKey(f"dag{i % 20}", f"run{i}", "train", -1, 1),
        operator="kubernetes",
        priority_class="flexible",
        state="success",
        zone="FR",
        start=start,
        end=end,
        draw=estimated_draw(EnergyProfile(gpu_model="H100", gpu_count=8), start, end),
        signals=by_zone,
        released=released,
        placement="k8s_paris/ml",
    )


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1000:7.2f} ms  p99 {cuts[98] * 1000:7.2f} ms  max {max(samples) * 1000:7.2f} ms"


def bench(url: str, count: int) -> None:
    by_zone = signals()
    computed, records = [], []
    for i in range(count):
        began = time.perf_counter()
        records.append(compute(i, by_zone))
        computed.append(time.perf_counter() - began)
    print(f"  compute a record        {percentiles(computed)}")
    with LedgerStore(url) as store:
        for label, batch in (
            ("write (new try)", records),
            ("re-report (upsert)", [replace(r, state="failed") for r in records]),
        ):
            took = []
            for record in batch:
                began = time.perf_counter()
                store.write(record)
                took.append(time.perf_counter() - began)
            print(f"  {label:23s} {percentiles(took)}")
        began = time.perf_counter()
        day = store.records(T0, T0 + timedelta(days=1))
        print(f"  read a day              {len(day)} records in {(time.perf_counter() - began) * 1000:.1f} ms")
        assert len(day) == count and store.counts().reports == 2 * count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records written (default 2000)")
    add_backend_option(parser)
    args = parser.parse_args()
    on_each_store(args.backend, f"{args.records} records", lambda url: bench(url, args.records))


if __name__ == "__main__":
    main()
