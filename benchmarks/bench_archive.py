"""Forecast archive throughput on SQLite (a file) and the loopback PostgreSQL: record, re-record, query.

Run: .venv/bin/python benchmarks/bench_archive.py [--zones 4] [--days 1] [--backend sqlite --backend postgres]

The live load is one 48 h half-hourly vintage (96 points) per zone every 15 minutes. The benchmark records
``days`` of that load for ``zones`` zones, one vintage per call (one transaction each, as the hooks do),
then records all of it again (every row a duplicate), then reads it back: a day of vintages per zone by
issue time, and the actuals of the whole span. PostgreSQL gets a throw-away database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from _stores import STORES

from airflow_provider_gridaware.signals.models import SignalSeries, build_series
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.store import ForecastArchive

UTC = timezone.utc
T0 = datetime(2026, 6, 1, tzinfo=UTC)
STEP = timedelta(minutes=30)
ISSUE_EVERY = timedelta(minutes=15)
POINTS = 96  # 48 h half-hourly
CI = SignalKind.CARBON_INTENSITY


def vintage(zone: str, issued: datetime) -> SignalSeries:
    first = issued - timedelta(minutes=issued.minute % 30)
    return build_series(
        kind=CI,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="bench",
        series_type=SeriesType.FORECAST,
        unit="gCO2eq/kWh",
        issued_at=issued,
        points=[
            (first + i * STEP, first + (i + 1) * STEP, 200 + 80 * math.sin(i / 7 + issued.timestamp() / 86_400))
            for i in range(POINTS)
        ],
    )


def actuals(zone: str, days: int) -> SignalSeries:
    slots = days * 48 + POINTS
    return build_series(
        kind=CI,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="bench",
        series_type=SeriesType.ACTUAL,
        unit="gCO2eq/kWh",
        points=[(T0 + i * STEP, T0 + (i + 1) * STEP, 200 + 80 * math.sin(i / 7)) for i in range(slots)],
    )


def timed(action: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    rows = action()
    return rows, time.perf_counter() - start


def bench(url: str, zones: list[str], days: int) -> dict[str, tuple[int, float]]:
    issues = [T0 + i * ISSUE_EVERY for i in range(days * 96)]
    work = [vintage(zone, issued) for zone in zones for issued in issues]
    figures: dict[str, tuple[int, float]] = {}
    start = time.perf_counter()
    archive = ForecastArchive(url, retention=None)
    figures["open + migrate"] = (0, time.perf_counter() - start)

    def record_all() -> int:
        for series in work:
            archive.record(series)
        return sum(len(s) for s in work)

    def record_actuals() -> int:
        batch = [actuals(zone, days) for zone in zones]
        for series in batch:
            archive.record(series)
        return sum(len(s) for s in batch)

    def query_day_of_vintages() -> int:
        rows = 0
        for zone in zones:
            found = archive.vintages("bench", zone, CI, issued_from=T0, issued_until=T0 + timedelta(days=1))
            rows += sum(len(v.points) for v in found)
        return rows

    def query_actuals() -> int:
        rows = 0
        for zone in zones:
            series = archive.actuals("bench", zone, CI, T0, T0 + timedelta(days=days + 2))
            rows += len(series) if series is not None else 0
        return rows

    figures["record vintages"] = timed(record_all)
    figures["re-record (all duplicates)"] = timed(record_all)
    figures["record actuals"] = timed(record_actuals)
    figures["query vintages (1 day/zone)"] = timed(query_day_of_vintages)
    figures["query actuals"] = timed(query_actuals)
    archive.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", type=int, default=4, help="zones recorded (default 4)")
    parser.add_argument("--days", type=int, default=1, help="days of 15-minute vintages per zone (default 1)")
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgres"), help="default: both")
    args = parser.parse_args()
    zones = [f"Z{i}" for i in range(args.zones)]
    vintages = args.zones * args.days * 96
    print(
        f"{args.zones} zones x {args.days} day(s) of vintages every 15 min = {vintages} vintages of {POINTS} points"
        f" ({vintages * POINTS} rows)"
    )
    for backend in args.backend or ["sqlite", "postgres"]:
        try:
            with STORES[backend]() as url:
                figures = bench(url, zones, args.days)
        except Exception as exc:  # a benchmark on a machine without PostgreSQL still reports SQLite
            print(f"\n{backend}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})")
            continue
        print(f"\n{backend}")
        for name, (rows, seconds) in figures.items():
            rate = f"{rows / seconds:12,.0f} rows/s" if rows else " " * 19
            print(f"  {name:30s} {rows:8d} rows {seconds * 1000:9.1f} ms {rate}")
        rows, seconds = figures["record vintages"]
        per_vintage_ms = seconds / vintages * 1000
        # Live need: one vintage per zone per 15 min. Zones one writer could sustain at this rate:
        print(f"  {per_vintage_ms:.2f} ms per vintage: one writer keeps up with {900_000 / per_vintage_ms:,.0f} zones")


if __name__ == "__main__":
    main()
