"""Tables of the provider's store: one database for the forecast archive, grid events and the ledger.

Every table is prefixed ``gridaware_`` and the Alembic version table is ``gridaware_alembic_version``, so
the store may share a database (even Airflow's metadata database) without touching anything else.
Later tables (``gridaware_grid_event``, ``gridaware_ledger_try``) join on :data:`signal` by ``signal_id``
or on ``zone``.

Layout of the forecast archive:

* ``gridaware_signal``: what a series means (source, zone, kind, metric, unit); one row per meaning.
* ``gridaware_forecast_vintage``: one issued forecast of a signal (issue time, whether the source stated
  it or it is the fetch time, when we first fetched it).
* ``gridaware_forecast_point``: the values of a vintage, one row per target interval.
* ``gridaware_actual_point``: measured values of a signal; a revision overwrites (latest wins).
* ``gridaware_store_meta``: small key/value facts about the store (when it was last pruned).

Grid events: ``gridaware_grid_event``, one row per accepted state of a demand-response event, in the order
stored (``seq``), with the normalised event as JSON.

Task runs (the ledger's family: later tables key on the same dag/run/task/map index/try):

* ``gridaware_task_runtime``: the measured run time of each successful try of a grid-aware task, what
  ``duration="auto"`` estimates from.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

UTC = timezone.utc
TABLE_PREFIX = "gridaware_"
VERSION_TABLE = "gridaware_alembic_version"
#: ``metric`` of a signal without one (prices): unique constraints treat NULLs as distinct, '' is not.
NO_METRIC = ""

# Stable constraint names so later migrations can alter them by name on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect (SQLite stores naive UTC text, PostgreSQL ``timestamptz``).

    Binding a naive datetime is an error: the store never guesses a timezone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"time {value.isoformat()} has no timezone")
        utc = value.astimezone(UTC)
        # SQLite keeps text without offset; comparing it as text is only right if every row is UTC and naive.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)

signal = Table(
    "gridaware_signal",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(64), nullable=False),
    Column("zone", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("metric", String(16), nullable=False, comment="average, marginal, or '' when not applicable (prices)"),
    Column("unit", String(32), nullable=False),
    Column("currency", String(3), nullable=True),
    UniqueConstraint("source", "zone", "kind", "metric", "unit"),
    comment="What a series means; forecast vintages and actual points refer to it",
)

forecast_vintage = Table(
    "gridaware_forecast_vintage",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("signal_id", Integer, ForeignKey("gridaware_signal.id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column(
        "issue_time_stated",
        Boolean(create_constraint=True, name="ck_gridaware_forecast_vintage_issue_time_stated"),
        nullable=False,
        comment="true: the source stated the issue time; false: issued_at is when we fetched it",
    ),
    Column("first_fetched_at", UTCDateTime(), nullable=False),
    # Serves vintages(signal, issued_from, issued_until) and the per-signal retention delete.
    UniqueConstraint("signal_id", "issued_at"),
    comment="One issued forecast of a signal",
)

forecast_point = Table(
    "gridaware_forecast_point",
    metadata,
    # The primary key is the dedupe key: a vintage fetched twice (or over overlapping windows) keeps one row per target.
    Column("vintage_id", Integer, ForeignKey("gridaware_forecast_vintage.id", ondelete="CASCADE"), primary_key=True),
    Column("target_start", UTCDateTime(), primary_key=True),
    Column("target_end", UTCDateTime(), nullable=False),
    Column("value", Float(precision=53), nullable=False),
    comment="A forecast value of a vintage over [target_start, target_end)",
)

actual_point = Table(
    "gridaware_actual_point",
    metadata,
    # One row per target interval; the primary key also serves actuals(signal, start, end) and retention.
    Column("signal_id", Integer, ForeignKey("gridaware_signal.id", ondelete="CASCADE"), primary_key=True),
    Column("target_start", UTCDateTime(), primary_key=True),
    Column("target_end", UTCDateTime(), nullable=False),
    Column("value", Float(precision=53), nullable=False),
    Column("first_recorded_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False, comment="when the current value was written (revisions)"),
    comment="A measured value over [target_start, target_end); a revision overwrites it",
)

store_meta = Table(
    "gridaware_store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    comment="Small facts about the store (last_pruned_at)",
)

grid_event = Table(
    "gridaware_grid_event",
    metadata,
    # The order events were stored in: consumers (the event trigger, the CLI's --follow) tail by it.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("source", String(128), nullable=False, comment="<protocol>:<connection id>"),
    Column("event_id", String(256), nullable=False),
    Column("modification_number", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("program", String(256), nullable=True),
    Column("start_at", UTCDateTime(), nullable=True),
    Column("end_at", UTCDateTime(), nullable=True),
    Column("test_event", Boolean(create_constraint=True, name="ck_gridaware_grid_event_test_event"), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("stored_at", UTCDateTime(), nullable=False),
    Column("payload", Text(), nullable=False, comment="the normalised GridEvent as JSON"),
    # One row per state of an event: a re-sent state is a duplicate and stores nothing.
    # Named by hand: the convention's name would pass PostgreSQL's 63-character limit.
    UniqueConstraint("source", "event_id", "modification_number", "status", name="uq_gridaware_grid_event_state"),
    comment="Every accepted state of a grid (demand-response) event, in the order stored",
)

# Airflow's own limit for dag, task and run ids (ID_LEN).
AIRFLOW_ID_LEN = 250


def _task_try_key(*ids: str) -> list[Column[Any]]:
    """The primary key of one task try, the key the ledger's tables share: the id columns ``ids`` (``dag_id``,
    ``task_id``, ``run_id`` in the table's own order), then ``map_index`` and ``try_number``."""
    return [
        *(Column(name, String(AIRFLOW_ID_LEN), primary_key=True) for name in ids),
        Column("map_index", Integer, primary_key=True),
        Column("try_number", Integer, primary_key=True),
    ]


