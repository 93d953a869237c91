"""Relay deliveries: the webhook delivery ids the relay accepted, so a replay is refused after a restart too.

Revision ID: 0004_relay_deliveries
Revises: 0003_task_runtime
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_relay_deliveries"
down_revision: str | None = "0003_task_runtime"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gridaware_relay_delivery",
        sa.Column("conn_id", sa.String(250), nullable=False),
        sa.Column("delivery_id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("conn_id", "delivery_id", name="pk_gridaware_relay_delivery"),
        comment="Webhook deliveries the relay accepted, kept for its replay window",
    )


def downgrade() -> None:
    op.drop_table("gridaware_relay_delivery")
