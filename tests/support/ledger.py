"""An in-memory :class:`~airflow_provider_gridaware.ledger.records.LedgerReader` and record builders, for the
Grid page's tests and benchmark (the real ledger store is built on its own branch)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from airflow_provider_gridaware.ledger.records import LedgerRecord, RunFigures, TryKey, latest_versions
from airflow_provider_gridaware.times import UTC


class InMemoryLedger:
    """Holds records; answers :meth:`records` as the protocol says (newest version per try, in start order).

    :param records: the records (any versions).
    """

    def __init__(self, records: Iterable[LedgerRecord] = ()) -> None:
        self._records = list(records)

    def records(self, since: datetime, until: datetime, *, dag_ids: Sequence[str] | None = None) -> list[LedgerRecord]:
        wanted = None if dag_ids is None else set(dag_ids)
        return latest_versions(
            r for r in self._records if since <= r.actual.start < until and (wanted is None or r.key.dag_id in wanted)
        )


def record(
    dag_id: str,
    start: datetime,
    *,
    task_id: str = "train",
    run_id: str | None = None,
    try_number: int = 1,
    energy_kwh: float = 10.0,
    intensity: float = 100.0,
    counterfactual_intensity: float | None = 200.0,
    price: float | None = None,
    counterfactual_price: float | None = None,
    kind: str = "average",
    zone: str = "GB",
    hours: float = 1.0,
    deadline: datetime | None = None,
    reason: str = "released after waiting 2 h in GB",
) -> LedgerRecord:
    """One finished try with figures computed from energy x intensity (and x price, EUR)."""
    end = start + timedelta(hours=hours)

    def figures(at: datetime, g_per_kwh: float, eur_per_mwh: float | None) -> RunFigures:
        return RunFigures(
            zone=zone,
            start=at,
            end=at + timedelta(hours=hours),
            energy_kwh=energy_kwh,
            intensity_g_per_kwh=g_per_kwh,
            intensity_kind=kind,
            emissions_g=energy_kwh * g_per_kwh,
            price_per_mwh=eur_per_mwh,
            currency=None if eur_per_mwh is None else "EUR",
            cost=None if eur_per_mwh is None else energy_kwh / 1000 * eur_per_mwh,
        )

    counterfactual = (
        None
        if counterfactual_intensity is None
        else figures(start - timedelta(hours=2), counterfactual_intensity, counterfactual_price)
    )
    return LedgerRecord(
        key=TryKey(dag_id, run_id or f"run_{start:%Y%m%dT%H%M}", task_id, -1, try_number),
        operator="decorator",
        priority_class="flexible",
        state="success",
        actual=figures(start, intensity, price),
        counterfactual=counterfactual,
        planned_start=start,
        planned_end=end,
        reason=reason,
        waited_s=7200.0,
        deadline=deadline,
        recorded_at=end,
    )


#: The DAG the Grid page's browser test shows savings for.
SAMPLE_DAG = "gridaware_ui_waiting"


def sample_ledger(store_url: str) -> InMemoryLedger:
    """A ledger reader for a test api-server (``[gridaware] ledger_reader = tests.support.ledger:sample_ledger``):
    three one-hour runs of :data:`SAMPLE_DAG`'s ``retrain`` in the last days (400 kWh each, so 400 kW), two of
    them in cleaner windows.

    :param store_url: the store's URL (unused: the records are in memory).
    """
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return InMemoryLedger(
        [
            record(
                SAMPLE_DAG,
                now - timedelta(days=d),
                task_id="retrain",
                energy_kwh=400,
                intensity=i,
                counterfactual_intensity=c,
            )
            for d, i, c in ((1, 120, 280), (3, 150, 250), (5, 260, 240))
        ]
    )
