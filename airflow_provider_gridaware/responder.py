"""Apply the grid-event response: find the in-flight work, plan, claim each step in the store, act, record.

:func:`respond` is what ``GridEventResponseOperator`` runs, what ``GridEventTrigger(respond=...)`` runs in
the triggerer, and what the benchmark calls: one pass from the events to the work paused and resumed. The
systems are reached through *actuators* (Kubernetes Jobs across clusters, AWS Batch jobs, DAGs through
Airflow's REST API; see ``actuators.py``), so this module imports nothing from Airflow.

Exactly once: every pause is claimed (inserted) before it is applied and every release is claimed (marked)
before the resume, so two runners working on the same events apply each step once; the loser skips it.
Steps run in parallel (API calls to a cluster dominate); the store is written in one transaction per phase.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from airflow_provider_gridaware.planning.grid_response import (
    InFlightWork,
    PauseStep,
    ReleaseStep,
    ResponsePlan,
    TargetKind,
    WorkState,
    plan_response,
)
from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY, ResponsePolicy
from airflow_provider_gridaware.signals.grid_event import GridEvent
from airflow_provider_gridaware.store.responses import ResponseRecord, ResponseStore

if TYPE_CHECKING:
    from airflow_provider_gridaware.store.events import EventStore

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: API calls in flight per pass (under the client's pool of 10; on 2 busy cores more threads only add GIL contention).
DEFAULT_PARALLELISM = 4
#: A pause claimed this long ago and never finished was left by a runner that stopped: a later pass applies it.
CLAIM_LEASE = timedelta(minutes=2)
#: the notes a taken-over claim is recorded with when the pause needs no applying.
_FOUND_PAUSED = "claimed by a runner that stopped; found already paused"
_NOT_FOUND = "claimed by a runner that stopped; the work is no longer found"


class WorkActuator(Protocol):
    """One kind of in-flight work: how to find it, pause it and resume it."""

    kind: TargetKind

    def owns(self, target: str) -> bool:
        """Whether ``target`` is work of this actuator (its cluster, queue ...)."""
        ...

    def discover(self) -> list[InFlightWork]:
        """The work of this kind there is now (running, paused, other)."""
        ...

    def pause(self, work: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        """Pause ``work``: ``("paused" | "gone" | "failed", detail)``; detail is kept for the resume."""
        ...

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        """Resume what ``record`` paused: ``("resumed" | "gone" | "failed", detail)``."""
        ...


@runtime_checkable
class FindsPausedWork(Protocol):
    """An actuator whose paused work :meth:`WorkActuator.discover` does not list (a paused AWS Batch job is
    terminated), so a pause applied but never recorded is found another way."""

    def find_paused(self, target: str) -> dict[str, Any] | None:
        """The detail a pause of ``target`` records (what its resume needs), if ``target`` is paused and not
        resumed yet; ``None`` if it is not."""
        ...


@dataclass
class ResponseOutcome:
    """What one pass did, for the task's log and XCom.

    :param paused: ``{target, event, action, reason}`` per pause applied.
    :param joined: holds recorded on work another event had paused already.
    :param resumed: ``{target, event, reason, waited_seconds}`` per work resumed.
    :param released: holds released while another event keeps the work paused.
    :param skipped: steps another runner claimed first.
    :param failed: ``{target, step, error}`` per step or discovery that failed.
    """

    paused: list[dict[str, Any]] = field(default_factory=list)
    joined: list[dict[str, Any]] = field(default_factory=list)
    resumed: list[dict[str, Any]] = field(default_factory=list)
    released: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {k: list(v) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        return ", ".join(f"{len(v)} {k}" for k, v in self.__dict__.items())


def _parallel(items: Sequence[T], call: Callable[[T], R], parallelism: int) -> list[R]:
    if len(items) <= 1 or parallelism <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(parallelism, len(items)), thread_name_prefix="gridaware-respond") as pool:
        return list(pool.map(call, items))


def _guarded(what: str, call: Callable[[], tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """A step's failure is recorded and logged, never raised: the other steps of the pass still run."""
    try:
        return call()
    except Exception as exc:  # any API failure: the record names it, the next pass tries again
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
        return "failed", {"error": f"{type(exc).__name__}: {exc}"}


def held_work(records: Iterable[ResponseRecord], found: Mapping[str, InFlightWork]) -> list[InFlightWork]:
    """Work kept paused by a hold but not found by its actuator (a paused AWS Batch job is terminated, so not
    listed): rebuilt from the record, so a capacity limit still counts its power."""
    rebuilt: dict[str, InFlightWork] = {}
    for record in records:
        if record.target in found or record.target in rebuilt:
            continue
        rebuilt[record.target] = InFlightWork(
            target=record.target,
            kind=TargetKind(record.target_kind),
            priority_class=PriorityClass(record.priority_class),
            zone=record.zone,
            state=WorkState.PAUSED,
            power_kw=float(record.detail.get("power_kw") or 0.0),
            weight=float(record.detail.get("weight") or 1.0),
        )
    return list(rebuilt.values())


