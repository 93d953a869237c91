"""Grid events in the store: every accepted state of a demand-response event, written before anything acts on it.

Adapters (OpenADR, IEEE 2030.5) and the webhook relay call :meth:`EventStore.record` as an event arrives;
the answer says whether it was new, a modification, a new status, a duplicate or stale. Consumers (the
grid-event trigger, ``gridaware events --follow``) tail the log by ``seq``, so a consumer that was down
reads everything it missed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import Connection, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError

from airflow_provider_gridaware.signals.grid_event import GridEvent
from airflow_provider_gridaware.store.engine import WRITE
from airflow_provider_gridaware.store.migrate import OpenedStore
from airflow_provider_gridaware.store.schema import grid_event, relay_delivery
from airflow_provider_gridaware.times import UTC

log = logging.getLogger(__name__)


class RecordOutcome(str, Enum):
    """What recording one event state did."""

    NEW = "new"  # first time this event id is seen from this source
    MODIFIED = "modified"  # a higher modification number than any stored
    STATUS = "status"  # same modification, a status not stored yet (far -> near -> active ...)
    DUPLICATE = "duplicate"  # this exact state is stored already: nothing written
    STALE = "stale"  # a lower modification number than one stored: nothing written

    @property
    def stored(self) -> bool:
        return self in (RecordOutcome.NEW, RecordOutcome.MODIFIED, RecordOutcome.STATUS)


@dataclass(frozen=True)
class Recorded:
    """The outcome of :meth:`EventStore.record`.

    :param outcome: what happened.
    :param seq: the stored row's position in the log (``None`` if nothing was written).
    :param previous: the latest state stored before this one, if any.
    """

    outcome: RecordOutcome
    seq: int | None
    previous: GridEvent | None


@dataclass(frozen=True)
class StoredEvent:
    """One state of an event as stored: its position in the log, the event and when the store got it."""

    seq: int
    event: GridEvent
    stored_at: datetime


class EventStore(OpenedStore):
    """Records grid events and reads them back in the order stored.

    Opening applies the store's migrations. Thread-safe; one instance per process and store is enough.

    :param url: SQLAlchemy URL of the store (default ``$GRIDAWARE_STORE_URL`` or the SQLite file under
        ``AIRFLOW_HOME``).
    :param clock: current UTC time.
    """

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect().execution_options(**WRITE) as connection, connection.begin():
            yield connection

    # -- writing ---------------------------------------------------------------------------------------
    def record(self, event: GridEvent) -> Recorded:
        """Store ``event`` unless this state of it is stored already or a newer modification is.

        Committed before it returns: a caller may acknowledge the event once this returns.
        """
        try:
            with self._write() as connection:
                return self._record_in(connection, event)
        except IntegrityError:
            # A concurrent writer stored the same state between our check and insert (PostgreSQL).
            return Recorded(RecordOutcome.DUPLICATE, None, self.latest(event.source, event.event_id))

    def _record_in(self, connection: Connection, event: GridEvent) -> Recorded:
        previous = _latest(connection, event.source, event.event_id)
        same = connection.execute(
            _SAME_STATE,
            {
                "source": event.source,
                "event_id": event.event_id,
                "modification_number": event.modification_number,
                "status": event.status.value,
            },
        ).first()
        if same is not None:
            return Recorded(RecordOutcome.DUPLICATE, None, previous)
        if previous is not None and event.modification_number < previous.modification_number:
            return Recorded(RecordOutcome.STALE, None, previous)
        if previous is None:
            outcome = RecordOutcome.NEW
        elif event.modification_number > previous.modification_number:
            outcome = RecordOutcome.MODIFIED
        else:
            outcome = RecordOutcome.STATUS
        seq = connection.execute(
            _INSERT_STATE,
            {
                "source": event.source,
                "event_id": event.event_id,
                "modification_number": event.modification_number,
                "status": event.status.value,
                "program": event.program,
                "start_at": event.start,
                "end_at": event.end,
                "test_event": event.test_event,
                "received_at": event.received_at,
                "stored_at": self._clock(),
                "payload": event.to_json(),
            },
        ).scalar_one()
        return Recorded(outcome, int(seq), previous)

    def record_delivery(self, conn_id: str, delivery_id: str, events: list[GridEvent]) -> list[Recorded] | None:
        """Record a webhook delivery's events and its id in one transaction; ``None`` if the id was seen before.

        The relay answers 2xx only after this returns: the events and the memory of the delivery are
        committed together, so a replay is refused even after a restart, and a refused replay stores nothing.
        """
        return self.record_deliveries([(conn_id, delivery_id, events)])[0]

    def record_deliveries(
        self, deliveries: list[tuple[str, str | None, list[GridEvent]]]
    ) -> list[list[Recorded] | None]:
        """:meth:`record_delivery` for many deliveries in one transaction (the relay's group commit).

        A delivery id of ``None`` (a bearer sender without one) records the events without replay memory.
        """
        results: list[list[Recorded] | None] = []
        with self._write() as connection:
            taken: set[tuple[str, str]] = set()
            for conn_id, delivery_id, events in deliveries:
                if delivery_id is not None:
                    key = {"conn_id": conn_id, "delivery_id": delivery_id}
                    seen = (conn_id, delivery_id) in taken or connection.execute(
                        _DELIVERY_SEEN, key
                    ).first() is not None
                    if seen:
                        results.append(None)
                        continue
                    taken.add((conn_id, delivery_id))
                    connection.execute(_INSERT_DELIVERY, {**key, "received_at": self._clock()})
                results.append([self._record_in(connection, event) for event in events])
        return results

    def forget_deliveries(self, before: datetime) -> int:
        """Drop delivery ids received before ``before`` (older ones are refused as stale by their timestamp)."""
        with self._write() as connection:
            result = connection.execute(delete(relay_delivery).where(relay_delivery.c.received_at < before))
            return int(result.rowcount or 0)

    # -- reading ---------------------------------------------------------------------------------------
    def since(self, seq: int = 0, *, limit: int = 1000) -> list[StoredEvent]:
        """States stored after position ``seq``, oldest first (tail the log with the last ``seq`` you read)."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(grid_event.c.seq, grid_event.c.payload, grid_event.c.stored_at)
                .where(grid_event.c.seq > seq)
                .order_by(grid_event.c.seq)
                .limit(limit)
            ).all()
        return [StoredEvent(int(r.seq), GridEvent.from_json(r.payload), r.stored_at) for r in rows]

    def last_seq(self) -> int:
        """The position of the newest stored state (0 for an empty log)."""
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.coalesce(func.max(grid_event.c.seq), 0))).scalar_one())

    def latest(self, source: str, event_id: str) -> GridEvent | None:
        """The latest stored state of one event."""
        with self._engine.connect() as connection:
            return _latest(connection, source, event_id)

    def current(self, *, now: datetime | None = None, include_final: bool = False) -> list[GridEvent]:
        """The latest state of every event not over at ``now`` (default: the clock), by start time.

        :param include_final: keep completed and cancelled events too.
        """
        at = now or self._clock()
        newest = (
            select(grid_event.c.source, grid_event.c.event_id, func.max(grid_event.c.seq).label("seq"))
            .group_by(grid_event.c.source, grid_event.c.event_id)
            .subquery()
        )
        query = select(grid_event.c.payload).join(newest, grid_event.c.seq == newest.c.seq)
        if not include_final:
            query = query.where((grid_event.c.end_at.is_(None)) | (grid_event.c.end_at > at))
        with self._engine.connect() as connection:
            events = [GridEvent.from_json(row.payload) for row in connection.execute(query)]
        if not include_final:
            events = [e for e in events if not e.status_at(at).is_final]
        far_future = datetime.max.replace(tzinfo=UTC)
        return sorted(events, key=lambda e: (e.start or far_future, e.source, e.event_id))


