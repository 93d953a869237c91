"""The carbon ledger: one row per executed try of a grid-aware task, keyed like the task runtimes.

Revision ID: 0006_ledger
Revises: 0005_grid_responses
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_ledger"
down_revision: str | None = "0005_grid_responses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision: later schema changes get their own migration.
UTC_TIME = sa.DateTime(timezone=True)
ID = sa.String(250)  # Airflow's ID_LEN


def upgrade() -> None:
    op.create_table(
        "gridaware_ledger_try",
        sa.Column("dag_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("run_start", UTC_TIME, nullable=False, comment="when the work started (what readers select on)"),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column(
            "finalised",
            sa.Boolean(create_constraint=True, name="ck_gridaware_ledger_try_finalised"),
            nullable=False,
        ),
        sa.Column("recorded_at", UTC_TIME, nullable=False, comment="when the current version was written"),
        sa.Column(
            "versions", sa.Integer(), nullable=False, comment="how many times this try was reported (re-reports)"
        ),
        sa.Column("record", sa.Text(), nullable=False, comment="the LedgerRecord as JSON (ledger/codec.py)"),
        sa.PrimaryKeyConstraint(
            "dag_id", "run_id", "task_id", "map_index", "try_number", name="pk_gridaware_ledger_try"
        ),
        comment="The carbon ledger: one row per executed try of a grid-aware task",
    )
    op.create_index("ix_gridaware_ledger_try_run_start", "gridaware_ledger_try", ["run_start"])


def downgrade() -> None:
    op.drop_index("ix_gridaware_ledger_try_run_start", table_name="gridaware_ledger_try")
    op.drop_table("gridaware_ledger_try")
