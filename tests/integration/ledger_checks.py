"""What the integration tests check in the carbon ledger the stack's tasks wrote (the session's store)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow_provider_gridaware.ledger.records import LedgerRecord
from airflow_provider_gridaware.store.ledger import LedgerStore

UTC = timezone.utc


def run_records(dag_id: str, run_id: str) -> list[LedgerRecord]:
    """Every ledger record of one DAG run, from the store every Airflow component of the session writes to
    (``GRIDAWARE_STORE_URL``, set by tests/conftest.py and inherited by the stack)."""
    with LedgerStore(os.environ["GRIDAWARE_STORE_URL"]) as store:
        everything = store.records(
            datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=3650), dag_ids=[dag_id]
        )
    return [r for r in everything if r.key.run_id == run_id]


def check_figures(record: LedgerRecord, *, energy_kwh: float) -> None:
    """The record's figures agree with each other: energy as declared, emissions = energy x intensity, the
    counterfactual with the same energy and duration, from when the wait began, the saving their difference."""
    a, cf = record.actual, record.counterfactual
    why = f"\n{record}"
    assert a.energy_kwh is not None and abs(a.energy_kwh - energy_kwh) < 1e-6 * max(1.0, energy_kwh), why
    assert a.intensity_g_per_kwh is not None and a.intensity_kind in ("average", "marginal"), why
    assert a.emissions_g is not None and abs(a.emissions_g - a.energy_kwh * a.intensity_g_per_kwh) < 1e-6, why
    assert cf is not None and cf.energy_kwh == a.energy_kwh and cf.end - cf.start == a.end - a.start, why
    assert cf.emissions_g is not None and record.saved_g is not None, why
    assert abs(record.saved_g - (cf.emissions_g - a.emissions_g)) < 1e-6, why
    assert record.energy_method.value == "estimated" and record.basis.value in ("actual", "forecast", "mixed"), why
