"""The grid-event response planner: given the events, the in-flight work and what is already held, what to do now.

Level-triggered, not edge-triggered: every call compares what the events *require now* with the *holds* already
recorded (one hold = one event keeping one piece of work paused) and returns the difference, so it is
idempotent and indifferent to the order events arrive in:

* a duplicated event requires what it required: nothing new;
* a late or out-of-order state is read as the latest state of its event (highest modification), and a
  state's own intervals decide whether it is in force now, so a stale "active" cannot outlive the end;
* a cancellation before the start never pauses anything; a modification that shortens the event releases
  its holds at the new end;
* two overlapping events each hold the work they require; the work resumes only when the last hold goes.

A hold is released when its event no longer requires the work (ended, cancelled, level lowered, the work
no longer over a capacity limit). Work that is not running and not held (waiting for its grid window,
finished, paused by hand) is never touched. Pure: no Airflow, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import (
    DEFAULT_POLICY,
    SHED_ORDER,
    ResponseAction,
    ResponsePolicy,
)
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus, GridEvent, latest_states

EventKey = tuple[str, str]  # (source, event_id)


class TargetKind(str, Enum):
    """What a piece of in-flight work is."""

    KUBERNETES_JOB = "kubernetes_job"
    BATCH_JOB = "batch_job"
    DAG = "dag"


class WorkState(str, Enum):
    """Where a piece of work stands, as its system reports it."""

    RUNNING = "running"
    PAUSED = "paused"  # paused (by a hold of ours, or by someone else: then left alone)
    OTHER = "other"  # waiting for its grid window, finished: never touched


@dataclass(frozen=True)
class InFlightWork:
    """One piece of work the response may pause.

    :param target: its stable key (``kubernetes_job/<conn>/<namespace>/<name>``, ``batch_job/<conn>/<job id>``,
        ``dag/<dag id>``): what holds are recorded against.
    :param kind: what it is.
    :param priority_class: its class (critical is never paused).
    :param zone: the grid zone it runs in (``None``: every event of the site applies).
    :param state: running, paused or other.
    :param power_kw: its planned power (see :meth:`ResponsePolicy.task_kw`).
    :param weight: its value: a capacity limit sheds the lowest first (within a class).
    """

    target: str
    kind: TargetKind
    priority_class: PriorityClass
    zone: str | None
    state: WorkState
    power_kw: float
    weight: float = 1.0


@dataclass(frozen=True)
class Hold:
    """One event keeping one piece of work paused (a row of the response store).

    :param hold_id: the store's id.
    :param target: the work's key.
    :param event: ``(source, event_id)``.
    :param hold_no: 1 for the event's first hold on the target, 2 if it paused it again later ...
    :param paused_it: this hold paused the work itself (``False``: it was already paused by another hold).
    """

    hold_id: int
    target: str
    event: EventKey
    hold_no: int
    paused_it: bool = True


@dataclass(frozen=True)
class PauseStep:
    """Pause ``work`` because ``event`` requires it (or, if already paused by another hold, join the hold)."""

    work: InFlightWork
    event: GridEvent
    action: ResponseAction
    reason: str
    hold_no: int
    join: bool  # already paused by another hold: record the hold, touch nothing


@dataclass(frozen=True)
class ReleaseStep:
    """Release ``hold``; ``resume`` when no other hold keeps the work paused afterwards."""

    hold: Hold
    event: GridEvent | None  # its latest state (``None``: not in the store any more)
    reason: str
    resume: bool


@dataclass(frozen=True)
class ResponsePlan:
    pauses: tuple[PauseStep, ...]
    releases: tuple[ReleaseStep, ...]

    def __bool__(self) -> bool:
        return bool(self.pauses or self.releases)


def event_zones(event: GridEvent) -> frozenset[str]:
    """The zones an event targets (empty: the whole site the DR connection speaks for)."""
    return frozenset(t.value for t in event.targets if t.kind == "zone")


def _applies(event: GridEvent, work: InFlightWork) -> bool:
    zones = event_zones(event)
    return not zones or work.zone is None or work.zone in zones


def _in_force(event: GridEvent, now: datetime, policy: ResponsePolicy) -> bool:
    if event.test_event and not policy.include_test_events:
        return False
    # A party's "completed" ends the event even inside its intervals (an early end); otherwise the intervals
    # decide, as a party's far/near/active can lag.
    return not event.status.is_final and event.status_at(now) is EventStatus.ACTIVE


def fixed_reasons(event: GridEvent, work: InFlightWork, now: datetime, policy: ResponsePolicy) -> list[str]:
    """Why ``event`` sheds ``work`` now regardless of the fleet's load (SIMPLE level, price); empty: it does not."""
    if not _in_force(event, now, policy) or not _applies(event, work):
        return []
    reasons = []
    for signal in event.signals:
        for interval in signal.intervals:
            if interval.start <= now < interval.end and policy.sheds(signal, interval, work.priority_class):
                if signal.kind is EventSignalKind.SIMPLE:
                    reasons.append(f"SIMPLE level {interval.value:g}")
                else:
                    reasons.append(f"price {interval.value:g} {signal.unit}")
    return reasons


