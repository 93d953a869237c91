"""The forecast archive: every forecast vintage and actual a source returned, for calibration and backtests.

A forecast is stored as a *vintage* (one issue time of one signal) with its points; recording the same
vintage again stores nothing new, and a vintage fetched over several windows collects all their points.
Actuals keep one value per interval; a revised value overwrites the old one. Retention is bounded:
records older than ``retention`` are pruned at most once a day, as a side effect of :meth:`ForecastArchive.record`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, select

from airflow_provider_gridaware.signals.models import UTC, SignalPoint, SignalSeries, ensure_utc, format_time
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind
from airflow_provider_gridaware.store.engine import WRITE, dialect_insert
from airflow_provider_gridaware.store.migrate import OpenedStore
from airflow_provider_gridaware.store.schema import (
    NO_METRIC,
    actual_point,
    forecast_point,
    forecast_vintage,
    signal,
    store_meta,
)
from airflow_provider_gridaware.times import parse_time

#: how long vintages and actuals are kept unless the archive is opened with another retention.
DEFAULT_RETENTION = timedelta(days=90)
#: automatic pruning runs at most this often (per store, across processes: the time is in the store).
PRUNE_INTERVAL = timedelta(days=1)
LAST_PRUNED_KEY = "last_pruned_at"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SignalInfo:
    """What one archived signal means.

    :param source: the source name (``ukci``, ``watttime`` ...).
    :param zone: the zone as the source names it.
    :param kind: what is measured.
    :param metric: ``average`` or ``marginal`` (``None`` for prices).
    :param unit: the canonical unit.
    :param currency: ISO 4217 code for prices.
    """

    source: str
    zone: str
    kind: SignalKind
    metric: CarbonMetric | None
    unit: str
    currency: str | None


@dataclass(frozen=True)
class Vintage:
    """One archived forecast: its issue time and its points, as a forecast :class:`SignalSeries`.

    :param series: the forecast (``series.issued_at`` is the issue time).
    :param issue_time_stated: ``True`` if the source stated the issue time; ``False`` if ``issued_at`` is
        when it was fetched (the latest it can have been issued).
    :param first_fetched_at: when the archive first recorded this vintage.
    """

    series: SignalSeries
    issue_time_stated: bool
    first_fetched_at: datetime

    @property
    def issued_at(self) -> datetime:
        assert self.series.issued_at is not None  # a forecast always has it (model validation)
        return self.series.issued_at

    @property
    def points(self) -> tuple[SignalPoint, ...]:
        return self.series.points


@dataclass(frozen=True)
class PruneResult:
    """How many rows :meth:`ForecastArchive.prune` deleted.

    :param vintages: forecast vintages.
    :param forecast_points: their points.
    :param actual_points: actual points.
    """

    vintages: int
    forecast_points: int
    actual_points: int


SignalKey = tuple[str, str, str, str, str]


class ForecastArchive(OpenedStore):
    """Records forecast vintages and actuals in the store, and reads them back by issue or target time.

    Opening applies the store's migrations (idempotent, safe with concurrent openers). Thread-safe; one
    instance per process and store is enough.

    :param url: SQLAlchemy URL of the store; default ``$GRIDAWARE_STORE_URL`` or
        ``sqlite:///$AIRFLOW_HOME/gridaware.db`` (``sqlite://`` is an in-memory store).
    :param retention: keep vintages issued, and actuals ending, within this long before now; ``None``
        keeps everything (no automatic pruning).
    :param clock: current UTC time (tests and replays pass their own).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        retention: timedelta | None = DEFAULT_RETENTION,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if retention is not None and retention <= timedelta(0):
            raise ValueError(f"retention must be positive, not {retention}")
        super().__init__(url, clock)
        self.retention = retention
        self._signal_ids: dict[SignalKey, int] = {}
        self._prune_lock = threading.Lock()
        self._next_prune_check: datetime | None = None

    # -- writing ---------------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect().execution_options(**WRITE) as connection, connection.begin():
            yield connection

    def record(
        self, series: SignalSeries, *, fetched_at: datetime | None = None, issue_time_stated: bool = True
    ) -> None:
        """Store a forecast vintage or actual series; what is already stored is not stored twice.

        A forecast adds the points its vintage (signal and issue time) does not hold yet. An actual
        overwrites the value of an interval already stored (revision: latest wins).

        :param series: what a source returned.
        :param fetched_at: when it was fetched (default now).
        :param issue_time_stated: ``False`` if the source gave no issue time and ``series.issued_at`` is
            the fetch time.
        """
        self.record_many([series], fetched_at=fetched_at, issue_time_stated=issue_time_stated)

    def record_many(
        self, series: Iterable[SignalSeries], *, fetched_at: datetime | None = None, issue_time_stated: bool = True
    ) -> None:
        """:meth:`record` for many series in one transaction (loading files, backfills).

        :param series: forecasts and actuals, in any order.
        :param fetched_at: when they were fetched (default now).
        :param issue_time_stated: ``False`` if the source gave no issue time (``issued_at`` is the fetch time).
        """
        now = self._clock()
        fetched = ensure_utc(fetched_at, what="fetched_at") if fetched_at else now
        batch = [s for s in series if s.points]
        if batch:
            with self._write() as connection:
                signal_ids: dict[SignalKey, int] = {}
                for s in batch:
                    key = _signal_key(s)
                    if key not in signal_ids:
                        signal_ids[key] = self._signal_id(connection, key, s.currency)
                forecasts = [(signal_ids[_signal_key(s)], s) for s in batch if s.series_type is SeriesType.FORECAST]
                if forecasts:
                    _insert_forecasts(connection, forecasts, issue_time_stated, fetched)
                for s in batch:
                    if s.series_type is not SeriesType.FORECAST:
                        _upsert_actual_points(connection, signal_ids[_signal_key(s)], s.points, fetched)
            self._signal_ids.update(signal_ids)  # only once committed
        self._maybe_prune(now)

    def _signal_id(self, connection: Connection, key: SignalKey, currency: str | None) -> int:
        cached = self._signal_ids.get(key)
        if cached is not None:
            return cached
        source, zone, kind, metric, unit = key
        values = {"source": source, "zone": zone, "kind": kind, "metric": metric, "unit": unit, "currency": currency}
        unique = ["source", "zone", "kind", "metric", "unit"]
        connection.execute(
            dialect_insert(connection, signal).values(values).on_conflict_do_nothing(index_elements=unique)
        )
        where = and_(*(signal.c[name] == values[name] for name in unique))
        return int(connection.execute(select(signal.c.id).where(where)).scalar_one())

    # -- reading ---------------------------------------------------------------------------------------
    def signals(self, *, zone: str | None = None, kind: SignalKind | None = None) -> list[SignalInfo]:
        """The signals the archive holds anything for, optionally of one zone and kind.

        :param zone: only this zone.
        :param kind: only this kind.
        """
        query = select(signal).order_by(signal.c.source, signal.c.zone, signal.c.kind, signal.c.metric)
        if zone is not None:
            query = query.where(signal.c.zone == zone)
        if kind is not None:
            query = query.where(signal.c.kind == kind.value)
        with self._engine.connect() as connection:
            return [_signal_info(row) for row in connection.execute(query)]

    def vintages(
        self,
        source: str,
        zone: str,
        kind: SignalKind,
        *,
        issued_from: datetime | None = None,
        issued_until: datetime | None = None,
        metric: CarbonMetric | None = None,
    ) -> list[Vintage]:
        """Forecast vintages issued in ``[issued_from, issued_until]`` (both inclusive), oldest first.

        :param source: the source name.
        :param zone: the zone.
        :param kind: the signal kind.
        :param issued_from: earliest issue time (default: no bound).
        :param issued_until: latest issue time (default: no bound).
        :param metric: only this carbon metric (default: any; each vintage says which).
        """
        query = (
            select(
                signal,
                forecast_vintage.c.id.label("vintage_id"),
                forecast_vintage.c.issued_at,
                forecast_vintage.c.issue_time_stated,
                forecast_vintage.c.first_fetched_at,
                forecast_point.c.target_start,
                forecast_point.c.target_end,
                forecast_point.c.value,
            )
            .select_from(signal.join(forecast_vintage).join(forecast_point))
            .where(*_signal_filter(source, zone, kind, metric))
            .order_by(forecast_vintage.c.issued_at, forecast_vintage.c.id, forecast_point.c.target_start)
        )
        if issued_from is not None:
            query = query.where(forecast_vintage.c.issued_at >= ensure_utc(issued_from, what="issued_from"))
        if issued_until is not None:
            query = query.where(forecast_vintage.c.issued_at <= ensure_utc(issued_until, what="issued_until"))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        result: list[Vintage] = []
        start = 0
        for index in range(1, len(rows) + 1):
            if index == len(rows) or rows[index].vintage_id != rows[start].vintage_id:
                result.append(_vintage(rows[start:index]))
                start = index
        return result

    def actuals(
        self,
        source: str,
        zone: str,
        kind: SignalKind,
        start: datetime,
        end: datetime,
        *,
        metric: CarbonMetric | None = None,
    ) -> SignalSeries | None:
        """The archived actual points overlapping ``[start, end)``; ``None`` if the signal was never recorded.

        :param source: the source name.
        :param zone: the zone.
        :param kind: the signal kind.
        :param start: start of the range.
        :param end: end of the range.
        :param metric: the carbon metric; needed only if the source recorded both for this zone.
        :raises ValueError: when several signals match (give ``metric``).
        """
        start, end = ensure_utc(start, what="start"), ensure_utc(end, what="end")
        with self._engine.connect() as connection:
            matches = connection.execute(select(signal).where(*_signal_filter(source, zone, kind, metric))).all()
            if not matches:
                return None
            if len(matches) > 1:
                found = ", ".join(f"{row.metric or '-'} in {row.unit}" for row in matches)
                raise ValueError(f"{source} {zone} {kind.value} has several archived signals ({found}): pass metric")
            info = matches[0]
            rows = connection.execute(
                select(actual_point.c.target_start, actual_point.c.target_end, actual_point.c.value)
                .where(
                    actual_point.c.signal_id == info.id,
                    actual_point.c.target_start < end,
                    actual_point.c.target_end > start,
                )
                .order_by(actual_point.c.target_start)
            ).all()
        points = tuple(_point(row) for row in rows)
        return _series(info, SeriesType.ACTUAL, None, points)

    # -- retention -------------------------------------------------------------------------------------
    def prune(self, older_than: datetime | timedelta) -> PruneResult:
        """Delete vintages issued before ``older_than`` and actuals that ended by then.

        :param older_than: a UTC time, or an age (``now - older_than``).
        """
        cutoff = self._clock() - older_than if isinstance(older_than, timedelta) else ensure_utc(older_than)
        old_vintages = select(forecast_vintage.c.id).where(forecast_vintage.c.issued_at < cutoff)
        with self._write() as connection:
            points = connection.execute(delete(forecast_point).where(forecast_point.c.vintage_id.in_(old_vintages)))
            vintages = connection.execute(delete(forecast_vintage).where(forecast_vintage.c.issued_at < cutoff))
            actuals = connection.execute(delete(actual_point).where(actual_point.c.target_end <= cutoff))
        return PruneResult(vintages.rowcount, points.rowcount, actuals.rowcount)

    def last_pruned_at(self) -> datetime | None:
        """When retention was last applied to this store (by any process), or ``None``."""
        with self._engine.connect() as connection:
            text = connection.execute(select(store_meta.c.value).where(store_meta.c.key == LAST_PRUNED_KEY)).scalar()
        return parse_time(text, what=LAST_PRUNED_KEY) if text else None

    def _maybe_prune(self, now: datetime) -> None:
        if self.retention is None or (self._next_prune_check is not None and now < self._next_prune_check):
            return
        with self._prune_lock:
            if self._next_prune_check is not None and now < self._next_prune_check:
                return
            last = self.last_pruned_at()
            if last is None or now - last >= PRUNE_INTERVAL:
                self.prune(now - self.retention)
                with self._write() as connection:
                    values = {"key": LAST_PRUNED_KEY, "value": format_time(now), "updated_at": now}
                    statement = dialect_insert(connection, store_meta).values(values)
                    connection.execute(
                        statement.on_conflict_do_update(
                            index_elements=["key"],
                            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
                        )
                    )
                last = now
            self._next_prune_check = last + PRUNE_INTERVAL


