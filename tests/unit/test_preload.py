"""The fork server's preload module: a task process forked after it imports nothing more to parse and run
the grid-event response (the point of ``[scheduler] mp_forkserver_preload``)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import airflow_provider_gridaware.preload
before = set(sys.modules)
from airflow.sdk import Asset, AssetWatcher, dag
from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger
from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
from airflow_provider_gridaware.responder import respond
Asset("gridaware://grid-events/site", watchers=[AssetWatcher(name="w", trigger=GridEventTrigger(cursor_name="c"))])
print(sorted(set(sys.modules) - before))
"""


def test_after_the_preload_a_grid_event_dag_and_its_response_import_nothing_more() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_package_does_not_import_the_preload() -> None:
    code = "import sys, airflow_provider_gridaware; print('airflow_provider_gridaware.preload' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
