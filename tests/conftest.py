"""Shared fixtures: payload fixtures, scripted servers, Airflow connections from the environment."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.transport.breaker import reset_breakers
from tests.support.scripted_server import ScriptedServer

# The suite's terminal summary (integration timings, distributed figures, docs snippets), also under xdist.
pytest_plugins = ["tests.support.session_report", "tests.support.scheduling"]

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
# Real grid data live beside the checkout (CI copies shared/ next to the clone); tests that need them skip without.
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test`` runs ``pytest -n 3 --dist loadscope``: the Airflow layers' groups (see the class)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from tests.support.scheduling import AirflowLayersScheduling

    return AirflowLayersScheduling(config, log)


def api_shape(name: str) -> Any:
    """A real payload shape from ``tests/fixtures/api_shapes`` (JSON parsed, XML as text)."""
    path = FIXTURES / "api_shapes" / name
    return path.read_text() if path.suffix == ".xml" else json.loads(path.read_text())


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _archive_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Every hook archives what it returns: tests must never write into the developer's ~/airflow/gridaware.db.
    # The variable beats [gridaware] store_conn_id from any airflow.cfg, and subprocesses (Airflow) inherit it.
    from airflow_provider_gridaware.hooks.store import close_shared_archives

    path = tmp_path_factory.mktemp("store") / "gridaware.db"
    previous = os.environ.get("GRIDAWARE_STORE_URL")
    os.environ["GRIDAWARE_STORE_URL"] = f"sqlite:///{path}"
    yield path
    close_shared_archives()
    if previous is None:
        os.environ.pop("GRIDAWARE_STORE_URL", None)
    else:
        os.environ["GRIDAWARE_STORE_URL"] = previous


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    # Circuit breakers are process-wide per connection id; tests must not see each other's failures.
    reset_breakers()
    yield
    reset_breakers()


#: Airflow's secrets maskers: one per import path (the SDK's and the core's), each a process-wide singleton.
SECRETS_MASKERS = ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker")


@pytest.fixture(scope="module", autouse=True)
def _secrets_masked_per_module() -> Iterator[None]:
    """Each module starts with the secrets masker as the modules before it found it.

    Every connection a test reads adds its password to a process-wide masker, and each new secret recompiles
    one regular expression of all of them: over a worker's ~400 tests that grew into about 6 % of its CPU
    (py-spy over ``make test``). Masks added within a module stay for the module's tests.
    """
    loaded = [sys.modules[name] for name in SECRETS_MASKERS if name in sys.modules]
    kept = [(masker, set(masker.patterns), masker.replacer) for masker in (m._secrets_masker() for m in loaded)]
    yield
    for masker, patterns, replacer in kept:
        masker.patterns, masker.replacer = patterns, replacer


@pytest.fixture
def ca_bundle_loads(mocker: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A spy on certifi's CA bundle lookup, with no TLS context built yet: its ``call_count`` is how many times
    the process loaded the bundle (``SSL_CERT_FILE``/``SSL_CERT_DIR`` unset, else httpx would load those)."""
    import certifi

    from airflow_provider_gridaware.transport.http import tls_context

    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    tls_context.cache_clear()
    return mocker.spy(certifi, "where")


@pytest.fixture(autouse=True)
def _fresh_store_failures() -> Iterator[None]:
    # A store failure is logged as a warning once per reason and process, then at debug level: a test must not
    # find its warning already spent by an earlier test that met the same failure.
    from airflow_provider_gridaware.hooks.store import forget_store_failures

    forget_store_failures()
    yield
    forget_store_failures()


@pytest.fixture
def make_connection(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>`` and return its id.

    In a test parametrized with a ``fault`` (``tests/support/faults.py``), the fault's ``extra`` is laid over
    every connection it makes: the settings its scenario needs (a short read timeout for a hanging source).
    """
    callspec = getattr(request.node, "callspec", None)
    fault_extra = getattr(callspec.params.get("fault") if callspec else None, "extra", {})

    def _make(conn_id: str, conn_type: str, **fields: Any) -> str:
        fields.setdefault("extra", {})
        # Fast failure in tests: small timeouts and backoff unless the test says otherwise.
        fields["extra"] = {
            "timeout": 2,
            "connect_timeout": 1,
            "backoff_seconds": 0.01,
            **fields["extra"],
            **fault_extra,
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": conn_type, **fields}))
        return conn_id

    return _make
