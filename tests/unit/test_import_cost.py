"""DAG files import the provider on every parse: the package and its pure core must stay light."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

HEAVY = [
    "requests", "httpx", "aiohttp", "pandas", "numpy", "kubernetes", "boto3", "botocore", "fastapi", "uvicorn",
    "matplotlib", "PIL", "sqlalchemy", "alembic", "jinja2", "openleadr",
]  # fmt: skip


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "statement",
    [
        "import airflow_provider_gridaware",
        "import airflow_provider_gridaware.signals",
        "import airflow_provider_gridaware.transport",
        "from airflow_provider_gridaware.get_provider_info import get_provider_info; get_provider_info()",
        "import airflow_provider_gridaware.reporting.collect, airflow_provider_gridaware.reporting.render",
    ],
)
def test_no_heavy_module_is_imported(statement):
    loaded = modules_loaded_by(statement)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"{statement!r} imported {heavy[:5]}"


def test_pure_core_does_not_import_airflow():
    loaded = modules_loaded_by(
        "import airflow_provider_gridaware.signals, airflow_provider_gridaware.sources.ukci,"
        " airflow_provider_gridaware.reporting.collect, airflow_provider_gridaware.reporting.render,"
        " airflow_provider_gridaware.ledger.file"
    )
    assert not any(m == "airflow" or m.startswith("airflow.") for m in loaded)


def test_dag_facing_modules_add_no_heavy_module_beyond_airflow_sdk():
    # What a DAG file imports: hooks, the sensor, the decorator, the triggers, the operators that wrap no
    # official operator (numpy loads only when planning; the store, SQLAlchemy's dialects and Alembic only
    # when a task writes to it).
    baseline = modules_loaded_by("import airflow.sdk")
    with_hook = modules_loaded_by(
        "import airflow.sdk, airflow_provider_gridaware.hooks.ukci, airflow_provider_gridaware.sensors.grid_window,"
        " airflow_provider_gridaware.decorators.gridaware, airflow_provider_gridaware.triggers.grid_window,"
        " airflow_provider_gridaware.triggers.grid_event, airflow_provider_gridaware.operators.carbon_report,"
        " airflow_provider_gridaware.operators.grid_event_response,"
        " airflow_provider_gridaware.operators.sustainability_slo"
    )
    added = sorted(m for m in with_hook - baseline if m.split(".")[0] in HEAVY)
    assert not added, added


@pytest.mark.parametrize(
    ("ours", "official"),
    [
        ("airflow_provider_gridaware.operators.kubernetes", "airflow.providers.cncf.kubernetes.operators.job"),
        ("airflow_provider_gridaware.operators.batch", "airflow.providers.amazon.aws.operators.batch"),
    ],
)
def test_dispatch_operators_cost_no_more_than_the_official_operator_they_wrap(ours, official):
    # They extend or compose the official provider's classes, so a DAG file pays that provider's import (the
    # kubernetes client, boto3) as it would for the official operator; ours must add nothing heavy on top.
    if importlib.util.find_spec(official.rsplit(".", 2)[0]) is None:
        pytest.skip(f"{official} is not installed")
    official_loads = modules_loaded_by(f"import airflow.sdk, {official}")
    added = sorted(
        m for m in modules_loaded_by(f"import airflow.sdk, {ours}") - official_loads if m.split(".")[0] in HEAVY
    )
    assert not added, added
