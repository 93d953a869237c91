"""Gather one day for the report: the ledger's records, the zones' actual curves, finalising, grid events.

Both the operator and ``gridaware report`` call :func:`collect_daily_report`, so their reports agree. Pure:
it takes the ledger reader, archive and event store it is given (no Airflow import).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from airflow_provider_gridaware.ledger.records import LedgerReader
from airflow_provider_gridaware.ledger.slo import SustainabilitySlo
from airflow_provider_gridaware.reporting.curves import load_actual_curves
from airflow_provider_gridaware.reporting.daily import (
    DailyReport,
    Finaliser,
    PausedWork,
    build_daily_report,
    day_bounds,
    finalise_records,
)
from airflow_provider_gridaware.reporting.slo import measure_slos, read_slo_records
from airflow_provider_gridaware.signals.models import SignalSeries

if TYPE_CHECKING:
    from airflow_provider_gridaware.store.archive import ForecastArchive
    from airflow_provider_gridaware.store.events import EventStore

#: Where the grid-event response's actions come from: ``(since, until) -> what was paused``.
PausedWorkSource = Callable[[datetime, datetime], Sequence[PausedWork]]


class ResponseHold(Protocol):
    """What the report reads of one hold in the grid-event response's record (``store/responses.py``)."""

    target: str
    target_kind: str
    event_source: str
    event_id: str
    action: str
    reason: str
    requested_at: datetime
    applied_at: datetime | None
    result: str
    resume_reason: str | None
    resume_requested_at: datetime | None
    resumed_at: datetime | None
    resume_result: str | None
    waited_seconds: float | None


def paused_work_from_holds(holds: Iterable[ResponseHold], since: datetime, until: datetime) -> list[PausedWork]:
    """The pauses and resumes in ``[since, until)`` of the grid-event response's holds, as report rows.

    :param holds: the response store's records (one per hold: a pause and, once released, its resume).
    :param since: start of the day.
    :param until: its end.
    """
    rows: list[PausedWork] = []
    for hold in holds:
        target = f"{hold.target_kind} {hold.target}"
        event = f"{hold.event_source} {hold.event_id}"
        paused_at = hold.applied_at or hold.requested_at
        if since <= paused_at < until:
            rows.append(PausedWork(paused_at, hold.action, target, event, hold.result, hold.reason))
        resumed_at = hold.resumed_at or hold.resume_requested_at
        if resumed_at is not None and since <= resumed_at < until:
            held = f"held {hold.waited_seconds / 60:.0f} min; " if hold.waited_seconds is not None else ""
            rows.append(
                PausedWork(
                    resumed_at, "resume", target, event, hold.resume_result or "", held + (hold.resume_reason or "")
                )
            )
    return sorted(rows, key=lambda row: row.at)


def collect_daily_report(
    day: date,
    ledger: LedgerReader,
    *,
    archive: ForecastArchive | None = None,
    event_store: EventStore | None = None,
    finaliser: Finaliser | None = None,
    paused_work: PausedWorkSource | None = None,
    fetched_actuals: Mapping[str, SignalSeries] | None = None,
    dag_ids: Sequence[str] | None = None,
    extra_notes: Sequence[str] = (),
    generated_at: datetime | None = None,
    slos: Sequence[SustainabilitySlo] = (),
    dag_tags: Mapping[str, Sequence[str]] | None = None,
) -> DailyReport:
    """Read, finalise and aggregate one UTC day.

    :param day: the day.
    :param ledger: where the records are.
    :param archive: the forecast archive holding the day's actuals (the curves; finalising).
    :param event_store: the grid-event log (the day's events).
    :param finaliser: recomputes a record from its zones' actuals (the ledger's ``finalise``); ``None``
        reports the records as written.
    :param paused_work: what the grid-event response did that day; ``None``: the report says it was not given.
    :param fetched_actuals: zone -> actuals already fetched through a hook (used before the archive).
    :param dag_ids: only these DAGs.
    :param extra_notes: data-quality notes from the caller.
    :param generated_at: when (default now).
    :param slos: sustainability SLOs to report, each over its window ending with the day (read from the
        same ledger; the day's records count as finalised here); not limited by ``dag_ids``.
    :param dag_tags: each DAG's tags, for SLOs set per tag.
    """
    since, until = day_bounds(day)
    records = ledger.records(since, until, dag_ids=dag_ids)
    curves = load_actual_curves(archive, records, day, fetched=fetched_actuals)
    notes = list(extra_notes)
    if finaliser is not None and records:
        records, finalise_notes = finalise_records(records, curves, finaliser)
        notes += finalise_notes
    events = event_store.current(include_final=True) if event_store is not None else ()
    reported_slos = measure_slos(
        slos, read_slo_records(ledger, slos, until, dag_tags), until, dag_tags, day_records=records
    )
    return build_daily_report(
        day,
        records,
        curves=curves,
        events=events,
        paused=paused_work(since, until) if paused_work is not None else None,
        extra_notes=notes,
        generated_at=generated_at,
        slos=reported_slos,
    )