def _latest(connection: Connection, source: str, event_id: str) -> GridEvent | None:
    row = connection.execute(_LATEST_STATE, {"source": source, "event_id": event_id}).first()
    return GridEvent.from_json(row.payload) if row is not None else None


# The statements of a write, built once: building them per call cost more CPU than running them (profile of
# the relay at 200 requests/s), and a relay write runs four of them per event.
# Newest modification first, then the newest state of it: the seq breaks ties by arrival.
_LATEST_STATE = (
    select(grid_event.c.payload)
    .where(grid_event.c.source == bindparam("source"), grid_event.c.event_id == bindparam("event_id"))
    .order_by(grid_event.c.modification_number.desc(), grid_event.c.seq.desc())
    .limit(1)
)
_SAME_STATE = select(grid_event.c.seq).where(
    grid_event.c.source == bindparam("source"),
    grid_event.c.event_id == bindparam("event_id"),
    grid_event.c.modification_number == bindparam("modification_number"),
    grid_event.c.status == bindparam("status"),
)
_INSERT_STATE = grid_event.insert().returning(grid_event.c.seq)
_DELIVERY_SEEN = select(relay_delivery.c.delivery_id).where(
    relay_delivery.c.conn_id == bindparam("conn_id"), relay_delivery.c.delivery_id == bindparam("delivery_id")
)
_INSERT_DELIVERY = relay_delivery.insert()