def capacity_shed(
    event: GridEvent,
    work: Sequence[InFlightWork],
    held: Mapping[str, set[EventKey]],
    now: datetime,
    policy: ResponsePolicy,
) -> dict[str, str]:
    """Work ``event``'s import capacity limit sheds now: ``{target: reason}``, the least valuable first.

    The fleet's planned power counts running work and work held paused (it would run without the holds);
    work is shed batch first, then flexible, each from the lowest weight and then the most power, until the
    planned power is at or under the limit.
    """
    if not policy.capacity_limit or not _in_force(event, now, policy):
        return {}
    limit = event.signal(EventSignalKind.IMPORT_CAPACITY_LIMIT)
    if limit is None:
        return {}
    limit_kw = next((i.value for i in limit.intervals if i.start <= now < i.end), None)
    if limit_kw is None:
        return {}
    fleet = [
        w
        for w in work
        if _applies(event, w) and (w.state is WorkState.RUNNING or (w.state is WorkState.PAUSED and held.get(w.target)))
    ]
    planned = sum(w.power_kw for w in fleet)
    candidates = sorted(
        (w for w in fleet if w.priority_class in SHED_ORDER and policy.action(w.priority_class).pauses),
        key=lambda w: (SHED_ORDER[w.priority_class], w.weight, -w.power_kw, w.target),
    )
    shed: dict[str, str] = {}
    for w in candidates:
        if planned <= limit_kw:
            break
        planned -= w.power_kw
        shed[w.target] = (
            f"import capacity limit {limit_kw:g} kW (fleet {planned + w.power_kw:g} kW, shed {w.power_kw:g} kW)"
        )
    return shed


def plan_response(
    events: Iterable[GridEvent],
    work: Sequence[InFlightWork],
    holds: Iterable[Hold],
    *,
    now: datetime,
    policy: ResponsePolicy = DEFAULT_POLICY,
    hold_counts: Mapping[tuple[str, EventKey], int] | None = None,
) -> ResponsePlan:
    """The pauses and releases that bring the work in line with the events at ``now``.

    :param events: states of the events (any order, duplicates allowed): the latest of each counts.
    :param work: the in-flight work found now.
    :param holds: the open holds (recorded, not released).
    :param now: the current time (UTC).
    :param policy: the response rule.
    :param hold_counts: per (target, event), how many holds were ever recorded (the next one's ``hold_no``).
    """
    states = list(events)
    latest = latest_states(states)
    # A late "active" of a modification already completed or cancelled must not bring it back.
    ended = {
        key
        for key, last in latest.items()
        for e in states
        if (e.source, e.event_id) == key and e.modification_number == last.modification_number and e.status.is_final
    }
    latest = {
        k: (e if k not in ended or e.status.is_final else e.model_copy(update={"status": EventStatus.COMPLETED}))
        for k, e in latest.items()
    }
    open_holds = list(holds)
    held: dict[str, set[EventKey]] = {}
    for hold in open_holds:
        held.setdefault(hold.target, set()).add(hold.event)
    by_target = {w.target: w for w in work}

    # What each event requires now, and why.
    required: dict[str, dict[EventKey, tuple[GridEvent, str]]] = {}
    for key, event in sorted(latest.items()):
        for target, reason in capacity_shed(event, work, held, now, policy).items():
            required.setdefault(target, {})[key] = (event, reason)
        for w in work:
            reasons = fixed_reasons(event, w, now, policy)
            if reasons:
                required.setdefault(w.target, {}).setdefault(key, (event, ", ".join(reasons)))

    releases: list[ReleaseStep] = []
    remaining: dict[str, set[EventKey]] = {t: set(keys) for t, keys in held.items()}
    for hold in sorted(open_holds, key=lambda h: (h.target, h.event)):
        if hold.event in required.get(hold.target, {}):
            continue
        state = latest.get(hold.event)
        remaining[hold.target].discard(hold.event)
        releases.append(ReleaseStep(hold, state, _release_reason(state, now), resume=not remaining[hold.target]))

    pauses: list[PauseStep] = []
    counts = hold_counts or {}
    for target, by_event in sorted(required.items()):
        found = by_target.get(target)
        if found is None or found.priority_class is PriorityClass.CRITICAL:
            continue
        w = found
        for key, (event, reason) in sorted(by_event.items()):
            if key in held.get(target, set()):
                continue
            already = bool(remaining.get(target))
            if w.state is not WorkState.RUNNING and not already:
                continue  # not ours to pause: waiting for its window, finished, or paused by someone else
            pauses.append(
                PauseStep(
                    work=w,
                    event=event,
                    action=policy.action(w.priority_class),
                    reason=reason,
                    hold_no=counts.get((target, key), 0) + 1,
                    join=already,
                )
            )
            remaining.setdefault(target, set()).add(key)
    # A release whose work another pause of this plan holds again must not resume it.
    re_held = {p.work.target for p in pauses}
    releases = [
        ReleaseStep(r.hold, r.event, r.reason, resume=False) if r.resume and r.hold.target in re_held else r
        for r in releases
    ]
    return ResponsePlan(tuple(pauses), tuple(releases))


def _release_reason(event: GridEvent | None, now: datetime) -> str:
    if event is None:
        return "event no longer in the store"
    status = event.status_at(now)
    mod = f" (modification {event.modification_number})"
    if status is EventStatus.CANCELLED or event.status is EventStatus.CANCELLED:
        return "event cancelled" + mod
    if status is EventStatus.COMPLETED or event.status is EventStatus.COMPLETED:
        return "event ended" + mod
    if status is not EventStatus.ACTIVE:
        return f"event {status.value}, not in force" + mod
    return "event no longer sheds this work" + mod
