"""GridEventClearTrigger: a paused interruptible task waits in the triggerer until no called event sheds its zone.

It plans on the triggerer's shared event watcher (:mod:`~airflow_provider_gridaware.triggers.shared_events`):
no store request of its own, woken when a new, modified, cancelled or completed event changes its zone's
shedding spans, and otherwise asleep until the spans it knows end. It fires no sooner than its resume guard
(the task resumes on a worker: Airflow's resume race, see
:mod:`~airflow_provider_gridaware.triggers.resume_guard`), and if the events change during the guard it looks
again: an event called meanwhile keeps the task paused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from pydantic import BaseModel, ConfigDict

from airflow_provider_gridaware.times import current_clock, format_time
from airflow_provider_gridaware.triggers.resume_guard import hold_until
from airflow_provider_gridaware.triggers.shared_events import FIRST_WAIT_S, EventInterest, shared_grid_events

#: Sleeps are cut into steps of at most this (wall) length (a changed system clock, a suspended VM).
MAX_SLEEP_STEP_S = 60.0


class GridEventClearRequest(BaseModel):
    """The trigger's whole state, serialised as one typed object (a triggerer restart loses nothing).

    :param zone: the zone the paused work runs in.
    :param priority_class: its priority class.
    :param paused_at: when it paused (ISO 8601, the planner's clock), for the event and the log.
    :param not_before: wall-clock epoch seconds before which the trigger does not fire (the resume guard).
    """

    model_config = ConfigDict(frozen=True)

    zone: str
    priority_class: str = "flexible"
    paused_at: str
    not_before: float | None = None


class GridEventClearTrigger(BaseTrigger):
    """Fires once no called grid event sheds the request's zone for its priority class.

    :param request: the :class:`GridEventClearRequest` (or its JSON form).
    """

    def __init__(self, request: GridEventClearRequest | dict[str, Any]) -> None:
        super().__init__()
        self.request = (
            request if isinstance(request, GridEventClearRequest) else GridEventClearRequest.model_validate(request)
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        clock = current_clock()
        watcher = shared_grid_events()
        zone, priority_class = self.request.zone, self.request.priority_class
        interest = EventInterest(zones=frozenset({zone}), shedding=True, prices=False)
        while True:
            seen = watcher.version
            snapshot = await watcher.get()
            now = clock.now()
            if snapshot is None:
                self.log.warning("grid events not readable from the store yet: staying paused, asking again")
                await clock.sleep(FIRST_WAIT_S / clock.wall_seconds(1.0))
                continue
            until = snapshot.shedding_until(zone, now, priority_class)
            if until is None:
                await hold_until(self.request.not_before)
                if watcher.version != seen:
                    continue  # events changed during the guard: look again before resuming
                cleared_at = clock.now()
                self.log.info("no called grid event sheds %s any more: resuming the paused work", zone)
                yield TriggerEvent(
                    {
                        "status": "clear",
                        "zone": zone,
                        "paused_at": self.request.paused_at,
                        "cleared_at": format_time(cleared_at),
                    }
                )
                return
            self.log.info("a called grid event sheds %s until %s: staying paused", zone, format_time(until))
            while (remaining := (until - clock.now()).total_seconds()) > 0 and watcher.version == seen:
                step = min(remaining, MAX_SLEEP_STEP_S / clock.wall_seconds(1.0))
                if await watcher.sleep_or_change(interest, clock, step):
                    break