task_runtime = Table(
    "gridaware_task_runtime",
    metadata,
    # One row per task try, the key the ledger's tables share: recording a try again overwrites it.
    *_task_try_key("dag_id", "task_id", "run_id"),
    Column("started_at", UTCDateTime(), nullable=False, comment="when the work first ran (not the grid-window wait)"),
    Column("ended_at", UTCDateTime(), nullable=False),
    Column(
        "run_seconds",
        Float(precision=53),
        nullable=False,
        comment="the work's own run time: the sum of its chunks when paused and resumed",
    ),
    Column("chunks", Integer, nullable=False, comment="how many pieces the work ran in (1 unless paused)"),
    Column("kind", String(32), nullable=False, comment="what ran: python, kubernetes_job, batch_job"),
    Column("zone", String(64), nullable=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    # Serves "the last N successes of this task" (duration="auto").
    Index(None, "dag_id", "task_id", "ended_at"),
    comment="Measured run time of each successful try of a grid-aware task",
)

relay_delivery = Table(
    "gridaware_relay_delivery",
    metadata,
    # A delivery id seen once is refused again, also after a relay restart (the replay window's memory).
    Column("conn_id", String(AIRFLOW_ID_LEN), primary_key=True),
    Column("delivery_id", String(128), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
    comment="Webhook deliveries the relay accepted, kept for its replay window",
)

grid_response = Table(
    "gridaware_grid_response",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(512), nullable=False, comment="kubernetes_job/<conn>/<ns>/<name>, batch_job/..., dag/<id>"),
    Column("target_kind", String(32), nullable=False),
    Column("priority_class", String(16), nullable=False),
    Column("zone", String(64), nullable=True),
    Column("event_source", String(128), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("hold_no", Integer, nullable=False, comment="1 for the event's first hold on the target, 2 the next ..."),
    Column("modification_number", Integer, nullable=False, comment="the event's modification that paused it"),
    Column("action", String(16), nullable=False, comment="checkpoint or stop"),
    Column("reason", Text(), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("applied_at", UTCDateTime(), nullable=True),
    Column("result", String(16), nullable=False, comment="claimed, paused, joined, gone, failed"),
    Column("detail", Text(), nullable=True, comment="what the system said, as JSON (the AWS job id paused ...)"),
    Column("resume_modification_number", Integer, nullable=True),
    Column("resume_reason", Text(), nullable=True),
    Column("resume_requested_at", UTCDateTime(), nullable=True),
    Column("resumed_at", UTCDateTime(), nullable=True),
    Column("resume_result", String(16), nullable=True, comment="resumed, released (still held), gone, failed"),
    Column("waited_seconds", Float(precision=53), nullable=True, comment="from applied_at to resumed_at"),
    # The claim: two runners (two triggerers' DAG runs) computing the same hold insert it once.
    UniqueConstraint("target", "event_source", "event_id", "hold_no", name="uq_gridaware_grid_response_hold"),
    Index("ix_gridaware_grid_response_open", "resume_requested_at", "target"),
    comment="Every pause (hold) and resume the grid-event response applied to in-flight work",
)

ledger_try = Table(
    "gridaware_ledger_try",
    metadata,
    # The ledger's identity: a re-report of a try replaces its row; a retry is another try_number.
    *_task_try_key("dag_id", "run_id", "task_id"),
    Column("run_start", UTCDateTime(), nullable=False, comment="when the work started (what readers select on)"),
    Column("state", String(32), nullable=False),
    Column("zone", String(64), nullable=False),
    Column("finalised", Boolean(create_constraint=True, name="ck_gridaware_ledger_try_finalised"), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False, comment="when the current version was written"),
    Column("versions", Integer, nullable=False, comment="how many times this try was reported (re-reports)"),
    Column("record", Text(), nullable=False, comment="the LedgerRecord as JSON (ledger/codec.py)"),
    # Serves records(since, until) and the daily report's day.
    Index(None, "run_start"),
    comment="The carbon ledger: one row per executed try of a grid-aware task",
)
