"""Alembic environment of the gridaware store: migrates the connection handed over in ``config.attributes``.

Run programmatically by :func:`airflow_provider_gridaware.store.migrate.upgrade_store`; it never configures
logging (the host process owns it) and only ever looks at ``gridaware_*`` tables.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from airflow_provider_gridaware.store.schema import TABLE_PREFIX, VERSION_TABLE, metadata


def _ours(name: str | None, type_: str, _parent_names: Any) -> bool:
    # The store may live in a database shared with others (Airflow's own): autogenerate sees only our tables.
    return type_ != "table" or (name or "").startswith(TABLE_PREFIX)


def run_migrations_online() -> None:
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the gridaware store migrations through airflow_provider_gridaware.store.migrate")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("the gridaware store migrations run online only (upgrade_store)")
run_migrations_online()
