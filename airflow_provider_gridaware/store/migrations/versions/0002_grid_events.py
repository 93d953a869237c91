"""Grid events: every accepted state of a demand-response event, in the order stored.

Revision ID: 0002_grid_events
Revises: 0001_forecast_archive
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_grid_events"
down_revision: str | None = "0001_forecast_archive"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gridaware_grid_event",
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("source", sa.String(128), nullable=False, comment="<protocol>:<connection id>"),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("program", sa.String(256), nullable=True),
        sa.Column("start_at", UTC_TIME, nullable=True),
        sa.Column("end_at", UTC_TIME, nullable=True),
        sa.Column(
            "test_event",
            sa.Boolean(create_constraint=True, name="ck_gridaware_grid_event_test_event"),
            nullable=False,
        ),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("stored_at", UTC_TIME, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False, comment="the normalised GridEvent as JSON"),
        sa.PrimaryKeyConstraint("seq", name="pk_gridaware_grid_event"),
        sa.UniqueConstraint(
            "source",
            "event_id",
            "modification_number",
            "status",
            name="uq_gridaware_grid_event_state",
        ),
        comment="Every accepted state of a grid (demand-response) event, in the order stored",
    )


def downgrade() -> None:
    op.drop_table("gridaware_grid_event")
