"""The carbon ledger in the store: one row per executed try, written by the tries' own end paths.

Writing is an upsert keyed on the try (dag, run, task, map index, try number): a re-report of a try
replaces its row (``versions`` counts the reports), a retry is another try number, so nothing counts
twice. Each write is one transaction: a process killed between two writes leaves every row either at its
old or its new version. A version written earlier than the stored one never overwrites it (a late
re-report cannot undo a finalised record).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, false, func, or_, select

from airflow_provider_gridaware.ledger.codec import record_from_json, record_to_json
from airflow_provider_gridaware.ledger.figures import INSTANT, PLANNER_SOURCE, finalise
from airflow_provider_gridaware.ledger.records import LedgerRecord, TryKey
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.store.engine import WRITE, dialect_insert
from airflow_provider_gridaware.store.migrate import OpenedStore
from airflow_provider_gridaware.store.schema import ledger_try
from airflow_provider_gridaware.times import parse_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.store.archive import ForecastArchive

CI = SignalKind.CARBON_INTENSITY
_KEY = ("dag_id", "run_id", "task_id", "map_index", "try_number")


@functools.cache
def _upsert(dialect_name: str) -> Any:
    """The ledger's upsert for one dialect, built once: constructing it per write took most of the write's CPU."""
    statement = dialect_insert(dialect_name, ledger_try)
    newer = statement.excluded.recorded_at >= ledger_try.c.recorded_at
    # A version older than the stored one is a late duplicate: it counts as a report, it replaces nothing.
    updated: dict[str, Any] = {
        column.name: case((newer, statement.excluded[column.name]), else_=column)
        for column in ledger_try.c
        if column.name not in (*_KEY, "versions")
    }
    updated["versions"] = ledger_try.c.versions + 1
    return statement.on_conflict_do_update(index_elements=list(_KEY), set_=updated)


@dataclass(frozen=True)
class LedgerCounts:
    """How many rows the ledger holds and how many reports made them (tests, ``gridaware ledger``).

    :param tries: rows (one per try).
    :param reports: writes that reached the rows (re-reports included).
    """

    tries: int
    reports: int


class LedgerStore(OpenedStore):
    """Writes ledger records and reads them back (a :class:`~airflow_provider_gridaware.ledger.records.LedgerReader`).

    Opening applies the store's migrations. Thread-safe; one instance per process and store is enough.

    :param url: SQLAlchemy URL of the store; default ``$GRIDAWARE_STORE_URL`` or
        ``sqlite:///$AIRFLOW_HOME/gridaware.db``.
    :param clock: current UTC time (a record's ``recorded_at`` when it has none).
    """

    def __init__(self, url: str | None = None, *, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(url, clock)

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, record: LedgerRecord) -> LedgerRecord:
        """Store ``record``, replacing an earlier version of the same try; committed when this returns.

        :param record: the try's record; ``recorded_at`` defaults to now.
        :returns: the record as stored (with its ``recorded_at``).
        """
        if record.recorded_at is None:
            record = replace(record, recorded_at=self._clock())
        assert record.recorded_at is not None
        key = record.key
        values: dict[str, Any] = {
            "dag_id": key.dag_id,
            "run_id": key.run_id,
            "task_id": key.task_id,
            "map_index": key.map_index,
            "try_number": key.try_number,
            "run_start": record.actual.start,
            "state": record.state,
            "zone": record.actual.zone,
            "finalised": record.finalised,
            "recorded_at": parse_time(record.recorded_at, what="recorded_at"),
            "versions": 1,
            "record": record_to_json(record),
        }
        with self._engine.connect().execution_options(**WRITE) as connection, connection.begin():
            connection.execute(_upsert(connection.dialect.name), values)
        return record

    # -- reading ---------------------------------------------------------------------------------------
    def records(self, since: datetime, until: datetime, *, dag_ids: Sequence[str] | None = None) -> list[LedgerRecord]:
        """The newest version of every record whose run started in ``[since, until)``, in start order.

        :param since: earliest run start (inclusive).
        :param until: latest run start (exclusive).
        :param dag_ids: only these DAGs (``None`` = all).
        """
        since, until = parse_time(since, what="since"), parse_time(until, what="until")
        query = (
            select(ledger_try.c.record)
            .where(ledger_try.c.run_start >= since, ledger_try.c.run_start < until)
            .order_by(ledger_try.c.run_start, *(ledger_try.c[name] for name in _KEY))
        )
        if dag_ids is not None:
            if not dag_ids:
                return []
            query = query.where(ledger_try.c.dag_id.in_(list(dag_ids)))
        with self._engine.connect() as connection:
            return [record_from_json(text) for text in connection.execute(query).scalars()]

    def get(self, key: TryKey) -> LedgerRecord | None:
        """The stored record of one try, or ``None``."""
        with self._engine.connect() as connection:
            text = connection.execute(select(ledger_try.c.record).where(_key_filter(key))).scalar()
        return None if text is None else record_from_json(text)

    def versions(self, key: TryKey) -> int:
        """How many times a try was reported (0: never)."""
        with self._engine.connect() as connection:
            count = connection.execute(select(ledger_try.c.versions).where(_key_filter(key))).scalar()
        return int(count or 0)

    def counts(self) -> LedgerCounts:
        """Rows and reports in the whole ledger."""
        with self._engine.connect() as connection:
            tries, reports = connection.execute(
                select(func.count(), func.coalesce(func.sum(ledger_try.c.versions), 0)).select_from(ledger_try)
            ).one()
        return LedgerCounts(int(tries), int(reports))

    def keys(self, keys: Iterable[TryKey]) -> set[TryKey]:
        """Which of ``keys`` the ledger holds (reconciliation: what a lost write left out)."""
        wanted = list(keys)
        held: set[TryKey] = set()
        with self._engine.connect() as connection:
            for offset in range(0, len(wanted), 200):
                chunk = wanted[offset : offset + 200]
                rows = connection.execute(select(*_key_columns()).where(*[_any_of(chunk)])).all()
                held.update(TryKey(r.dag_id, r.run_id, r.task_id, r.map_index, r.try_number) for r in rows)
        return held


def _key_columns() -> list[Any]:
    return [ledger_try.c[name] for name in _KEY]


def _key_filter(key: TryKey) -> Any:
    return and_(*(ledger_try.c[name] == getattr(key, name) for name in _KEY))


def _any_of(keys: Sequence[TryKey]) -> Any:
    return or_(false(), *(_key_filter(k) for k in keys))


def archived_actuals(record: LedgerRecord, archive: ForecastArchive) -> list[SignalSeries]:
    """The archive's actuals for a record's run and counterfactual, from the sources the record names.

    :param record: a ledger record (its ``signal_source`` names ``source:zone`` pairs).
    :param archive: the forecast archive of the same store.
    """
    runs = [record.actual] if record.counterfactual is None else [record.actual, record.counterfactual]
    periods: dict[str, tuple[datetime, datetime]] = {}
    for run in runs:  # one series per zone and signal, spanning the run and the counterfactual there
        start, end = periods.get(run.zone, (run.start, run.end))
        periods[run.zone] = (min(start, run.start), max(end, run.end, run.start + INSTANT))
    named = [tuple(pair.rsplit(":", 1)) for pair in record.signal_source.split(", ") if ":" in pair]
    found: list[SignalSeries] = []
    for zone, (start, end) in periods.items():
        sources = {source for source, z in named if z == zone and source != PLANNER_SOURCE}
        for info in archive.signals(zone=zone):
            if (sources and info.source not in sources) or info.kind not in (CI, SignalKind.PRICE):
                continue
            series = archive.actuals(info.source, zone, info.kind, start, end, metric=info.metric)
            if series is not None and len(series):
                found.append(series)
    return found


def finalise_from_archive(
    record: LedgerRecord, archive: ForecastArchive, *, recorded_at: datetime | None = None
) -> LedgerRecord:
    """:func:`~airflow_provider_gridaware.ledger.figures.finalise` on the actuals the archive holds now
    (what the hooks recorded since the record was written); ``finalised`` only if they cover everything.

    :param record: a ledger record.
    :param archive: the forecast archive of the same store.
    :param recorded_at: when the finalised version is written (write it back with :meth:`LedgerStore.write`).
    """
    return finalise(record, archived_actuals(record, archive), recorded_at=recorded_at)
