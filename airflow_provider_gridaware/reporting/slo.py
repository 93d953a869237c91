"""The sustainability SLOs in the daily report: each measured over its own window, ending with the report's day.

The SLOs are the ones :class:`~airflow_provider_gridaware.operators.sustainability_slo.SustainabilitySloOperator`
and the Grid page use (:mod:`airflow_provider_gridaware.ledger.slo`, the same JSON), measured by the same
:func:`~airflow_provider_gridaware.ledger.slo.evaluate` on the same ledger. The window of an SLO of 30 days
in the report of 2026-12-01 is ``[2026-11-02 00:00, 2026-12-02 00:00)`` UTC; the day's own records count
as the report finalised them. Pure: no Airflow, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_gridaware.ledger.records import LedgerReader, LedgerRecord, TryKey
from airflow_provider_gridaware.ledger.slo import SloStatus, SustainabilitySlo, evaluate
from airflow_provider_gridaware.times import format_time


@dataclass(frozen=True)
class ReportedSlo:
    """One SLO as the daily report shows it.

    :param status: where it stands over its window.
    :param since: the window's start (``until`` minus the SLO's period).
    :param until: the window's end (the end of the report's day).
    :param note: why it could not be measured, when that is not "too few runs".
    """

    status: SloStatus
    since: datetime
    until: datetime
    note: str = ""

    @property
    def verdict(self) -> str:
        """``met``, ``breached`` or ``not judged``."""
        if not self.status.judged:
            return "not judged"
        return "breached" if self.status.breached else "met"

    def describe(self) -> str:
        """One sentence (the SLO operator's, or why it was not measured)."""
        if self.note:
            return f"SLO {self.status.slo.name}: not judged, {self.note}"
        return self.status.describe()

    def to_json(self) -> dict[str, Any]:
        slo = self.status.slo
        return {
            **self.status.to_json(),
            "status": self.verdict,
            "at_least": slo.metric.at_least,
            "period_days": slo.period.total_seconds() / 86400,
            "since": format_time(self.since),
            "until": format_time(self.until),
            "intensity_kind": slo.intensity_kind,
            "min_runs": slo.min_runs,
            "covers": {"dag_ids": list(slo.dag_ids), "tags": list(slo.tags)},
            "text": self.describe(),
        }


def slo_dag_ids(slos: Iterable[SustainabilitySlo], dag_tags: Mapping[str, Sequence[str]]) -> list[str]:
    """Every DAG some SLO covers (named, or tagged with one of its tags)."""
    covered: set[str] = set()
    for slo in slos:
        covered.update(slo.dag_ids)
        covered.update(dag for dag in dag_tags if slo.covers(dag, dag_tags))
    return sorted(covered)


def read_slo_records(
    ledger: LedgerReader,
    slos: Sequence[SustainabilitySlo],
    until: datetime,
    dag_tags: Mapping[str, Sequence[str]] | None = None,
) -> list[LedgerRecord]:
    """The records every SLO needs, in one read: the longest period before ``until``, the DAGs they cover.

    :param ledger: the ledger.
    :param slos: the SLOs.
    :param until: the end of the windows.
    :param dag_tags: each DAG's tags, for SLOs set per tag.
    """
    if not slos:
        return []
    dags = slo_dag_ids(slos, dag_tags or {})
    if not dags:
        return []
    return ledger.records(until - max(slo.period for slo in slos), until, dag_ids=dags)


def measure_slos(
    slos: Sequence[SustainabilitySlo],
    records: Iterable[LedgerRecord],
    until: datetime,
    dag_tags: Mapping[str, Sequence[str]] | None = None,
    *,
    day_records: Iterable[LedgerRecord] = (),
) -> tuple[ReportedSlo, ...]:
    """Measure each SLO over ``[until - its period, until)``.

    :param slos: the SLOs, in the order shown.
    :param records: ledger records covering the longest window (newest version of each try).
    :param until: the end of every window (the end of the report's day).
    :param dag_tags: each DAG's tags, for SLOs set per tag; an SLO set per tag without them is not judged.
    :param day_records: the report's own records as it finalised them; they replace the versions in ``records``.
    """
    by_try: dict[TryKey, LedgerRecord] = {r.key: r for r in records}
    by_try.update((r.key, r) for r in day_records)
    kept = list(by_try.values())
    reported = []
    for slo in slos:
        since = until - slo.period
        if slo.tags and not dag_tags and not slo.dag_ids:
            note = f"it is set per tag ({', '.join(slo.tags)}) and the report was given no DAG tags (dag_tags)"
            reported.append(ReportedSlo(SloStatus(slo, None, 0), since, until, note))
            continue
        in_window = [r for r in kept if since <= r.actual.start < until]
        reported.append(ReportedSlo(evaluate(slo, in_window, dag_tags), since, until))
    return tuple(reported)