def current_events(events: EventStore, holds: Iterable[ResponseRecord], now: datetime) -> list[GridEvent]:
    """What a pass at ``now`` responds to: the events in force or announced, and the latest state of every
    event still holding work (ended ones included, so their holds are released)."""
    found = {(e.source, e.event_id): e for e in events.current(now=now)}
    for key in {(h.event_source, h.event_id) for h in holds} - set(found):
        latest = events.latest(*key)
        if latest is not None:
            found[key] = latest
    return list(found.values())


def respond(
    *,
    events: Iterable[GridEvent] | None = None,
    event_store: EventStore | None = None,
    actuators: Sequence[WorkActuator],
    store: ResponseStore,
    now: datetime | Callable[[], datetime],
    policy: ResponsePolicy = DEFAULT_POLICY,
    parallelism: int = DEFAULT_PARALLELISM,
    runner: str | None = None,
) -> ResponseOutcome:
    """One pass: bring the in-flight work in line with ``events`` at ``now``, each step exactly once.

    :param events: the events' states (the latest of each counts; include those of the open holds).
    :param event_store: instead of ``events``: read them from this store, after the open holds (see below).
    :param actuators: one per kind of work.
    :param store: the response record (claims and results).
    :param now: the current time, or the clock to read it from: a clock is read after the open holds, so a
        hold another runner made (at its own, later, time) is judged at a time no earlier than it was made.
    :param policy: the response rule.
    :param parallelism: API calls in flight at once.
    :param runner: who applies the steps (``triggerer``, ``task``), recorded as ``paused_by`` / ``resumed_by``.
    """
    outcome = ResponseOutcome()
    found: dict[str, InFlightWork] = {}
    for actuator in actuators:
        try:
            for piece in actuator.discover():
                found[piece.target] = piece
        except Exception as exc:  # one unreachable system must not stop the response elsewhere
            log.error("Finding %s work failed: %s: %s", actuator.kind.value, type(exc).__name__, exc)
            outcome.failed.append({"target": actuator.kind.value, "step": "discover", "error": str(exc)})
    records = {r.id: r for r in store.open_holds()}
    # Read before the holds, "now" could precede an event's start another runner saw pass: the holds it made
    # for that event would be released as "not in force yet" and the work resumed inside the event.
    now = now() if callable(now) else now
    if _finish_stale_claims(records, found, actuators, store, outcome, parallelism):
        records = {r.id: r for r in store.open_holds()}
    if event_store is not None:
        # Read after the holds: a hold another runner (the triggerer) claimed meanwhile has its event stored
        # before it, so every hold read here has its event's state; read before, that event would be missing
        # and its hold released as if the event were over.
        events = current_events(event_store, records.values(), now)
    if events is None:
        raise ValueError("respond() needs the events or an event store")
    work = [*found.values(), *held_work(records.values(), found)]
    plan = plan_response(
        events, work, [r.hold for r in records.values()], now=now, policy=policy, hold_counts=store.hold_counts()
    )
    if plan:
        log.info("Response plan: %d pause(s), %d release(s)", len(plan.pauses), len(plan.releases))
    _release(plan, records, actuators, store, outcome, parallelism, runner)
    _pause(plan, actuators, store, outcome, parallelism, runner)
    return outcome


