"""Sustainability SLOs: targets per DAG or tag, tracked from the ledger, beside the performance SLOs.

Three kinds of target, each over a rolling period (30 days by default):

* ``mean_intensity``: the energy-weighted mean carbon intensity of the runs, in gCO2eq/kWh, at most ``target``;
* ``kg_per_month``: emissions of the runs, in kgCO2eq per 30 days, at most ``target``;
* ``clean_share``: share of the runs that ran at a lower intensity than starting when their wait began
  would have (a cleaner window), at least ``target`` (0.8 = 80 %).

Carbon figures of one SLO are only taken from records of one intensity kind (``average`` by default):
average and marginal intensities never mix. Pure: no Airflow, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

from airflow_provider_gridaware.ledger.records import LedgerRecord

MONTH = timedelta(days=30)
#: The ``[gridaware]`` config key holding the SLOs the Grid page and the daily report show (a JSON list).
SLOS_KEY = "slos"


class SloMetric(str, Enum):
    """What an SLO measures."""

    MEAN_INTENSITY = "mean_intensity"
    KG_PER_MONTH = "kg_per_month"
    CLEAN_SHARE = "clean_share"

    @property
    def at_least(self) -> bool:
        """Whether the target is a floor (else a ceiling)."""
        return self is SloMetric.CLEAN_SHARE


@dataclass(frozen=True)
class SustainabilitySlo:
    """One target.

    :param name: how alerts and the page name it.
    :param metric: what it measures (:class:`SloMetric` or its value).
    :param target: the ceiling (intensity, kg per month) or floor (clean share, 0-1).
    :param dag_ids: the DAGs it covers.
    :param tags: DAGs with any of these tags are covered too.
    :param period: the rolling period it is measured over.
    :param intensity_kind: the intensity kind of the records it counts (``average`` or ``marginal``).
    :param min_runs: with fewer runs in the period it is not judged (no alert on one unlucky run).
    """

    name: str
    metric: SloMetric
    target: float
    dag_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    period: timedelta = MONTH
    intensity_kind: str = "average"
    min_runs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", SloMetric(self.metric))
        object.__setattr__(self, "dag_ids", tuple(self.dag_ids))
        object.__setattr__(self, "tags", tuple(self.tags))
        if not self.dag_ids and not self.tags:
            raise ValueError(f"SLO {self.name!r}: give dag_ids or tags")
        if self.metric is SloMetric.CLEAN_SHARE and not 0 <= self.target <= 1:
            raise ValueError(f"SLO {self.name!r}: a clean_share target is a share between 0 and 1, not {self.target}")
        if self.target < 0:
            raise ValueError(f"SLO {self.name!r}: the target must not be negative ({self.target})")

    def covers(self, dag_id: str, dag_tags: Mapping[str, Iterable[str]]) -> bool:
        """Whether ``dag_id`` counts towards this SLO.

        :param dag_tags: each DAG's tags.
        """
        return dag_id in self.dag_ids or bool(set(self.tags) & set(dag_tags.get(dag_id, ())))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SustainabilitySlo:
        """From JSON: ``{"name", "metric", "target", "dag_ids"?, "tags"?, "period_days"?, "intensity_kind"?, "min_runs"?}``."""
        try:
            name = str(data["name"])
            metric = SloMetric(data["metric"])
            target = float(data["target"])
            period = timedelta(days=float(data.get("period_days", 30)))
            min_runs = int(data.get("min_runs", 1))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"SLO {data.get('name', '?')!r}: {exc}") from None
        return cls(
            name=name,
            metric=metric,
            target=target,
            dag_ids=tuple(data.get("dag_ids", ())),
            tags=tuple(data.get("tags", ())),
            period=period,
            intensity_kind=str(data.get("intensity_kind", "average")),
            min_runs=min_runs,
        )


@dataclass(frozen=True)
class SloStatus:
    """Where an SLO stands.

    :param slo: the SLO.
    :param value: the measured value (``None``: too few runs to judge).
    :param runs: runs counted.
    :param dag_ids: the DAGs whose runs were counted.
    """

    slo: SustainabilitySlo
    value: float | None
    runs: int
    dag_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def judged(self) -> bool:
        return self.value is not None

    @property
    def breached(self) -> bool:
        """Whether the SLO is missed (never when it could not be judged)."""
        if self.value is None:
            return False
        return self.value < self.slo.target if self.slo.metric.at_least else self.value > self.slo.target

    def describe(self) -> str:
        """One plain sentence, for the alert and the page."""
        slo = self.slo
        days = f"{slo.period.total_seconds() / 86400:g} days"
        if self.value is None:
            return f"SLO {slo.name}: not judged, {self.runs} run(s) in the last {days} (needs {slo.min_runs})"
        shown = _format(slo.metric, self.value)
        target = _format(slo.metric, slo.target)
        bound = "at least" if slo.metric.at_least else "at most"
        verdict = "BREACHED" if self.breached else "holds"
        return f"SLO {slo.name} {verdict}: {shown} over {self.runs} run(s) in the last {days} (target {bound} {target})"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.slo.name,
            "metric": self.slo.metric.value,
            "target": self.slo.target,
            "value": self.value,
            "runs": self.runs,
            "dag_ids": list(self.dag_ids),
            "judged": self.judged,
            "breached": self.breached,
            "text": self.describe(),
        }


def parse_slos(text: str | None, where: str = "[gridaware] slos") -> list[SustainabilitySlo]:
    """SLOs from a JSON list (each as :meth:`SustainabilitySlo.from_dict` reads it); empty text: none.

    :param text: the JSON.
    :param where: where it came from, for the error (``[gridaware] slos``, ``--slos``).
    :raises ValueError: not a JSON list, or an SLO that is not valid (named).
    """
    import json

    if not text or not text.strip():
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise ValueError(f"{where} must be a JSON list of SLOs")
    return slos_from(items, where)


def slos_from(items: Iterable[SustainabilitySlo | Mapping[str, Any]], where: str = "slos") -> list[SustainabilitySlo]:
    """SLOs given as objects or in their JSON form (what ``SustainabilitySloOperator(slos=...)`` takes).

    :raises ValueError: an SLO that is not valid (named, with ``where``).
    """
    try:
        return [s if isinstance(s, SustainabilitySlo) else SustainabilitySlo.from_dict(s) for s in items]
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    except AttributeError:
        raise ValueError(f"{where}: each SLO must be a JSON object") from None


def _format(metric: SloMetric, value: float) -> str:
    if metric is SloMetric.MEAN_INTENSITY:
        return f"{value:.0f} gCO2eq/kWh"
    if metric is SloMetric.KG_PER_MONTH:
        return f"{value:.1f} kgCO2eq per 30 days"
    return f"{value:.0%} of runs in cleaner windows"


def ran_in_cleaner_window(record: LedgerRecord) -> bool | None:
    """Whether a try ran at a lower carbon intensity than starting when its wait began would have
    (``None``: one of the two is unknown)."""
    cf = record.counterfactual
    actual = record.actual.intensity_g_per_kwh
    if cf is None or actual is None or cf.intensity_g_per_kwh is None:
        return None
    return actual < cf.intensity_g_per_kwh


def evaluate(
    slo: SustainabilitySlo, records: Iterable[LedgerRecord], dag_tags: Mapping[str, Sequence[str]] | None = None
) -> SloStatus:
    """Measure ``slo`` on ``records`` (already limited to its period by the caller).

    :param slo: the SLO.
    :param records: ledger records (the newest version of each try).
    :param dag_tags: each DAG's tags, for SLOs set per tag.
    """
    tags = dag_tags or {}
    counted = [
        r for r in records if slo.covers(r.key.dag_id, tags) and r.actual.intensity_kind in (slo.intensity_kind, None)
    ]
    dags = tuple(sorted({r.key.dag_id for r in counted}))
    value: float | None = None
    runs = len(counted)
    if slo.metric is SloMetric.MEAN_INTENSITY:
        weighted = [(r.actual.energy_kwh, r.actual.intensity_g_per_kwh) for r in counted]
        known = [(e, i) for e, i in weighted if e is not None and i is not None and e > 0]
        runs = len(known)
        energy = sum(e for e, _ in known)
        value = sum(e * i for e, i in known) / energy if energy > 0 else None
    elif slo.metric is SloMetric.KG_PER_MONTH:
        emitted = [r.actual.emissions_g for r in counted if r.actual.emissions_g is not None]
        runs = len(emitted)
        value = sum(emitted) / 1000 * (MONTH / slo.period)
    else:
        compared = [cleaner for r in counted if (cleaner := ran_in_cleaner_window(r)) is not None]
        runs = len(compared)
        value = sum(compared) / runs if runs else None
    if runs < slo.min_runs:
        value = None
    return SloStatus(slo, value, runs, dags)
