"""The Grid page's data: one JSON document built from the zones, the waiting tasks, the grid events and
the ledger's savings (what ``GET /gridaware/api/grid`` answers)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.times import format_time
from airflow_provider_gridaware.ui.savings import savings_by_dag

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord
    from airflow_provider_gridaware.signals.grid_event import GridEvent
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


def event_json(event: GridEvent, now: datetime) -> dict[str, Any]:
    """One grid event for the page.

    :param event: the latest stored state of the event.
    :param now: for its status now.
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
    """
    ordered = sorted(waiting, key=lambda t: (t.planned_start or t.latest_start, t.key.dag_id, t.key.task_id))
    shown_events = [event_json(e, now) for e in events if e.end is None or e.end > now - RECENT_EVENTS]
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
