"""What the carbon ledger holds: one :class:`LedgerRecord` per executed try of a grid-aware task.

This is the shape the ledger store writes, the daily report renders and the UI shows; those parts agree
on it and on nothing else. Pure: no Airflow, no database.

Carbon intensities are kept per signal *kind* (``average`` or ``marginal``) and never mixed: a record
carries the kind its figures are in, and totals are only summed over records of one kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol


class EnergyMethod(str, Enum):
    """How a record's energy was obtained."""

    MEASURED = "measured"  # a power source (DCGM, Prometheus) sampled over the run
    ESTIMATED = "estimated"  # a declared profile: GPU model and count, utilisation, PUE
    UNKNOWN = "unknown"  # neither: emissions and cost stay empty


class ValueBasis(str, Enum):
    """Whether a record's grid figures come from measured actuals or from forecasts at writing time."""

    ACTUAL = "actual"
    FORECAST = "forecast"
    MIXED = "mixed"  # part of the run covered by actuals, the rest by forecast
    NONE = "none"  # no signal covered the run


@dataclass(frozen=True)
class TryKey:
    """Which try of which task a record is about; the ledger's identity (a re-report replaces, never adds).

    :param dag_id: the DAG.
    :param run_id: the DAG run.
    :param task_id: the task.
    :param map_index: the map index (-1 = not mapped).
    :param try_number: the try.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int


@dataclass(frozen=True)
class RunFigures:
    """One run's grid figures: the run that happened, or the counterfactual one.

    :param zone: the grid zone it ran (would have run) in.
    :param start: start (UTC).
    :param end: end (UTC).
    :param energy_kwh: energy drawn, facility side (PUE applied), if known.
    :param intensity_g_per_kwh: mean carbon intensity over the run, energy-weighted, in gCO2eq/kWh.
    :param intensity_kind: ``average`` or ``marginal``: the kind ``intensity_g_per_kwh`` is.
    :param emissions_g: ``energy_kwh x intensity``, in gCO2eq.
    :param price_per_mwh: mean price over the run, in ``currency``/MWh, when a price signal is configured.
    :param currency: ISO 4217 code of ``price_per_mwh`` and ``cost``.
    :param cost: ``energy_kwh / 1000 x price``.
    """

    zone: str
    start: datetime
    end: datetime
    energy_kwh: float | None = None
    intensity_g_per_kwh: float | None = None
    intensity_kind: str | None = None
    emissions_g: float | None = None
    price_per_mwh: float | None = None
    currency: str | None = None
    cost: float | None = None


@dataclass(frozen=True)
class LedgerRecord:
    """One executed try of a grid-aware task.

    :param key: which try.
    :param operator: what ran it: ``decorator``, ``sensor``, ``kubernetes`` or ``batch``.
    :param priority_class: ``critical``, ``flexible`` or ``batch``.
    :param state: the try's final state (``success``, ``failed``, ``up_for_retry``, ...).
    :param placement: the cluster (Kubernetes) or job queue (AWS Batch) it ran on, if any.
    :param planned_start: start of the window the decision chose.
    :param planned_end: end of that window.
    :param expected_signals: the planner's expected mean signal per unit for that window.
    :param reason: the releasing decision in plain words.
    :param waited_s: how long the task waited for its window.
    :param deadline: the deadline the task had to meet.
    :param actual: the run that happened.
    :param counterfactual: had it started when the wait began, in its home zone (same energy).
    :param energy_method: how ``actual.energy_kwh`` was obtained.
    :param energy_source: the power query's connection or the profile used, in words.
    :param signal_source: the signal source(s) the figures come from (``ukci:gb``, ...).
    :param basis: actuals, forecasts or a mix at writing time.
    :param finalised: whether the figures have been recomputed from actuals (the daily report does that).
    :param notes: data-quality notes (fallbacks used, missing signal periods, estimated energy).
    :param recorded_at: when this version of the record was written.
    """

    key: TryKey
    operator: str
    priority_class: str
    state: str
    actual: RunFigures
    counterfactual: RunFigures | None = None
    placement: str | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    expected_signals: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    waited_s: float = 0.0
    deadline: datetime | None = None
    energy_method: EnergyMethod = EnergyMethod.UNKNOWN
    energy_source: str = ""
    signal_source: str = ""
    basis: ValueBasis = ValueBasis.NONE
    finalised: bool = False
    notes: tuple[str, ...] = ()
    recorded_at: datetime | None = None

    @property
    def saved_g(self) -> float | None:
        """Emissions avoided against the counterfactual (negative = the wait cost emissions)."""
        if self.counterfactual is None or self.counterfactual.emissions_g is None or self.actual.emissions_g is None:
            return None
        return self.counterfactual.emissions_g - self.actual.emissions_g

    @property
    def saved_cost(self) -> float | None:
        """Cost avoided against the counterfactual, in ``actual.currency``."""
        cf = self.counterfactual
        if cf is None or cf.cost is None or self.actual.cost is None or cf.currency != self.actual.currency:
            return None
        return cf.cost - self.actual.cost

    @property
    def missed_deadline(self) -> bool:
        """Whether the run ended after its deadline."""
        return self.deadline is not None and self.actual.end > self.deadline


class LedgerReader(Protocol):
    """Read access to the ledger, as the report and the UI use it."""

    def records(self, since: datetime, until: datetime, *, dag_ids: Sequence[str] | None = None) -> list[LedgerRecord]:
        """The newest version of every record whose run started in ``[since, until)``, in start order."""
        ...


def latest_versions(records: Iterable[LedgerRecord]) -> list[LedgerRecord]:
    """Keep one record per try (the most recently written), in run-start order.

    :param records: records, possibly several versions of one try.
    """
    newest: dict[TryKey, LedgerRecord] = {}
    for record in records:
        held = newest.get(record.key)
        if held is None or (record.recorded_at or record.actual.start) >= (held.recorded_at or held.actual.start):
            newest[record.key] = record
    return sorted(newest.values(), key=lambda r: (r.actual.start, r.key.dag_id, r.key.task_id))
