"""The provider's store: one SQL database (SQLite by default, PostgreSQL in production) for the forecast
archive now, and grid events and the ledger later. Pure: imports nothing from Airflow.

Importing this package loads SQLAlchemy and Alembic; hooks import it lazily, only when they record.
"""

from __future__ import annotations

from airflow_provider_gridaware.store.archive import (
    DEFAULT_RETENTION,
    ForecastArchive,
    PruneResult,
    SignalInfo,
    Vintage,
)
from airflow_provider_gridaware.store.url import STORE_URL_ENV, default_store_url, resolve_store_url

__all__ = [
    "DEFAULT_RETENTION",
    "STORE_URL_ENV",
    "ForecastArchive",
    "PruneResult",
    "SignalInfo",
    "Vintage",
    "default_store_url",
    "resolve_store_url",
]
