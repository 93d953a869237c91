"""The distributed deployment's topology, in one place: what ``docker-compose.yaml`` runs and the native test starts.

``tests/distributed`` starts :data:`CELERY_TOPOLOGY` as local processes (``airflow <args>``) against this
machine's PostgreSQL and Redis; ``tests/unit/test_compose_file.py`` checks that every component is a
service of ``docker-compose.yaml`` with the same command, the provider's image and a healthcheck of the
right kind, and that the simulator service and the ``AIRFLOW_CONN_*`` variables match
:data:`SIMULATOR_ARGS` and :func:`simulator_connections`. Change the topology here, then the compose
file, and the compose test says what no longer matches.

Standard library only: the demo, the test harness and the compose test import it without an Airflow
configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

#: How a component shows it is healthy: the REST API answers, its job heartbeats, or its Celery worker pings.
Health = Literal["api", "scheduler", "job", "celery"]


@dataclass(frozen=True)
class Component:
    """One long-running Airflow process of the deployment.

    :param name: the native process's name (its log is ``AIRFLOW_HOME/<name>.log``).
    :param service: its service in ``docker-compose.yaml``.
    :param args: the ``airflow`` sub-command and options (the compose service's ``command``).
    :param health: how its healthcheck probes it.
    :param job_type: the job ``airflow jobs check --job-type`` looks for (``health == "job"``).
    """

    name: str
    service: str
    args: tuple[str, ...]
    health: Health
    job_type: str | None = None


def celery_worker(index: int) -> Component:
    """Celery worker ``index``: its own node name, so two workers on one host stay apart."""
    return Component(
        name=f"worker-{index}",
        service=f"airflow-worker-{index}",
        args=("celery", "worker", "--celery-hostname", f"worker-{index}@%h"),
        health="celery",
    )


def triggerer(index: int) -> Component:
    """Triggerer ``index``: triggers are spread over every triggerer that heartbeats."""
    return Component(
        name=f"triggerer-{index}",
        service=f"airflow-triggerer-{index}",
        args=("triggerer",),
        health="job",
        job_type="TriggererJob",
    )


API_SERVER = Component("api-server", "airflow-apiserver", ("api-server",), "api")
SCHEDULER = Component("scheduler", "airflow-scheduler", ("scheduler",), "scheduler")
DAG_PROCESSOR = Component("dag-processor", "airflow-dag-processor", ("dag-processor",), "job", "DagProcessorJob")

#: The CeleryExecutor deployment: api-server, scheduler, dag-processor, two triggerers, two Celery workers.
CELERY_TOPOLOGY: tuple[Component, ...] = (
    API_SERVER,
    SCHEDULER,
    DAG_PROCESSOR,
    triggerer(1),
    triggerer(2),
    celery_worker(1),
    celery_worker(2),
)

#: The single-machine stack of tests/integration (LocalExecutor, one triggerer).
LOCAL_TOPOLOGY: tuple[Component, ...] = (
    API_SERVER,
    SCHEDULER,
    DAG_PROCESSOR,
    Component("triggerer", "airflow-triggerer", ("triggerer",), "job", "TriggererJob"),
)

#: The grid simulator's service and port in the compose file (natively it listens on a free loopback port).
SIMULATOR_SERVICE = "gridaware-simulator"
SIMULATOR_PORT = 8090
#: ``gridaware simulate serve`` options both deployments share (the host and port differ).
SIMULATOR_ARGS: tuple[str, ...] = ("simulate", "serve")

#: Connection id -> (connection type, the simulator's path prefix, whether it takes dummy credentials).
SIMULATED_SOURCES: dict[str, tuple[str, str, bool]] = {
    "gridaware_ukci_default": ("gridaware_ukci", "ukci", False),
    "gridaware_watttime_default": ("gridaware_watttime", "watttime", True),
    "gridaware_electricitymaps_default": ("gridaware_electricitymaps", "electricitymaps", True),
    "gridaware_entsoe_default": ("gridaware_entsoe", "entsoe", True),
}
#: The simulator accepts any credentials unless told otherwise; these are placeholders, not secrets.
SIMULATOR_LOGIN = "sim"
SIMULATOR_PASSWORD = "sim"


def simulator_connections(base_url: str, *, extra: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every grid-signal connection pointing at a simulator at ``base_url``, as ``AIRFLOW_CONN_*`` JSON objects.

    :param base_url: the simulator's base URL (``http://gridaware-simulator:8090`` in compose).
    :param extra: the connections' extra (HTTP timeouts, for instance); none by default.
    """
    connections: dict[str, dict[str, Any]] = {}
    for conn_id, (conn_type, prefix, credentials) in SIMULATED_SOURCES.items():
        spec: dict[str, Any] = {"conn_type": conn_type, "host": f"{base_url.rstrip('/')}/{prefix}"}
        if credentials:
            spec["password"] = SIMULATOR_PASSWORD
            if conn_type == "gridaware_watttime":
                spec["login"] = SIMULATOR_LOGIN
        if extra:
            spec["extra"] = dict(extra)
        connections[conn_id] = spec
    return connections
