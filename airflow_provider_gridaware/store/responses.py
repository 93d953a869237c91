"""The grid-event response's record: every hold (an event keeping a piece of work paused) and its release.

One row per hold: what was paused (target, kind, class, zone), by which event and modification, why, when
it was requested and applied and with what result; then when it was released, by which modification, the
result of the resume and how long the work waited. The row is also the *claim*: a unique key on (target,
event, hold number) means two runners computing the same pause insert it once and only the winner applies
it; a release is claimed by setting ``resume_requested_at`` where it is still empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, func, or_, select, update

from airflow_provider_gridaware.planning.grid_response import EventKey, Hold, PauseStep
from airflow_provider_gridaware.store.engine import dialect_insert
from airflow_provider_gridaware.store.migrate import OpenedStore
from airflow_provider_gridaware.store.schema import grid_response

#: results of a pause that leave the work held (``failed``/``gone`` holds are closed at once).
HOLDING_RESULTS = ("claimed", "paused", "joined")
#: ids per ``IN (...)`` read (SQLite before 3.32 allows 999 bound parameters).
_IN_CHUNK = 500
T = TypeVar("T")


@dataclass(frozen=True)
class ResponseRecord:
    """One row of the record, as read back (see the module docstring for the fields)."""

    id: int
    target: str
    target_kind: str
    priority_class: str
    zone: str | None
    event_source: str
    event_id: str
    hold_no: int
    modification_number: int
    action: str
    reason: str
    requested_at: datetime
    applied_at: datetime | None
    result: str
    detail: dict[str, Any]
    resume_modification_number: int | None
    resume_reason: str | None
    resume_requested_at: datetime | None
    resumed_at: datetime | None
    resume_result: str | None
    waited_seconds: float | None

    @property
    def hold(self) -> Hold:
        return Hold(self.id, self.target, (self.event_source, self.event_id), self.hold_no, self.result == "paused")


class ResponseStore(OpenedStore):
    """Claims, records and reads the grid-event response's holds. Thread-safe.

    :param url: SQLAlchemy URL of the store (default ``$GRIDAWARE_STORE_URL`` or the SQLite file under
        ``AIRFLOW_HOME``).
    :param clock: current UTC time.
    """

    def now(self) -> datetime:
        """The time this store stamps claims and results with (the wall clock unless a test gives another)."""
        return self._clock()

    # -- claims ----------------------------------------------------------------------------------------
    def claim_pauses(self, steps: Sequence[PauseStep]) -> list[int | None]:
        """Insert the holds ``steps`` ask for, in one transaction; per step its id, or ``None`` if another
        runner claimed that hold first (only the claimant applies it)."""
        now = self._clock()
        ids: list[int | None] = []
        with self._write() as connection:
            # At most one open hold per (work, event). The unique (target, event, hold number) key alone lets a
            # runner that counted another's fresh claim number its own hold one higher and insert it too; this
            # read is inside the write, so on SQLite no claim lands between it and the inserts, and on
            # PostgreSQL a concurrent uncommitted claim has the same number (the key then refuses one).
            held = self._open_pairs(connection, sorted({step.work.target for step in steps}))
            insert = dialect_insert(connection, grid_response).on_conflict_do_nothing().returning(grid_response.c.id)
            for step in steps:
                if (step.work.target, step.event.source, step.event.event_id) in held:
                    ids.append(None)
                    continue
                row = {
                    "target": step.work.target,
                    "target_kind": step.work.kind.value,
                    "priority_class": step.work.priority_class.value,
                    "zone": step.work.zone,
                    "event_source": step.event.source,
                    "event_id": step.event.event_id,
                    "hold_no": step.hold_no,
                    "modification_number": step.event.modification_number,
                    "action": step.action.value,
                    "reason": step.reason,
                    "requested_at": now,
                    "result": "claimed",
                }
                claimed = connection.execute(insert, row).scalar_one_or_none()
                ids.append(int(claimed) if claimed is not None else None)
        return ids

    @staticmethod
    def _open_pairs(connection: Any, targets: Sequence[str]) -> set[tuple[str, str, str]]:
        """``(target, event source, event id)`` of the open holds on ``targets``."""
        pairs: set[tuple[str, str, str]] = set()
        for chunk in _chunks(targets):
            query = select(grid_response.c.target, grid_response.c.event_source, grid_response.c.event_id).where(
                grid_response.c.target.in_(chunk), grid_response.c.resume_requested_at.is_(None)
            )
            pairs.update((row[0], row[1], row[2]) for row in connection.execute(query))
        return pairs

    def finish_pauses(self, results: Sequence[tuple[int, str, Mapping[str, Any] | None]]) -> None:
        """Record how claimed pauses went, ``(hold id, result, detail)`` each: ``paused``, ``joined`` (already
        paused by another hold), ``gone`` or ``failed``. A ``gone`` or ``failed`` hold is closed at once
        (nothing to resume; the next run may pause again). One statement per kind of row, each run for all
        its rows at once (a pass records a whole fleet)."""
        now = self._clock()
        held = [{"b_id": i, "b_result": r, "b_detail": _json(d)} for i, r, d in results if r in HOLDING_RESULTS]
        closed = [{"b_id": i, "b_result": r, "b_detail": _json(d)} for i, r, d in results if r not in HOLDING_RESULTS]
        record = update(grid_response).where(grid_response.c.id == bindparam("b_id"))
        values = {"result": bindparam("b_result"), "applied_at": now, "detail": bindparam("b_detail")}
        with self._write() as connection:
            if held:
                connection.execute(record.values(**values), held)
            if closed:
                connection.execute(
                    record.values(
                        **values, resume_requested_at=now, resumed_at=now, resume_result="not held", waited_seconds=0.0
                    ),
                    closed,
                )

    def reclaim_stale(self, hold_ids: Sequence[int], older_than: datetime) -> list[int]:
        """Take over pauses claimed before ``older_than`` and never finished (their runner died between the
        claim and the result), in one transaction; the ids won. Only one runner wins each: the claim time is
        moved to now where it is still the stale one."""
        now = self._clock()
        won: list[int] = []
        with self._write() as connection:
            for hold_id in hold_ids:
                result = connection.execute(
                    update(grid_response)
                    .where(
                        grid_response.c.id == hold_id,
                        grid_response.c.result == "claimed",
                        grid_response.c.applied_at.is_(None),
                        grid_response.c.requested_at < older_than,
                    )
                    .values(requested_at=now)
                )
                if result.rowcount:
                    won.append(hold_id)
        return won

    def claim_releases(self, releases: Sequence[tuple[int, int | None, str]]) -> list[bool]:
        """Claim the release of open holds, ``(hold id, the event's modification, reason)`` each, in one
        transaction; per hold ``False`` if another runner released it already.

        The claim is one ``UPDATE .. WHERE id IN (..) AND resume_requested_at IS NULL RETURNING id`` per chunk
        of ids: the ids returned are exactly the claims won, as the condition is checked on each row as it is
        written. The chunks go in ascending id order, so two runners lock the rows they share in the same
        order (no deadlock on PostgreSQL). The won rows' modification and reason follow in one update per
        event (its releases share both), on rows this transaction holds already. (``RETURNING``: SQLite 3.35+,
        which the store's inserts need already.)"""
        now = self._clock()
        hold_ids = sorted({hold_id for hold_id, _, _ in releases})
        won: set[int] = set()
        with self._write() as connection:
            for chunk in _chunks(hold_ids):
                claim = (
                    update(grid_response)
                    .where(grid_response.c.id.in_(chunk), grid_response.c.resume_requested_at.is_(None))
                    .values(resume_requested_at=now)
                    .returning(grid_response.c.id)
                )
                won.update(connection.execute(claim).scalars())
            by_event: dict[tuple[int | None, str], list[int]] = {}
            for hold_id, modification_number, reason in releases:
                if hold_id in won:
                    by_event.setdefault((modification_number, reason), []).append(hold_id)
            for (modification_number, reason), claimed in by_event.items():
                for chunk in _chunks(claimed):
                    connection.execute(
                        update(grid_response)
                        .where(grid_response.c.id.in_(chunk))
                        .values(resume_modification_number=modification_number, resume_reason=reason)
                    )
        return [hold_id in won for hold_id, _, _ in releases]

    def finish_releases(self, results: Sequence[tuple[int, str, Mapping[str, Any] | None]]) -> dict[int, float | None]:
        """Record claimed releases, ``(hold id, result, detail)`` each: ``resumed``, ``released`` (another hold
        keeps the work paused), ``gone`` or ``failed``. Returns per hold how long the work waited (from the
        pause applied to now), also stored. One read and one update for all the rows."""
        now = self._clock()
        waited: dict[int, float | None] = {}
        if not results:
            return waited
        rows: list[dict[str, Any]] = []
        with self._write() as connection:
            ids = [hold_id for hold_id, _, _ in results]
            known: dict[int, Any] = {}
            for chunk in _chunks(ids):
                query = select(grid_response.c.id, grid_response.c.applied_at, grid_response.c.detail).where(
                    grid_response.c.id.in_(chunk)
                )
                known.update({row.id: row for row in connection.execute(query)})
            for hold_id, result, detail in results:
                row = known.get(hold_id)
                seconds = (now - row.applied_at).total_seconds() if row is not None and row.applied_at else None
                merged = {**json.loads((row.detail if row else None) or "{}"), **(detail or {})}
                rows.append({"b_id": hold_id, "b_result": result, "b_waited": seconds, "b_detail": _json(merged)})
                waited[hold_id] = seconds
            connection.execute(
                update(grid_response)
                .where(grid_response.c.id == bindparam("b_id"))
                .values(
                    resumed_at=now,
                    resume_result=bindparam("b_result"),
                    waited_seconds=bindparam("b_waited"),
                    detail=bindparam("b_detail"),
                ),
                rows,
            )
        return waited

    # -- reading ---------------------------------------------------------------------------------------
    def open_holds(self) -> list[ResponseRecord]:
        """Holds not released yet (claimed ones included: a runner that died mid-pause left the work maybe paused)."""
        return self._read(grid_response.c.resume_requested_at.is_(None))

    def holds(self, hold_ids: Sequence[int]) -> list[ResponseRecord]:
        """These holds as they are now, oldest first."""
        found: list[ResponseRecord] = []
        for chunk in _chunks(sorted(set(hold_ids))):
            found += self._read(grid_response.c.id.in_(chunk))
        return found

    def hold_counts(self) -> dict[tuple[str, EventKey], int]:
        """Per (target, event), the highest hold number recorded: the next hold is one more."""
        query = select(
            grid_response.c.target,
            grid_response.c.event_source,
            grid_response.c.event_id,
            func.max(grid_response.c.hold_no),
        ).group_by(grid_response.c.target, grid_response.c.event_source, grid_response.c.event_id)
        with self._engine.connect() as connection:
            return {(r[0], (r[1], r[2])): int(r[3]) for r in connection.execute(query)}

    def records(self, *, event: EventKey | None = None, target: str | None = None) -> list[ResponseRecord]:
        """Every hold, oldest first, optionally of one event or one target."""
        terms = []
        if event is not None:
            terms += [grid_response.c.event_source == event[0], grid_response.c.event_id == event[1]]
        if target is not None:
            terms.append(grid_response.c.target == target)
        return self._read(and_(*terms) if terms else None)

    def records_of_events(self, events: Sequence[EventKey]) -> list[ResponseRecord]:
        """Every hold of these events, oldest first (one query; none asked for: none returned).

        :param events: ``(source, event id)`` keys.
        """
        keys = list(dict.fromkeys(events))
        if not keys:
            return []
        return self._read(
            or_(*(and_(grid_response.c.event_source == s, grid_response.c.event_id == e) for s, e in keys))
        )

    def _read(self, where: Any) -> list[ResponseRecord]:
        query = select(grid_response).order_by(grid_response.c.id)
        if where is not None:
            query = query.where(where)
        with self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [ResponseRecord(**{**row, "detail": json.loads(row["detail"] or "{}")}) for row in rows]


def _chunks(ids: Sequence[T]) -> list[Sequence[T]]:
    """``ids`` in slices of :data:`_IN_CHUNK`, under any SQLite's limit on bound parameters."""
    return [ids[first : first + _IN_CHUNK] for first in range(0, len(ids), _IN_CHUNK)]


def _json(detail: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(detail), sort_keys=True, default=str) if detail else None
