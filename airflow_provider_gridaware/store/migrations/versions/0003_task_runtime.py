"""Task runtimes: the measured run time of each successful try of a grid-aware task (duration="auto").

Revision ID: 0003_task_runtime
Revises: 0002_grid_events
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_task_runtime"
down_revision: str | None = "0002_grid_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types at this revision: later schema changes get their own migration.
UTC_TIME = sa.DateTime(timezone=True)
ID = sa.String(250)  # Airflow's ID_LEN


def upgrade() -> None:
    op.create_table(
        "gridaware_task_runtime",
        sa.Column("dag_id", ID, nullable=False),
        sa.Column("task_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False, comment="when the work first ran (not the grid-window wait)"),
        sa.Column("ended_at", UTC_TIME, nullable=False),
        sa.Column(
            "run_seconds",
            sa.Float(precision=53),
            nullable=False,
            comment="the work's own run time: the sum of its chunks when paused and resumed",
        ),
        sa.Column("chunks", sa.Integer(), nullable=False, comment="how many pieces the work ran in (1 unless paused)"),
        sa.Column("kind", sa.String(32), nullable=False, comment="what ran: python, kubernetes_job, batch_job"),
        sa.Column("zone", sa.String(64), nullable=True),
        sa.Column("recorded_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint(
            "dag_id", "task_id", "run_id", "map_index", "try_number", name="pk_gridaware_task_runtime"
        ),
        comment="Measured run time of each successful try of a grid-aware task",
    )
    op.create_index(
        "ix_gridaware_task_runtime_dag_id_task_id_ended_at",
        "gridaware_task_runtime",
        ["dag_id", "task_id", "ended_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_gridaware_task_runtime_dag_id_task_id_ended_at", table_name="gridaware_task_runtime")
    op.drop_table("gridaware_task_runtime")
