"""What a grid-event response task needs, loaded once, for ``[scheduler] mp_forkserver_preload``.

With ``[scheduler] mp_start_method = forkserver`` and this module in ``mp_forkserver_preload``, the
LocalExecutor's workers come from a fork server that imported it, and each task process is forked from a
worker: it starts with the response path, the Kubernetes clients and Airflow's asset URI handlers already
loaded instead of importing them (about 1.5 s per task on two busy cores; see docs/grid_event_response.md).
Nothing imports this module otherwise.
"""

from __future__ import annotations

import airflow.sdk.execution_time.task_runner  # noqa: F401  (the task process's own entry)
from airflow.sdk import Asset

import airflow_provider_gridaware.hooks.kubernetes  # the official hook and both Kubernetes clients
import airflow_provider_gridaware.hooks.store
import airflow_provider_gridaware.operators.grid_event_response
import airflow_provider_gridaware.responder
import airflow_provider_gridaware.triggers.grid_event  # noqa: F401

# A process's first Asset makes Airflow discover every provider's asset URI handlers (the amazon provider's
# imports boto3: ~0.6 s of each grid-event DAG's parse in the task process); here, once, instead.
Asset("gridaware://preload")
