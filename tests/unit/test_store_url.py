"""Where the store lives: default under AIRFLOW_HOME, GRIDAWARE_STORE_URL, connection URIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_gridaware.store.url import default_store_url, resolve_store_url, to_sqlalchemy_url


def test_default_is_sqlite_under_airflow_home():
    assert default_store_url({"AIRFLOW_HOME": "/srv/airflow"}) == "sqlite:////srv/airflow/gridaware.db"
    assert default_store_url({}) == f"sqlite:///{Path('~/airflow').expanduser() / 'gridaware.db'}"


def test_environment_overrides_and_explicit_url_wins():
    env = {"AIRFLOW_HOME": "/srv/airflow", "GRIDAWARE_STORE_URL": "postgres://u:p@db:5432/grid"}
    assert resolve_store_url(environ=env) == "postgresql+psycopg2://u:p@db:5432/grid"
    assert resolve_store_url("sqlite:///x.db", environ=env) == "sqlite:///x.db"
    assert resolve_store_url(environ={"AIRFLOW_HOME": "/a"}) == "sqlite:////a/gridaware.db"


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h:5433/db?sslmode=require", "postgresql+psycopg2://u@h:5433/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_connection_uris_become_sqlalchemy_urls(uri, url):
    assert to_sqlalchemy_url(uri) == url


def test_unsupported_or_malformed_urls_are_named():
    with pytest.raises(ValueError, match="'mysql' is not supported"):
        to_sqlalchemy_url("mysql://h/db")
    with pytest.raises(ValueError, match="has no scheme"):
        to_sqlalchemy_url("/tmp/x.db")
