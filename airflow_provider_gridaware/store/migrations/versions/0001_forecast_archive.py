"""Forecast archive: signals, forecast vintages and points, actual points, store metadata.

Revision ID: 0001_forecast_archive
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_forecast_archive"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision: later schema changes get their own migration.
UTC_TIME = sa.DateTime(timezone=True)
VALUE = sa.Float(precision=53)


def upgrade() -> None:
    op.create_table(
        "gridaware_signal",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column(
            "metric", sa.String(16), nullable=False, comment="average, marginal, or '' when not applicable (prices)"
        ),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gridaware_signal"),
        sa.UniqueConstraint(
            "source", "zone", "kind", "metric", "unit", name="uq_gridaware_signal_source_zone_kind_metric_unit"
        ),
        comment="What a series means; forecast vintages and actual points refer to it",
    )
    op.create_table(
        "gridaware_forecast_vintage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", UTC_TIME, nullable=False),
        sa.Column(
            "issue_time_stated",
            sa.Boolean(create_constraint=True, name="ck_gridaware_forecast_vintage_issue_time_stated"),
            nullable=False,
            comment="true: the source stated the issue time; false: issued_at is when we fetched it",
        ),
        sa.Column("first_fetched_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gridaware_forecast_vintage"),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["gridaware_signal.id"],
            name="fk_gridaware_forecast_vintage_signal_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("signal_id", "issued_at", name="uq_gridaware_forecast_vintage_signal_id_issued_at"),
        comment="One issued forecast of a signal",
    )
    op.create_table(
        "gridaware_forecast_point",
        sa.Column("vintage_id", sa.Integer(), nullable=False),
        sa.Column("target_start", UTC_TIME, nullable=False),
        sa.Column("target_end", UTC_TIME, nullable=False),
        sa.Column("value", VALUE, nullable=False),
        sa.PrimaryKeyConstraint("vintage_id", "target_start", name="pk_gridaware_forecast_point"),
        sa.ForeignKeyConstraint(
            ["vintage_id"],
            ["gridaware_forecast_vintage.id"],
            name="fk_gridaware_forecast_point_vintage_id",
            ondelete="CASCADE",
        ),
        comment="A forecast value of a vintage over [target_start, target_end)",
    )
    op.create_table(
        "gridaware_actual_point",
        sa.Column("signal_id", sa.Integer(), nullable=False),
        sa.Column("target_start", UTC_TIME, nullable=False),
        sa.Column("target_end", UTC_TIME, nullable=False),
        sa.Column("value", VALUE, nullable=False),
        sa.Column("first_recorded_at", UTC_TIME, nullable=False),
        sa.Column("recorded_at", UTC_TIME, nullable=False, comment="when the current value was written (revisions)"),
        sa.PrimaryKeyConstraint("signal_id", "target_start", name="pk_gridaware_actual_point"),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["gridaware_signal.id"],
            name="fk_gridaware_actual_point_signal_id",
            ondelete="CASCADE",
        ),
        comment="A measured value over [target_start, target_end); a revision overwrites it",
    )
    op.create_table(
        "gridaware_store_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_gridaware_store_meta"),
        comment="Small facts about the store (last_pruned_at)",
    )


def downgrade() -> None:
    for table in (
        "gridaware_store_meta",
        "gridaware_actual_point",
        "gridaware_forecast_point",
        "gridaware_forecast_vintage",
        "gridaware_signal",
    ):
        op.drop_table(table)
