"""Cooperative pause: running interruptible ``@task.gridaware`` work checkpoints and waits out a called grid event.

The callable asks ``grid_checkpoint`` at its safe points (between steps)::

    @task.gridaware(duration=timedelta(hours=2), deadline=timedelta(hours=12), conn_id="gridaware_ukci_default",
                    zones=["GB"], interruptible=True)
    def train(grid_checkpoint=None):
        state = grid_checkpoint.state or {"step": 0}       # the saved state after a pause, else a fresh start
        while state["step"] < 1000:
            train_one_step(state)
            state["step"] += 1
            if grid_checkpoint.should_pause():              # a called event sheds this task's zone now
                grid_checkpoint.save(state)
                grid_checkpoint.pause()                     # the task defers until the event is over
        return state

:meth:`GridCheckpoint.should_pause` reads the store's ``last_seq`` at most every :data:`CHECK_INTERVAL_S`
(one indexed query) and the current events only when it moved; whether an event pauses the task is decided by
:meth:`~airflow_provider_gridaware.planning.event_constraints.GridEventSnapshot.shedding_until`, the spans a
waiting task is kept out of. :meth:`GridCheckpoint.pause` raises :class:`PauseForGridEvent`; the operator
defers with the saved state (the task instance's resume arguments, kept in Airflow's metadata database, so a
worker or triggerer restart loses nothing) and calls the callable again, in the same try, when the event no
longer sheds the zone. Airflow is imported only to find the store (its connection).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
    from airflow_provider_gridaware.signals.grid_event import GridEvent

log = logging.getLogger(__name__)

#: ``should_pause`` reads the store at most this often (wall seconds); between reads it answers from the last
#: snapshot at the current time (an event already known that starts now is seen at once).
CHECK_INTERVAL_S = 0.5


class PauseForGridEvent(Exception):
    """Raised by :meth:`GridCheckpoint.pause`; the grid-aware operator catches it and defers.

    :param state: the state last saved (``None``: the callable starts afresh when it resumes).
    :param until: when the events shedding the zone end, as known at the pause.
    :param reason: which events, for the log.
    """

    def __init__(self, state: dict[str, Any] | None, until: datetime | None, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.until = until
        self.reason = reason


class GridCheckpoint:
    """What an interruptible grid-aware callable gets as ``grid_checkpoint``.

    :param zone: the zone the work runs in (the released plan's).
    :param priority_class: the task's class (critical work is never paused).
    :param interruptible: the task declared it can be paused; if not, :meth:`should_pause` is always ``False``.
    :param state: the state saved before the last pause (``None`` on a first run).
    :param pauses: how many times this try has paused so far.
    :param now: the current time (the planner's clock).
    :param read_last_seq: the event store's newest position (default: the default store's).
    :param read_current: the events not over at a moment (default: the default store's).
    :param check_interval_s: how often the store is read at most.
    """

    def __init__(
        self,
        *,
        zone: str,
        priority_class: str,
        interruptible: bool,
        state: dict[str, Any] | None = None,
        pauses: int = 0,
        now: Callable[[], datetime] | None = None,
        read_last_seq: Callable[[], int] | None = None,
        read_current: Callable[[datetime], list[GridEvent]] | None = None,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        from airflow_provider_gridaware.hooks.grid_event_base import event_log_position, events_not_over
        from airflow_provider_gridaware.times import current_clock

        self.zone = zone
        self.priority_class = priority_class
        self.interruptible = interruptible
        self.state = state
        self.pauses = pauses
        self._now = now or current_clock().now
        self._read_last_seq = read_last_seq or event_log_position
        self._read_current = read_current or events_not_over
        self._check_interval_s = check_interval_s
        self._saved: dict[str, Any] | None = state
        self._snapshot: GridEventSnapshot | None = None
        self._seq = -1
        self._checked_at = float("-inf")
        self._reported: set[str] = set()

    @property
    def resumed(self) -> bool:
        """Whether this run continues after a pause."""
        return self.pauses > 0

    def should_pause(self) -> bool:
        """Whether a called grid event sheds this task's zone now (always ``False`` unless interruptible).

        A store that cannot be read is logged (once per reason) and answers ``False``: the work goes on.
        """
        if not self.interruptible:
            return False
        return self._shedding_until() is not None

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state`` for the resume (a JSON object; keep it small: a step, a path to your own checkpoint).

        :raises TypeError: ``state`` is not JSON-serialisable (it is checked now, not at the pause).
        """
        try:
            self._saved = json.loads(json.dumps(state))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"grid_checkpoint.save: the state must be JSON-serialisable ({exc})") from None

    def pause(self) -> NoReturn:
        """Stop here: the task defers until the event is over, then the callable runs again with the saved state."""
        until = self._shedding_until() if self.interruptible else None
        raise PauseForGridEvent(self._saved, until, self._describe(until))

    # -- reading the store -----------------------------------------------------------------------------
    def _shedding_until(self) -> datetime | None:
        self._refresh()
        if self._snapshot is None:
            return None
        return self._snapshot.shedding_until(self.zone, self._now(), self.priority_class)

    def _refresh(self) -> None:
        if time.monotonic() - self._checked_at < self._check_interval_s:
            return
        self._checked_at = time.monotonic()
        try:
            seq = self._read_last_seq()
            if seq != self._seq or self._snapshot is None:
                from airflow_provider_gridaware.hooks.grid_event_base import configured_response_policy
                from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot

                policy = configured_response_policy()
                self._snapshot = GridEventSnapshot(self._read_current(self._now()), policy=policy)
                self._seq = seq
        except Exception as exc:  # the work goes on; a pause is a courtesy to the grid, not a correctness need
            reason = f"{type(exc).__name__}: {exc}"
            if reason not in self._reported:
                self._reported.add(reason)
                log.warning("grid_checkpoint: could not read grid events from the store (%s); not pausing", reason)

    def _describe(self, until: datetime | None) -> str:
        from airflow_provider_gridaware.planning.event_constraints import shedding_spans
        from airflow_provider_gridaware.times import format_time

        if until is None or self._snapshot is None:
            return f"paused by the callable with no grid event shedding {self.zone} now"
        now_s = self._now().timestamp()
        names = [
            event.describe()
            for event in self._snapshot.events
            if any(s <= now_s < e for s, e in shedding_spans([event]).get(self.zone, ()))
        ]
        return f"{', '.join(names) or 'a grid event'} sheds {self.zone} until {format_time(until)}"
