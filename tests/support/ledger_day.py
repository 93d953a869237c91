"""A small fixed ledger day (2026-12-01) whose report figures are worked out by hand in test_daily_report.py.

Tries (zone, run window UTC, energy, intensity -> emissions; counterfactual):

1. nightly_train.train      GB 02:00-04:00 10 kWh x 100 = 1000 g   cf GB 00:00-02:00 x 200 = 2000 g  EUR 0.50 / 0.80
   (an older version of it, written from forecasts with 1500 g, must be ignored)
2. nightly_train.eval       FR 06:00-07:00  4 kWh x  50 =  200 g   cf GB 05:00-06:00 x 150 =  600 g  no price
3. batch_export.export t1   GB 10:00-10:30  2 kWh x 120 =  240 g   cf GB 09:30-10:00 x 120 =  240 g  EUR 0.12 / 0.12  failed
4. batch_export.export t2   GB 11:00-11:30  2 kWh x 110 =  220 g   cf GB 10:30-11:00 x 130 =  260 g  EUR 0.10 / 0.14
   deadline 11:15: missed by 15 min
5. marginal_job.score       CAISO_NORTH 14:00-15:00 5 kWh x 400 marginal = 2000 g  cf x 500 = 2500 g  USD 0.15 / 0.20
6. batch_export.cleanup     GB 20:00-20:10 no energy figure, no counterfactual
7. nightly_train.train of the day before (2026-11-30 23:00): not in the day
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, RunFigures, TryKey, ValueBasis
from airflow_provider_gridaware.signals.models import SignalPoint, SignalSeries
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.times import UTC

DAY = datetime(2026, 12, 1, tzinfo=UTC)
#: The files of the fixed day's report, with a chart per zone.
REPORT_FILES = frozenset(
    {
        "report.html",
        "records.csv",
        "summary.json",
        "charts/intensity-CAISO_NORTH.png",
        "charts/intensity-FR.png",
        "charts/intensity-GB.png",
    }
)


def at(hour: float, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hour)


def run(
    zone: str,
    start: float,
    end: float,
    energy: float | None,
    intensity: float | None,
    *,
    kind: str = "average",
    price: float | None = None,
    currency: str | None = None,
) -> RunFigures:
    emissions = energy * intensity if energy is not None and intensity is not None else None
    cost = energy / 1000 * price if energy is not None and price is not None else None
    return RunFigures(
        zone=zone,
        start=at(start),
        end=at(end),
        energy_kwh=energy,
        intensity_g_per_kwh=intensity,
        intensity_kind=kind if intensity is not None else None,
        emissions_g=emissions,
        price_per_mwh=price,
        currency=currency if price is not None else None,
        cost=cost,
    )


def record(
    dag_id: str,
    task_id: str,
    actual: RunFigures,
    counterfactual: RunFigures | None,
    *,
    try_number: int = 1,
    run_id: str = "scheduled__2026-12-01T00:00:00+00:00",
    state: str = "success",
    waited_s: float = 0.0,
    deadline: datetime | None = None,
    energy_method: EnergyMethod = EnergyMethod.MEASURED,
    basis: ValueBasis = ValueBasis.ACTUAL,
    finalised: bool = True,
    recorded_at: datetime | None = None,
    notes: tuple[str, ...] = (),
) -> LedgerRecord:
    return LedgerRecord(
        key=TryKey(dag_id, run_id, task_id, -1, try_number),
        operator="decorator",
        priority_class="flexible",
        state=state,
        actual=actual,
        counterfactual=counterfactual,
        planned_start=actual.start,
        planned_end=actual.end,
        reason=f"released in the cleanest window for {task_id}",
        waited_s=waited_s,
        deadline=deadline,
        energy_method=energy_method,
        energy_source="profile: 1 x A100 at 80 %, PUE 1.2" if energy_method is EnergyMethod.ESTIMATED else "dcgm",
        signal_source="ukci:GB" if actual.zone in ("GB", "FR") else "watttime:CAISO_NORTH",
        basis=basis,
        finalised=finalised,
        notes=notes,
        recorded_at=recorded_at or actual.end + timedelta(minutes=1),
    )


def fixed_day_records() -> list[LedgerRecord]:
    """Every record version of the fixed day, including one superseded version and one of the day before."""
    train = record(
        "nightly_train",
        "train",
        run("GB", 2, 4, 10, 100, price=50, currency="EUR"),
        run("GB", 0, 2, 10, 200, price=80, currency="EUR"),
        waited_s=7200,
        deadline=at(12),
        energy_method=EnergyMethod.ESTIMATED,
        notes=("fallback: forecast from the provider's own forecaster (ukci unavailable at 01:00)",),
    )
    older_train = record(
        "nightly_train",
        "train",
        run("GB", 2, 4, 10, 150, price=50, currency="EUR"),
        run("GB", 0, 2, 10, 200, price=80, currency="EUR"),
        waited_s=7200,
        basis=ValueBasis.FORECAST,
        finalised=False,
        recorded_at=at(3),
    )
    return [
        older_train,
        record("nightly_train", "eval", run("FR", 6, 7, 4, 50), run("GB", 5, 6, 4, 150), waited_s=3600, deadline=at(8)),
        record(
            "batch_export",
            "export",
            run("GB", 10, 10.5, 2, 120, price=60, currency="EUR"),
            run("GB", 9.5, 10, 2, 120, price=60, currency="EUR"),
            state="failed",
            waited_s=1800,
            deadline=at(11.25),
        ),
        record(
            "batch_export",
            "export",
            run("GB", 11, 11.5, 2, 110, price=50, currency="EUR"),
            run("GB", 10.5, 11, 2, 130, price=70, currency="EUR"),
            try_number=2,
            waited_s=0,
            deadline=at(11.25),
        ),
        record(
            "marginal_job",
            "score",
            run("CAISO_NORTH", 14, 15, 5, 400, kind="marginal", price=30, currency="USD"),
            run("CAISO_NORTH", 12, 13, 5, 500, kind="marginal", price=40, currency="USD"),
            waited_s=7200,
            deadline=at(20),
        ),
        record(
            "batch_export",
            "cleanup",
            run("GB", 20, 20 + 1 / 6, None, None),
            None,
            waited_s=60,
            energy_method=EnergyMethod.UNKNOWN,
            basis=ValueBasis.NONE,
        ),
        train,
        record(
            "nightly_train",
            "train",
            run("GB", -1, 1, 10, 100),
            None,
            run_id="scheduled__2026-11-30T00:00:00+00:00",
        ),
    ]


def half_hourly_actuals(
    zone: str, values: dict[float, float], *, metric: CarbonMetric = CarbonMetric.AVERAGE, source: str = "ukci"
) -> SignalSeries:
    """Actual intensity: one half-hour point per ``{hour: value}`` of the fixed day (missing hours are gaps)."""
    points = tuple(
        SignalPoint(start=at(hour), end=at(hour + 0.5), value=value) for hour, value in sorted(values.items())
    )
    return SignalSeries(
        kind=SignalKind.CARBON_INTENSITY,
        metric=metric,
        unit="gCO2eq/kWh",
        zone=zone,
        source=source,
        series_type=SeriesType.ACTUAL,
        points=points,
    )
