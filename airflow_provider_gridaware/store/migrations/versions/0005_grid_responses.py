"""Grid responses: every pause and resume the grid-event response applied, one row per hold.

Revision ID: 0005_grid_responses
Revises: 0004_relay_deliveries
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_grid_responses"
down_revision: str | None = "0004_relay_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gridaware_grid_response",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "target",
            sa.String(512),
            nullable=False,
            comment="kubernetes_job/<conn>/<ns>/<name>, batch_job/..., dag/<id>",
        ),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("priority_class", sa.String(16), nullable=False),
        sa.Column("zone", sa.String(64), nullable=True),
        sa.Column("event_source", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column(
            "hold_no",
            sa.Integer(),
            nullable=False,
            comment="1 for the event's first hold on the target, 2 the next ...",
        ),
        sa.Column(
            "modification_number", sa.Integer(), nullable=False, comment="the event's modification that paused it"
        ),
        sa.Column("action", sa.String(16), nullable=False, comment="checkpoint or stop"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(16), nullable=False, comment="claimed, paused, joined, gone, failed"),
        sa.Column(
            "detail", sa.Text(), nullable=True, comment="what the system said, as JSON (the AWS job id paused ...)"
        ),
        sa.Column("resume_modification_number", sa.Integer(), nullable=True),
        sa.Column("resume_reason", sa.Text(), nullable=True),
        sa.Column("resume_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "resume_result", sa.String(16), nullable=True, comment="resumed, released (still held), gone, failed"
        ),
        sa.Column("waited_seconds", sa.Float(precision=53), nullable=True, comment="from applied_at to resumed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_gridaware_grid_response"),
        sa.UniqueConstraint("target", "event_source", "event_id", "hold_no", name="uq_gridaware_grid_response_hold"),
        comment="Every pause (hold) and resume the grid-event response applied to in-flight work",
    )
    op.create_index("ix_gridaware_grid_response_open", "gridaware_grid_response", ["resume_requested_at", "target"])


def downgrade() -> None:
    op.drop_index("ix_gridaware_grid_response_open", table_name="gridaware_grid_response")
    op.drop_table("gridaware_grid_response")
