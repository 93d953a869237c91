"""Where the store lives: a SQLAlchemy URL from an explicit value, the environment, or ``AIRFLOW_HOME``.

Pure (no Airflow): the Airflow-aware route through a connection id is ``hooks/store.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: environment variable naming the store's SQLAlchemy URL (overrides the SQLite default).
STORE_URL_ENV = "GRIDAWARE_STORE_URL"
STORE_FILE_NAME = "gridaware.db"

#: the PostgreSQL dialect+driver installed with the provider's ``postgres`` extra (as Airflow's postgres provider).
POSTGRES_DRIVER = "postgresql+psycopg2"
# URI schemes as Airflow connections write them -> SQLAlchemy dialect+driver.
_SCHEME_DRIVERS = {
    "postgres": POSTGRES_DRIVER,
    "postgresql": POSTGRES_DRIVER,
    "sqlite": "sqlite",
}


def default_store_url(environ: Mapping[str, str] | None = None) -> str:
    """``sqlite:///<AIRFLOW_HOME>/gridaware.db`` (``AIRFLOW_HOME`` defaults to ``~/airflow`` as in Airflow).

    :param environ: the environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    home = Path(env.get("AIRFLOW_HOME") or "~/airflow").expanduser()
    return f"sqlite:///{home / STORE_FILE_NAME}"


def resolve_store_url(url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The store URL: ``url`` if given, else ``$GRIDAWARE_STORE_URL``, else :func:`default_store_url`.

    :param url: an explicit SQLAlchemy URL or ``postgres://`` URI.
    :param environ: the environment to read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    chosen = url or env.get(STORE_URL_ENV) or default_store_url(env)
    return to_sqlalchemy_url(chosen)


def to_sqlalchemy_url(uri: str) -> str:
    """Turn a connection URI into a SQLAlchemy URL: ``postgres://`` -> ``postgresql+psycopg2://``.

    A URL that already names a driver (``postgresql+psycopg://``) is kept as given.

    :param uri: the URI.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"store URL {uri!r} has no scheme; expected e.g. sqlite:///path or postgresql://host/db")
    if "+" in scheme:
        return uri
    driver = _SCHEME_DRIVERS.get(scheme.lower())
    if driver is None:
        known = ", ".join(sorted(_SCHEME_DRIVERS))
        raise ValueError(f"store URL scheme {scheme!r} is not supported; expected one of {known}")
    return f"{driver}://{rest}"
