"""The grid events a triggerer's waiting tasks plan with: one store read per half minute, shared by all.

Only tasks that weigh price use them (an event price replaces the zone's price over its intervals, see
``planning/event_constraints.py``). The read runs in a thread; the first read in a triggerer is waited for
(bounded), later ones refresh in the background while triggers plan on the last snapshot. A store that
cannot be read is logged once and planning goes on without event prices.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot

log = logging.getLogger(__name__)

#: a snapshot is read again once it is this old (wall seconds).
EVENTS_MAX_AGE_S = 30.0
#: the first read of a triggerer is waited for at most this long (wall seconds).
FIRST_WAIT_S = 5.0


@dataclass
class SharedEventPrices:
    """Per event loop: the last snapshot and when it was read."""

    snapshot: GridEventSnapshot | None = None
    read_at: float = float("-inf")
    task: asyncio.Task[None] | None = None
    _reported: set[str] = field(default_factory=set)

    async def get(self) -> GridEventSnapshot | None:
        if time.monotonic() - self.read_at >= EVENTS_MAX_AGE_S and (self.task is None or self.task.done()):
            self.task = asyncio.ensure_future(self._read())
        if self.snapshot is None and self.task is not None and self.read_at == float("-inf"):
            await asyncio.wait({self.task}, timeout=FIRST_WAIT_S)
        return self.snapshot

    async def _read(self) -> None:
        try:
            from airflow_provider_gridaware.hooks.grid_event_base import current_grid_events

            self.snapshot = await asyncio.to_thread(current_grid_events)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            level = logging.DEBUG if reason in self._reported else logging.WARNING
            self._reported.add(reason)
            log.log(level, "Could not read grid events from the store (%s); planning without them", reason)
        finally:
            self.read_at = time.monotonic()


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedEventPrices] = weakref.WeakKeyDictionary()


def shared_grid_events() -> SharedEventPrices:
    """The event snapshot of the running event loop (the triggerer runs all its triggers in one loop)."""
    loop = asyncio.get_running_loop()
    found = _SHARED.get(loop)
    if found is None:
        found = _SHARED[loop] = SharedEventPrices()
    return found