# -- statements and rows ---------------------------------------------------------------------------------
def _insert_forecasts(
    connection: Connection,
    forecasts: Sequence[tuple[int, SignalSeries]],
    issue_time_stated: bool,
    fetched_at: datetime,
) -> None:
    """New vintages and their new points, in three statements however many there are."""
    vintages: dict[tuple[int, datetime], list[SignalPoint]] = {}
    for signal_id, forecast in forecasts:
        assert forecast.issued_at is not None  # model validation
        vintages.setdefault((signal_id, forecast.issued_at), []).extend(forecast.points)
    rows = [
        {"signal_id": sid, "issued_at": at, "issue_time_stated": issue_time_stated, "first_fetched_at": fetched_at}
        for sid, at in vintages
    ]
    statement = dialect_insert(connection, forecast_vintage)
    # executemany: the compiled statement is cached, and the drivers batch the rows (engine.py).
    connection.execute(statement.on_conflict_do_nothing(index_elements=["signal_id", "issued_at"]), rows)
    issued = [at for _, at in vintages]
    found = connection.execute(
        select(forecast_vintage.c.id, forecast_vintage.c.signal_id, forecast_vintage.c.issued_at).where(
            forecast_vintage.c.signal_id.in_({sid for sid, _ in vintages}),
            forecast_vintage.c.issued_at.between(min(issued), max(issued)),
        )
    )
    ids = {(row.signal_id, row.issued_at): row.id for row in found}
    points = [
        {"vintage_id": ids[key], "target_start": p.start, "target_end": p.end, "value": p.value}
        for key, vintage_points in vintages.items()
        for p in vintage_points
    ]
    statement = dialect_insert(connection, forecast_point)
    connection.execute(statement.on_conflict_do_nothing(index_elements=["vintage_id", "target_start"]), points)


