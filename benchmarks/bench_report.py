"""The daily carbon report on a busy day: aggregation, CSV/JSON/HTML rendering, charts, peak memory.

Run: .venv/bin/python benchmarks/bench_report.py [--tries 20000] [--zones 4] [--repeat 3]

A synthetic day of ``tries`` ledger records (spread over ``zones`` zones, 200 DAGs, 5 tasks each, a third with
prices) with a half-hourly actual curve per zone goes through the product's own code: ``build_daily_report``,
then ``render_report_files`` without charts (HTML, CSV, JSON), then the charts alone. Prints the best of
``repeat`` runs of each and the peak Python memory (tracemalloc) of one whole report.
"""

from __future__ import annotations

import argparse
import math
import random
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, RunFigures, TryKey, ValueBasis
from airflow_provider_gridaware.reporting.charts import render_charts
from airflow_provider_gridaware.reporting.daily import ZoneCurve, build_daily_report
from airflow_provider_gridaware.reporting.render import render_report_files
from airflow_provider_gridaware.signals.models import SignalPoint, SignalSeries
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind

UTC = timezone.utc
DAY = date(2026, 12, 1)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def curve(zone: str, index: int) -> ZoneCurve:
    points = tuple(
        SignalPoint(
            start=T0 + timedelta(minutes=30 * i),
            end=T0 + timedelta(minutes=30 * (i + 1)),
            value=150 + 80 * math.sin(i / 8 + index),
        )
        for i in range(48)
    )
    series = SignalSeries(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        unit="gCO2eq/kWh",
        zone=zone,
        source="bench",
        series_type=SeriesType.ACTUAL,
        points=points,
    )
    return ZoneCurve(zone, "average", series, "bench")


def figures(
    zone: str, start: datetime, hours: float, energy: float, intensity: float, price: float | None
) -> RunFigures:
    return RunFigures(
        zone=zone,
        start=start,
        end=start + timedelta(hours=hours),
        energy_kwh=energy,
        intensity_g_per_kwh=intensity,
        intensity_kind="average",
        emissions_g=energy * intensity,
        price_per_mwh=price,
        currency="EUR" if price is not None else None,
        cost=energy / 1000 * price if price is not None else None,
    )


def busy_day(tries: int, zones: list[str], rng: random.Random) -> list[LedgerRecord]:
    records = []
    for i in range(tries):
        zone = zones[i % len(zones)]
        home = zones[0]
        start = T0 + timedelta(minutes=rng.randrange(0, 23 * 60))
        hours = rng.choice([0.25, 0.5, 1, 2, 4])
        energy = hours * rng.uniform(0.5, 8)
        price = rng.uniform(20, 200) if i % 3 == 0 else None
        waited = rng.uniform(0, 6 * 3600)
        records.append(
            LedgerRecord(
                key=TryKey(f"dag_{i % 200:03d}", f"scheduled__{i // 1000}", f"task_{i % 5}", -1, 1 + i % 2),
                operator="decorator",
                priority_class="flexible",
                state="success" if i % 17 else "failed",
                actual=figures(zone, start, hours, energy, rng.uniform(50, 300), price),
                counterfactual=figures(
                    home, start - timedelta(seconds=waited), hours, energy, rng.uniform(80, 350), price
                ),
                waited_s=waited,
                deadline=start + timedelta(hours=hours + rng.uniform(-0.1, 8)),
                energy_method=EnergyMethod.ESTIMATED if i % 4 else EnergyMethod.MEASURED,
                basis=ValueBasis.ACTUAL,
                finalised=True,
                notes=("fallback: own forecaster",) if i % 50 == 0 else (),
            )
        )
    return records


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20_000)
    parser.add_argument("--zones", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    zones = ["GB", "FR", "DE", "SE", "NO", "ES"][: args.zones]
    records = busy_day(args.tries, zones, random.Random(12))
    curves = [curve(zone, i) for i, zone in enumerate(zones)]
    report = build_daily_report(DAY, records, curves=curves)

    aggregate = best_of(args.repeat, lambda: build_daily_report(DAY, records, curves=curves))
    files = render_report_files(report, draw_charts=lambda r: {})
    render = best_of(args.repeat, lambda: render_report_files(report, draw_charts=lambda r: {}))
    render_charts(report)  # matplotlib's import and font cache are paid once, not measured below
    charts = best_of(args.repeat, lambda: render_charts(report))

    tracemalloc.start()
    whole = build_daily_report(DAY, records, curves=curves)
    render_report_files(whole)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"daily report, {args.tries} tries, {len(zones)} zones, best of {args.repeat}")
    print(f"  aggregate (build_daily_report)      {aggregate * 1000:8.1f} ms")
    print(f"  HTML + CSV + JSON (no charts)       {render * 1000:8.1f} ms")
    print(f"  charts ({len(zones)} PNG)                    {charts * 1000:8.1f} ms")
    print(f"  peak Python memory, whole report    {peak / 2**20:8.1f} MiB")
    sizes = ", ".join(f"{name} {len(data) / 1024:.0f} KiB" for name, data in sorted(files.items()))
    print(f"  files: {sizes}")


if __name__ == "__main__":
    main()
