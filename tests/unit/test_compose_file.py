"""``docker-compose.yaml`` is a valid Compose file and runs the topology the distributed test runs natively.

Docker cannot run here, so the file is checked the way ``docker compose config`` would start: against the
Compose specification's JSON schema (vendored in ``tests/fixtures/compose``), then against
:mod:`airflow_provider_gridaware.demo.topology`: every component a service with the same ``airflow`` command, the provider's
image built from ``Dockerfile``, a healthcheck probing the right thing; the simulator a service serving the
connections every Airflow service gets; every ``${VARIABLE}`` documented in ``.env.example``.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_provider_gridaware.demo.topology import (
    CELERY_TOPOLOGY,
    SIMULATOR_ARGS,
    SIMULATOR_PORT,
    SIMULATOR_SERVICE,
    Component,
    simulator_connections,
)

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
SCHEMA = REPO / "tests" / "fixtures" / "compose" / "compose-spec.json"
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``; ``$${...}`` is an escaped dollar for the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:-][^}]*)?\}")
AIRFLOW_IMAGE = "apache/airflow:3.3.2"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yaml is not a mapping"
    return loaded


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(compose: dict[str, Any]) -> None:
    # The schema is strict about unknown keys: a typo must not pass as valid.
    broken = {
        **compose,
        "services": {**compose["services"], "redis": {**compose["services"]["redis"], "helthcheck": {}}},
    }
    assert list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))


@pytest.mark.parametrize("component", CELERY_TOPOLOGY, ids=lambda c: c.name)
def test_every_component_is_a_service_with_its_command_image_and_healthcheck(
    compose: dict[str, Any], component: Component
) -> None:
    services = compose["services"]
    assert component.service in services, f"no service {component.service} for the {component.name}"
    service = services[component.service]
    assert _command(service) == list(component.args), f"{component.service}: command differs from the topology"
    common = compose["x-airflow-common"]
    assert service["image"] == common["image"] and service["build"] == common["build"]
    assert common["build"]["dockerfile"] == "Dockerfile"
    assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    probe = " ".join(service["healthcheck"]["test"])
    expected = {
        "api": "http://localhost:8080/api/v2/monitor/health",
        "scheduler": "http://localhost:8974/health",
        "job": f"airflow jobs check --job-type {component.job_type}",
        "celery": f'inspect ping -d "{component.args[-1].split("@")[0]}@$${{HOSTNAME}}"',
    }[component.health]
    assert expected in probe, f"{component.service}: healthcheck {probe!r} does not probe {expected!r}"
    assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    for peer in ("postgres", "redis", SIMULATOR_SERVICE):
        assert service["depends_on"][peer]["condition"] == "service_healthy"


def test_no_airflow_service_beyond_the_topology(compose: dict[str, Any]) -> None:
    # init, the debug CLI and flower (a profile) are one-shot or optional; everything else is in the topology.
    long_running = {
        name
        for name, service in compose["services"].items()
        if service.get("image") == compose["x-airflow-common"]["image"]
        and name not in ("airflow-init", "airflow-cli", SIMULATOR_SERVICE)
        and not service.get("profiles")
    }
    assert long_running == {c.service for c in CELERY_TOPOLOGY}


def test_backing_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in ("postgres", "redis", SIMULATOR_SERVICE):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_the_simulator_serves_the_connections_every_service_gets(compose: dict[str, Any]) -> None:
    simulator = compose["services"][SIMULATOR_SERVICE]
    assert simulator["entrypoint"][-1] == "gridaware"
    argv = _command(simulator)
    assert argv[: len(SIMULATOR_ARGS)] == list(SIMULATOR_ARGS)
    options = dict(zip(argv[len(SIMULATOR_ARGS) :: 2], argv[len(SIMULATOR_ARGS) + 1 :: 2], strict=True))
    assert options["--host"] == "0.0.0.0" and options["--port"] == str(SIMULATOR_PORT)
    assert f"http://localhost:{SIMULATOR_PORT}/_sim/state" in " ".join(simulator["healthcheck"]["test"])
    env = compose["x-airflow-common"]["environment"]
    expected = simulator_connections(f"http://{SIMULATOR_SERVICE}:{SIMULATOR_PORT}")
    found = {k: json.loads(v) for k, v in env.items() if k.startswith("AIRFLOW_CONN_GRIDAWARE_") and v.startswith("{")}
    assert found == {f"AIRFLOW_CONN_{conn_id.upper()}": spec for conn_id, spec in expected.items()}


def test_the_store_is_shared_in_postgres(compose: dict[str, Any]) -> None:
    # Each container has its own AIRFLOW_HOME: the default SQLite store would split the archive and run times.
    env = compose["x-airflow-common"]["environment"]
    conn_id = env["AIRFLOW__GRIDAWARE__STORE_CONN_ID"]
    assert (
        env[f"AIRFLOW_CONN_{conn_id.upper()}"].startswith("postgres://")
        and "@postgres:5432/" in env[f"AIRFLOW_CONN_{conn_id.upper()}"]
    )


def test_the_image_is_the_official_one_plus_this_provider_under_our_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG AIRFLOW_IMAGE={AIRFLOW_IMAGE}" in dockerfile and "FROM ${AIRFLOW_IMAGE}" in dockerfile
    assert "--constraint /opt/gridaware/src/constraints.txt" in dockerfile
    for copied in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, flags=re.MULTILINE):
        for path in copied.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which is not in the repository"


def test_the_example_dags_are_mounted(compose: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    folder = common["environment"]["AIRFLOW__CORE__DAGS_FOLDER"]
    assert f"./example_dags:{folder}:ro" in common["volumes"]
    assert any((REPO / "example_dags").glob("example_*.py"))


def test_every_variable_is_documented_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE_FILE.read_text()))
    documented = {
        line.split("=", 1)[0].strip()
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    # AIRFLOW_UID is read inside airflow-init as well; every other variable must be set or defaulted in .env.
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert documented <= used, f".env.example documents unused variables: {sorted(documented - used)}"