def _upsert_actual_points(
    connection: Connection, signal_id: int, points: Sequence[SignalPoint], recorded_at: datetime
) -> None:
    rows = [
        {
            "signal_id": signal_id,
            "target_start": p.start,
            "target_end": p.end,
            "value": p.value,
            "first_recorded_at": recorded_at,
            "recorded_at": recorded_at,
        }
        for p in points
    ]
    statement = dialect_insert(connection, actual_point)
    new = statement.excluded
    # Only a changed value or interval is a revision: re-recording the same actuals leaves recorded_at alone.
    changed = (actual_point.c.value != new.value) | (actual_point.c.target_end != new.target_end)
    upsert = statement.on_conflict_do_update(
        index_elements=["signal_id", "target_start"],
        set_={"target_end": new.target_end, "value": new.value, "recorded_at": new.recorded_at},
        where=changed,
    )
    connection.execute(upsert, rows)


def _signal_key(series: SignalSeries) -> SignalKey:
    metric = series.metric.value if series.metric else NO_METRIC
    return (series.source, series.zone, series.kind.value, metric, series.unit)


def _signal_filter(source: str, zone: str, kind: SignalKind, metric: CarbonMetric | None) -> list[Any]:
    where = [signal.c.source == source, signal.c.zone == zone, signal.c.kind == SignalKind(kind).value]
    if metric is not None:
        where.append(signal.c.metric == CarbonMetric(metric).value)
    return where


def _signal_info(row: Row[Any]) -> SignalInfo:
    metric = CarbonMetric(row.metric) if row.metric != NO_METRIC else None
    return SignalInfo(row.source, row.zone, SignalKind(row.kind), metric, row.unit, row.currency)


def _point(row: Row[Any, Any, Any] | Row[Any]) -> SignalPoint:
    return SignalPoint(start=row.target_start, end=row.target_end, value=float(row.value))


def _series(
    row: Row[Any], series_type: SeriesType, issued_at: datetime | None, points: tuple[SignalPoint, ...]
) -> SignalSeries:
    info = _signal_info(row)
    return SignalSeries(
        kind=info.kind,
        metric=info.metric,
        unit=info.unit,
        currency=info.currency,
        zone=info.zone,
        source=info.source,
        series_type=series_type,
        issued_at=issued_at,
        points=points,
    )


def _vintage(rows: Sequence[Row[Any]]) -> Vintage:
    first = rows[0]
    series = _series(first, SeriesType.FORECAST, first.issued_at, tuple(_point(row) for row in rows))
    return Vintage(series, bool(first.issue_time_stated), first.first_fetched_at)