def _finish_stale_claims(
    records: Mapping[int, ResponseRecord],
    found: Mapping[str, InFlightWork],
    actuators: Sequence[WorkActuator],
    store: ResponseStore,
    outcome: ResponseOutcome,
    parallelism: int,
) -> bool:
    """Apply the pauses a runner claimed but never finished (it died in between): taken over after
    :data:`CLAIM_LEASE`, applied again (a pause is idempotent: a suspended Job stays suspended), recorded.
    Work no longer listed is looked for among the paused (:class:`FindsPausedWork`). Without this the work
    would run through the event while its hold says it is held. Whether any was.

    The lease is read on the store's clock, which stamped the claims: a pass's ``now`` is the provider clock,
    which under ``GRIDAWARE_CLOCK=scaled:...`` runs ahead of it, and would make a live runner's fresh claim
    look stale (then applied twice)."""
    cutoff = store.now() - CLAIM_LEASE
    stale = [r for r in records.values() if r.result == "claimed" and r.requested_at < cutoff]
    if not stale:
        return False
    won = set(store.reclaim_stale([r.id for r in stale], cutoff))
    mine = [r for r in stale if r.id in won]

    def act(record: ResponseRecord) -> tuple[str, dict[str, Any]]:
        facts: dict[str, Any] = {k: record.detail[k] for k in ("power_kw", "weight") if k in record.detail}
        work = found.get(record.target)
        actuator = _owner(actuators, record.target)
        if actuator is None:
            return "gone", {**facts, "note": _NOT_FOUND}
        if work is None:
            return _held_if_found_paused(actuator, record, facts)
        if work.state is WorkState.PAUSED:  # the runner applied it before it stopped: held, resumed at the end
            return "paused", {**facts, "note": _FOUND_PAUSED}
        result, detail = _guarded(f"pausing {record.target}", lambda: actuator.pause(work, record.reason))
        return result, {**facts, **detail, "note": "claimed by a runner that stopped; applied by a later pass"}

    results = _parallel(mine, act, parallelism)
    store.finish_pauses(
        [(r.id, result, detail) for r, (result, detail) in zip(mine, results, strict=True) if result != "claimed"]
    )
    _undo_released_meanwhile(
        [r.id for r, (result, _) in zip(mine, results, strict=True) if result == "paused"],
        actuators,
        store,
        outcome,
        None,
    )
    for record, (result, detail) in zip(mine, results, strict=True):
        entry = {"target": record.target, "event": f"{record.event_source} {record.event_id}", "result": result}
        log.warning("%s: a pause claimed at %s was never finished: %s", record.target, record.requested_at, result)
        if result == "failed":
            outcome.failed.append({**entry, "step": "pause", "error": detail.get("error")})
        elif result == "claimed":
            outcome.failed.append({**entry, "step": "find paused", "error": detail.get("error")})
        elif result == "paused":
            outcome.paused.append(entry)
    return bool(mine)


