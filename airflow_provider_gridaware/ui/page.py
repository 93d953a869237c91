"""The Grid page's data: one JSON document built from the zones, the waiting tasks, the grid events and
the ledger's savings (what ``GET /gridaware/api/grid`` answers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.times import format_time
from airflow_provider_gridaware.ui.savings import savings_by_dag

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.responses import ResponseRecord
    from airflow_provider_gridaware.ui.waiting import WaitingTask
    from airflow_provider_gridaware.ui.zones import ZoneView

#: The savings table covers this period.
SAVINGS_PERIOD = timedelta(days=30)
#: Events that ended within this long are "recent".
RECENT_EVENTS = timedelta(days=7)


def asks(event: GridEvent) -> str:
    """What an event asks for, in a few words (``simple level 2, 3``, ``price 250 EUR/MWh``)."""
    parts = []
    for signal in event.signals:
        values = ", ".join(dict.fromkeys(f"{i.value:g}" for i in signal.intervals))
        if signal.unit == "level":
            parts.append(f"level {values}")
        else:
            parts.append(f"{signal.kind.value} {values}{'' if not signal.unit else ' ' + signal.unit}")
    return "; ".join(parts) or "no signal"


#: A hold's target key starts with its kind (``dag/<dag id>``, ``kubernetes_job/<conn>/<ns>/<name>``).
DAG_TARGET_PREFIX = "dag/"


def is_recent(event: GridEvent, now: datetime) -> bool:
    """Whether the page shows ``event``: active, upcoming, or ended within :data:`RECENT_EVENTS`."""
    return event.end is None or event.end > now - RECENT_EVENTS


def hold_target_dag(record: ResponseRecord) -> str | None:
    """The DAG a hold paused, when it paused a DAG (``None``: a Kubernetes or Batch job)."""
    if record.target_kind == "dag" and record.target.startswith(DAG_TARGET_PREFIX):
        return record.target[len(DAG_TARGET_PREFIX) :]
    return None


def hold_json(record: ResponseRecord, now: datetime) -> dict[str, Any]:
    """What one hold of the grid-event response paused, and when it resumed.

    An open hold (not released yet) reports how long the work has waited so far (``waited_s``, with
    ``open: true``); a released one the wait the response stored.

    :param record: the hold, as the response store reads it back.
    :param now: for the wait of an open hold.
    """

    def when(value: datetime | None) -> str | None:
        return None if value is None else format_time(value)

    prefix = f"{record.target_kind}/"
    name = record.target[len(prefix) :] if record.target.startswith(prefix) else record.target
    released = record.resume_requested_at is not None
    paused_at = record.applied_at or record.requested_at
    waited = record.waited_seconds
    if not released and record.result in ("paused", "joined", "claimed"):
        waited = max(0.0, (now - paused_at).total_seconds())
    return {
        "target": record.target,
        "target_kind": record.target_kind,
        "name": name,
        "priority_class": record.priority_class,
        "zone": record.zone,
        "action": record.action,
        "reason": record.reason,
        "modification_number": record.modification_number,
        "requested_at": when(record.requested_at),
        "applied_at": when(record.applied_at),
        "result": record.result,
        "open": not released,
        "resume_requested_at": when(record.resume_requested_at),
        "resumed_at": when(record.resumed_at),
        "resume_result": record.resume_result,
        "resume_reason": record.resume_reason,
        "waited_s": waited,
        # Who applied it: the watcher in the triggerer (respond=) or the grid-event DAG's task.
        "paused_by": record.detail.get("paused_by"),
        "resumed_by": record.detail.get("resumed_by"),
    }


def event_json(
    event: GridEvent, now: datetime, holds: Sequence[ResponseRecord] = (), hidden_holds: int = 0
) -> dict[str, Any]:
    """One grid event for the page, with what the grid-event response paused for it.

    :param event: the latest stored state of the event.
    :param now: for its status now.
    :param holds: the response's holds for this event (oldest first), those the user may see.
    :param hidden_holds: holds on DAGs the user may not read (counted, not shown).
    """
    start, end = event.start, event.end
    return {
        "source": event.source,
        "event_id": event.event_id,
        "program": event.program,
        "status": event.status_at(now).value,
        "start": None if start is None else format_time(start),
        "end": None if end is None else format_time(end),
        "asks": asks(event),
        "test_event": event.test_event,
        "received_at": format_time(event.received_at),
        "holds": [hold_json(h, now) for h in holds],
        "hidden_holds": hidden_holds,
    }


def savings_json(records: Iterable[LedgerRecord]) -> list[dict[str, Any]]:
    """The savings table: one row per DAG and intensity kind, biggest saving first."""
    return [row.to_json() for row in savings_by_dag(records)]


def grid_page(
    *,
    now: datetime,
    zones: Sequence[ZoneView],
    waiting: Sequence[WaitingTask],
    events: Iterable[GridEvent],
    savings: list[dict[str, Any]] | None,
    ledger_error: str | None = None,
    problems: Sequence[str] = (),
    waiting_limit: int | None = None,
    slos: Sequence[dict[str, Any]] = (),
    holds: Mapping[tuple[str, str], Sequence[ResponseRecord]] | None = None,
    hidden_holds: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, Any]:
    """The page's JSON document.

    :param now: the current time.
    :param zones: one view per configured zone.
    :param waiting: the waiting tasks the user may see.
    :param events: active and recent grid events.
    :param savings: :func:`savings_json` of the last :data:`SAVINGS_PERIOD` of ledger records the user may
        see (``None``: no ledger).
    :param ledger_error: why there is no ledger, when there is none.
    :param problems: what could not be read (each named), shown on the page.
    :param waiting_limit: list at most this many waiting tasks, the soonest planned first (all are counted).
    :param slos: the sustainability SLOs' statuses (``SloStatus.to_json``).
    :param holds: per event ``(source, event id)``, the response's holds the user may see.
    :param hidden_holds: per event, how many of its holds paused DAGs the user may not read.
    """
    ordered = sorted(waiting, key=lambda t: (t.planned_start or t.latest_start, t.key.dag_id, t.key.task_id))
    held, hidden = holds or {}, hidden_holds or {}
    shown_events = [
        event_json(e, now, held.get((e.source, e.event_id), ()), hidden.get((e.source, e.event_id), 0))
        for e in events
        if is_recent(e, now)
    ]
    return {
        "now": format_time(now),
        "zones": [z.to_json() for z in zones],
        "waiting": [t.as_json for t in ordered[:waiting_limit]],
        "waiting_total": len(ordered),
        "events": shown_events,
        "savings": {
            "since": format_time(now - SAVINGS_PERIOD),
            "until": format_time(now),
            "per_dag": savings,
            "error": ledger_error,
        },
        "slos": list(slos),
        "problems": list(problems),
    }


def ledger_record_json(record: LedgerRecord) -> dict[str, Any]:
    """One ledger record for a task's decision view: what the release decided and what actually happened."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else format_time(value)

    actual, cf = record.actual, record.counterfactual
    return {
        "try_number": record.key.try_number,
        "state": record.state,
        "reason": record.reason,
        "planned_start": when(record.planned_start),
        "planned_end": when(record.planned_end),
        "waited_s": record.waited_s,
        "zone": actual.zone,
        "started": format_time(actual.start),
        "ended": format_time(actual.end),
        "intensity_g_per_kwh": actual.intensity_g_per_kwh,
        "counterfactual_intensity_g_per_kwh": None if cf is None else cf.intensity_g_per_kwh,
        "emissions_kg": None if actual.emissions_g is None else actual.emissions_g / 1000,
        "saved_kg": None if record.saved_g is None else record.saved_g / 1000,
        "missed_deadline": record.missed_deadline,
        "notes": list(record.notes),
    }
