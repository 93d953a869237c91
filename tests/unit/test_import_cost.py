"""DAG files import the provider on every parse: the package and its pure core must stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = [
    "requests", "httpx", "aiohttp", "pandas", "numpy", "kubernetes", "boto3", "botocore", "fastapi", "uvicorn",
    "matplotlib", "PIL",
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
    # What a DAG file imports: hooks, the sensor, the decorator, the trigger (numpy loads only when planning).
    baseline = modules_loaded_by("import airflow.sdk")
    with_hook = modules_loaded_by(
        "import airflow.sdk, airflow_provider_gridaware.hooks.ukci, airflow_provider_gridaware.sensors.grid_window,"
        " airflow_provider_gridaware.decorators.gridaware, airflow_provider_gridaware.triggers.grid_window,"
        " airflow_provider_gridaware.operators.carbon_report"
    )
    added = sorted(m for m in with_hook - baseline if m.split(".")[0] in HEAVY)
    assert not added, added