def _held_if_found_paused(
    actuator: WorkActuator, record: ResponseRecord, facts: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A stale claim's work that discovery does not list: ``paused`` with what its resume needs if the
    actuator finds it paused (the stopped runner had applied the pause: a terminated AWS Batch job), else
    ``gone``. If looking fails, ``claimed``: the claim is left as it is, for a pass after the next lease
    (closing it as ``gone`` would leave the paused work paused for good)."""
    if not isinstance(actuator, FindsPausedWork):
        return "gone", {**facts, "note": _NOT_FOUND}
    try:
        detail = actuator.find_paused(record.target)
    except Exception as exc:  # any API failure: retried after the lease, like any stale claim
        log.error("Looking for paused %s failed: %s: %s", record.target, type(exc).__name__, exc)
        return "claimed", {"error": f"{type(exc).__name__}: {exc}"}
    if detail is None:
        return "gone", {**facts, "note": _NOT_FOUND}
    return "paused", {**facts, **detail, "note": _FOUND_PAUSED}


def _release(
    plan: ResponsePlan,
    records: Mapping[int, ResponseRecord],
    actuators: Sequence[WorkActuator],
    store: ResponseStore,
    outcome: ResponseOutcome,
    parallelism: int,
    runner: str | None = None,
) -> None:
    if not plan.releases:
        return
    claims = store.claim_releases(
        [(s.hold.hold_id, s.event.modification_number if s.event else None, s.reason) for s in plan.releases]
    )
    mine = [s for s, won in zip(plan.releases, claims, strict=True) if won]
    outcome.skipped += [_describe_release(s) for s, won in zip(plan.releases, claims, strict=True) if not won]

    def act(step: ReleaseStep) -> tuple[str, dict[str, Any]]:
        if not step.resume:
            return "released", {}
        record = records[step.hold.hold_id]
        actuator = _owner(actuators, record.target)
        if actuator is None:
            return "failed", {"error": f"{record.target} is in none of this response's clusters, queues or DAGs"}
        return _guarded(f"resuming {record.target}", lambda: actuator.resume(record, step.reason))

    results = _parallel(mine, act, parallelism)
    if runner:
        results = [(r, {**d, "resumed_by": runner}) for r, d in results]
    waited = store.finish_releases([(s.hold.hold_id, r, d) for s, (r, d) in zip(mine, results, strict=True)])
    for step, (result, detail) in zip(mine, results, strict=True):
        entry = {**_describe_release(step), "result": result, "waited_seconds": waited.get(step.hold.hold_id)}
        if result == "failed":
            outcome.failed.append({**entry, "step": "resume", "error": detail.get("error")})
        elif result == "released":
            outcome.released.append(entry)
        else:
            outcome.resumed.append(entry)
        log.info("%s: %s (%s)", step.hold.target, result, step.reason)


def _pause(
    plan: ResponsePlan,
    actuators: Sequence[WorkActuator],
    store: ResponseStore,
    outcome: ResponseOutcome,
    parallelism: int,
    runner: str | None = None,
) -> None:
    if not plan.pauses:
        return
    ids = store.claim_pauses(plan.pauses)
    mine = [(s, i) for s, i in zip(plan.pauses, ids, strict=True) if i is not None]
    outcome.skipped += [_describe_pause(s) for s, i in zip(plan.pauses, ids, strict=True) if i is None]

    def act(claimed: tuple[PauseStep, int]) -> tuple[str, dict[str, Any]]:
        step = claimed[0]
        facts = {"power_kw": step.work.power_kw, "weight": step.work.weight}
        if step.join:
            return "joined", facts
        actuator = _owner(actuators, step.work.target)
        if actuator is None:
            return "failed", {**facts, "error": f"{step.work.target} is in none of this response's actuators"}
        result, detail = _guarded(f"pausing {step.work.target}", lambda: actuator.pause(step.work, _pause_reason(step)))
        return result, {**facts, **detail}

    results = _parallel(mine, act, parallelism)
    if runner:
        results = [(r, {**d, "paused_by": runner}) for r, d in results]
    store.finish_pauses([(i, r, d) for (_, i), (r, d) in zip(mine, results, strict=True)])
    _undo_released_meanwhile(
        [i for (_, i), (r, _) in zip(mine, results, strict=True) if r == "paused"],
        actuators,
        store,
        outcome,
        runner,
    )
    for (step, _), (result, detail) in zip(mine, results, strict=True):
        entry = {**_describe_pause(step), "result": result}
        if result == "failed":
            outcome.failed.append({**entry, "step": "pause", "error": detail.get("error")})
        elif result == "joined":
            outcome.joined.append(entry)
        elif result == "paused":
            outcome.paused.append(entry)
        log.info("%s: %s (%s, %s)", step.work.target, result, step.action.value, step.reason)


def _undo_released_meanwhile(
    paused: Sequence[int],
    actuators: Sequence[WorkActuator],
    store: ResponseStore,
    outcome: ResponseOutcome,
    runner: str | None,
) -> None:
    """Resume what this pass paused if another runner released the hold while the pause was in flight.

    A claimed hold is open, so a pass that sees its event end (or cancelled) releases it at once; if that
    happens between this pass's claim and its PATCH, the release finds the work still running and the pause
    lands after it: the work would stay paused with no hold left to resume it. Unless another open hold on the
    same work keeps it paused (its own release resumes it then)."""
    if not paused:
        return
    late = [r for r in store.holds(paused) if r.resume_requested_at is not None]
    if not late:
        return
    kept = {h.target for h in store.open_holds()}

    def act(record: ResponseRecord) -> tuple[str, dict[str, Any]]:
        note = {"note": "released while its pause was in flight: resumed by the pausing runner"}
        if record.target in kept:
            return "released", {**note, "kept_by": "another open hold"}
        actuator = _owner(actuators, record.target)
        if actuator is None:
            return "failed", {"error": f"{record.target} is in none of this response's actuators"}
        result, detail = _guarded(f"resuming {record.target}", lambda: actuator.resume(record, "released meanwhile"))
        return result, {**detail, **note, **({"resumed_by": runner} if runner else {})}

    results = [act(record) for record in late]
    # Only what this undo did is recorded: the other runner's release (it may have resumed the work itself,
    # after the pause landed) stays as it recorded it.
    store.finish_releases(
        [
            (r.id, result, detail)
            for r, (result, detail) in zip(late, results, strict=True)
            if result in ("resumed", "failed")
        ]
    )
    for record, (result, detail) in zip(late, results, strict=True):
        log.warning("%s: released while its pause was in flight (%s): %s", record.target, record.resume_reason, result)
        entry = {"target": record.target, "event": f"{record.event_source}/{record.event_id}", "result": result}
        if result == "failed":
            outcome.failed.append({**entry, "step": "resume", "error": detail.get("error")})
        elif result == "resumed":
            outcome.resumed.append({**entry, "reason": "released while its pause was in flight"})


def _owner(actuators: Sequence[WorkActuator], target: str) -> WorkActuator | None:
    return next((a for a in actuators if a.owns(target)), None)


def _pause_reason(step: PauseStep) -> str:
    return f"grid event {step.event.source}/{step.event.event_id} mod {step.event.modification_number}: {step.reason}"


def _describe_pause(step: PauseStep) -> dict[str, Any]:
    return {
        "target": step.work.target,
        "event": f"{step.event.source}/{step.event.event_id}",
        "modification_number": step.event.modification_number,
        "action": step.action.value,
        "reason": step.reason,
    }


def _describe_release(step: ReleaseStep) -> dict[str, Any]:
    return {"target": step.hold.target, "event": "/".join(step.hold.event), "reason": step.reason}
