"""A task waiting for its grid window, as the Grid page lists it, from its trigger's request.

The request (``GridWindowRequest`` in JSON form) is what Airflow keeps in its ``trigger`` table for a
deferred task: the job (with its deadline and latest start), when the wait began, the counterfactual
("start at once in the home zone") and the decision that made the task wait, in its own words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow_provider_gridaware.ledger.records import TryKey
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.times import format_time, parse_time


@dataclass(frozen=True)
class WaitingTask:
    """One deferred grid-aware task.

    :param key: which task instance.
    :param priority_class: ``critical``, ``flexible`` or ``batch``.
    :param latest_start: the last start that keeps the deadline.
    :param deadline: when the work must be finished.
    :param waiting_since: when the wait began.
    :param decided_at: when the decision below was made.
    :param reason: that decision in plain words.
    :param zone: the zone of the window it waits for.
    :param planned_start: start of that window.
    :param planned_end: end of that window.
    :param expected_signals: expected mean signal per unit in that window.
    :param now_signals: the same had it started when the wait began (the counterfactual).
    :param fallback: no usable signal: it waits for its latest start.
    :param duration: the work's expected run time.
    :param interruptible: whether the work can checkpoint and stop.
    """

    key: TryKey
    priority_class: str
    latest_start: datetime
    deadline: datetime
    waiting_since: datetime | None = None
    decided_at: datetime | None = None
    reason: str = ""
    zone: str | None = None
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    expected_signals: Mapping[str, float] = field(default_factory=dict)
    now_signals: Mapping[str, float] = field(default_factory=dict)
    fallback: bool = False
    duration: timedelta = timedelta(0)
    interruptible: bool = False

    @property
    def expected_saving(self) -> dict[str, float]:
        """Relative saving per unit of the planned window against starting when the wait began (0.38 = 38 %)."""
        saving: dict[str, float] = {}
        for unit, at_once in self.now_signals.items():
            expected = self.expected_signals.get(unit)
            if expected is not None and at_once:
                saving[unit] = (at_once - expected) / abs(at_once)
        return saving

    @cached_property
    def as_json(self) -> dict[str, Any]:
        """:meth:`to_json`, made once (a waiting task is listed on every refresh until it is released)."""
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for the page."""

        def when(value: datetime | None) -> str | None:
            return None if value is None else format_time(value)

        return {
            "dag_id": self.key.dag_id,
            "run_id": self.key.run_id,
            "task_id": self.key.task_id,
            "map_index": self.key.map_index,
            "try_number": self.key.try_number,
            "priority_class": self.priority_class,
            "zone": self.zone,
            "planned_start": when(self.planned_start),
            "planned_end": when(self.planned_end),
            "latest_start": format_time(self.latest_start),
            "deadline": format_time(self.deadline),
            "waiting_since": when(self.waiting_since),
            "decided_at": when(self.decided_at),
            "reason": self.reason,
            "expected_signals": dict(self.expected_signals),
            "now_signals": dict(self.now_signals),
            "expected_saving": self.expected_saving,
            "fallback": self.fallback,
        }


#: Said when a trigger's request carries no decision (deferred by a provider version that did not keep it).
NO_DECISION_KEPT = "waiting for its grid window (this wait was deferred without its decision: see the task log)"


def waiting_task(key: TryKey, request: Mapping[str, Any]) -> WaitingTask:
    """The waiting task described by its trigger's request.

    :param key: which task instance.
    :param request: the ``GridWindowRequest`` in JSON form (the trigger's ``request`` kwarg).
    :raises ValueError: the request is not a grid window request (a message naming what is missing).
    """
    job = request.get("job")
    if not isinstance(job, Mapping):
        raise ValueError(f"{key.dag_id}.{key.task_id}: the trigger's request has no job")
    try:
        parsed = Job.from_dict(job)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{key.dag_id}.{key.task_id}: the trigger's job is unreadable ({exc!r})") from None
    first = request.get("first_decision") or {}
    counterfactual = request.get("counterfactual") or {}
    waiting_since = request.get("waiting_since")

    def time_of(value: Any, what: str) -> datetime | None:
        return None if not value else parse_time(value, what=what)

    return WaitingTask(
        key=key,
        priority_class=parsed.priority_class.value,
        latest_start=parsed.latest_start,
        deadline=parsed.deadline,
        waiting_since=time_of(waiting_since, "waiting_since"),
        decided_at=time_of(first.get("decided_at"), "decided_at"),
        reason=str(first.get("reason") or NO_DECISION_KEPT),
        zone=first.get("zone") or request.get("previous_zone"),
        planned_start=time_of(first.get("start") or request.get("previous_start"), "planned start"),
        planned_end=time_of(first.get("end"), "planned end"),
        expected_signals={str(u): float(v) for u, v in dict(first.get("expected_signals") or {}).items()},
        now_signals={str(u): float(v) for u, v in dict(counterfactual.get("signals") or {}).items()},
        fallback=bool(first.get("fallback", False)),
        duration=parsed.duration,
        interruptible=parsed.interruptible,
    )
