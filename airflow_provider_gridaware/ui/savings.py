"""Savings per DAG over a period, from ledger records (what the Grid page's savings table shows).

Carbon figures are summed per intensity *kind* only (``average`` or ``marginal`` never mix): a DAG with
records of both kinds gets one row per kind. Costs are summed per currency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_gridaware.ledger.records import LedgerRecord
from airflow_provider_gridaware.ledger.slo import ran_in_cleaner_window


@dataclass
class DagSavings:
    """One DAG's savings over the period, in one intensity kind.

    :param dag_id: the DAG.
    :param intensity_kind: ``average``, ``marginal`` or ``None`` (no carbon figures).
    :param runs: executed tries counted.
    :param runs_compared: tries with both their own and the counterfactual emissions known.
    :param clean_runs: of those, tries that ran at a lower carbon intensity than starting when the wait
        began would have (ran in a cleaner window).
    :param emitted_g: emissions of the runs, in gCO2eq (runs with known emissions).
    :param saved_g: emissions avoided against the counterfactual, in gCO2eq (negative = the waits cost).
    :param saved_cost: cost avoided per currency.
    :param missed_deadlines: tries that ended after their deadline.
    """

    dag_id: str
    intensity_kind: str | None
    runs: int = 0
    runs_compared: int = 0
    clean_runs: int = 0
    emitted_g: float = 0.0
    saved_g: float = 0.0
    saved_cost: dict[str, float] = field(default_factory=dict)
    missed_deadlines: int = 0

    @property
    def clean_share(self) -> float | None:
        """Share of the compared runs that ran in a cleaner window (``None``: none compared)."""
        return None if not self.runs_compared else self.clean_runs / self.runs_compared

    def add(self, record: LedgerRecord) -> None:
        """Count one record in."""
        self.runs += 1
        actual = record.actual
        if actual.emissions_g is not None:
            self.emitted_g += actual.emissions_g
        saved = record.saved_g
        cf = record.counterfactual
        if saved is not None and cf is not None:
            self.runs_compared += 1
            self.saved_g += saved
            if ran_in_cleaner_window(record):
                self.clean_runs += 1
        saved_cost = record.saved_cost
        if saved_cost is not None and actual.currency:
            self.saved_cost[actual.currency] = self.saved_cost.get(actual.currency, 0.0) + saved_cost
        if record.missed_deadline:
            self.missed_deadlines += 1

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the page (kilograms for carbon)."""
        return {
            "dag_id": self.dag_id,
            "intensity_kind": self.intensity_kind,
            "runs": self.runs,
            "runs_compared": self.runs_compared,
            "clean_runs": self.clean_runs,
            "clean_share": self.clean_share,
            "emitted_kg": round(self.emitted_g / 1000, 3),
            "saved_kg": round(self.saved_g / 1000, 3),
            "saved_cost": {currency: round(value, 2) for currency, value in self.saved_cost.items()},
            "missed_deadlines": self.missed_deadlines,
        }


def savings_by_dag(records: Iterable[LedgerRecord]) -> list[DagSavings]:
    """Savings per DAG and intensity kind, biggest saving first.

    :param records: the newest version of each try (``LedgerReader.records`` gives exactly that).
    """
    rows: dict[tuple[str, str | None], DagSavings] = {}
    for record in records:
        kind = record.actual.intensity_kind
        row = rows.get((record.key.dag_id, kind))
        if row is None:
            row = rows[(record.key.dag_id, kind)] = DagSavings(record.key.dag_id, kind)
        row.add(record)
    return sorted(rows.values(), key=lambda r: (-r.saved_g, r.dag_id, r.intensity_kind or ""))
