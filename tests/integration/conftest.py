"""Integration fixtures: one grid simulator and one real Airflow 3.3 per test session.

``grid_simulator``
    Base URL of the local grid simulator (``gridaware simulate serve`` on a free loopback port).
``airflow_connections``
    ``{conn_id: URI or dict}`` exported as ``AIRFLOW_CONN_<ID>`` to every Airflow component (and so to
    every task and trigger). **This is the hook point for connections**: add entries here, they exist
    before the stack starts. Overriding this fixture in a deeper ``conftest.py`` gives those tests a
    second stack of their own (a session fixture is cached per definition), which costs ~30 s: prefer
    adding here, or :meth:`AirflowStack.add_connection` (REST API, no restart) inside a test.
``airflow_stack``
    The running :class:`~tests.integration.airflow_stack.AirflowStack`: ``trigger_dag``, ``wait_for_run``,
    ``task_instances``, ``task_log``, ``xcom``, ``wait_for_dag``, ``api``, ``cli``, ``env``, ``link_dag``.

DAGs: every ``example_dags/*.py`` and ``tests/integration/dags/*.py`` is linked into the DAGs folder.

Waiting scenarios (``quickstart_run``, ``batch_run``, ``kube_training``, ``deferral_scenario``)
    Tests that wait minutes for a grid window wait on the wall clock, so their waits overlap: every
    scenario a selected test needs is set up and triggered, in :data:`WAITING_SCENARIOS` order, before
    the first test on the shared stack runs (``waiting_scenarios``), and polled in the background
    (:class:`~tests.integration.airflow_stack.BackgroundPoll`). Tests marked ``awaits_window`` collect
    their scenario's result; they run after every other test (see ``pytest_collection_modifyitems``), or,
    under ``make test``'s workers, on the worker holding the shared stack once its scenarios have settled
    (every watched run ended) or nothing else is left; that worker runs an own stack or unit modules while the
    scenarios wait (``tests/support/scheduling.py``). A
    scenario whose set-up fails is reported by the tests that use it (pytest keeps the fixture's error).

Metadata database: a throw-away database on the loopback PostgreSQL server when one runs (what a real
deployment uses: the components write concurrently without SQLite's single-writer lock), else SQLite in
the stack's home. ``make demo`` and its test keep SQLite, the embedded default.

Timings (stack start, waiting scenarios' start, each integration test) are printed in the terminal summary
(``tests/support/session_report.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.times import ScaledClock
from tests.integration.airflow_stack import (
    AirflowStack,
    ConnectionSpec,
    StackError,
    marked_pids,
    phased_clock,
    start_simulator,
    stop_processes,
)
from tests.support.postgres import throwaway_database, unreachable_reason
from tests.support.scheduling import announce_settled
from tests.support.session_report import teardown_notes, timings

SIM_LOGIN = "sim"
SIM_PASSWORD = "sim"
FAST_HTTP = {"timeout": 10, "connect_timeout": 2, "max_attempts": 2}


@pytest.fixture(scope="session")
def integration_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the stack's AIRFLOW_HOME and the simulator's log live (kept by pytest for the last 3 sessions)."""
    return tmp_path_factory.mktemp("gridaware-integration")


#: Wall seconds from the session's first shared-stack fixture to the planning slot the waiting scenarios'
#: windows open on: the stack's start (~30 s), the scenarios' set-up (~35 s: the quick start's window opens
#: 2 minutes after its simulator starts, the deferral dip at least 75 s after its set-up) and a minute to spare.
FIRST_WINDOW_SLOT_IN = 200.0


@pytest.fixture(scope="session")
def shared_clock() -> ScaledClock:
    """The shared stack's clock: the wall clock's pace, shifted (by at most 2.5 minutes) so that a planning slot
    starts :data:`FIRST_WINDOW_SLOT_IN` seconds after the session's first shared-stack fixture.

    The planner releases work on epoch multiples of 5 minutes, and on the wall clock the waiting scenarios'
    windows (placed on the first slot their set-up allows) opened one to six minutes after they were set up,
    which could end the suite up to five minutes after everything else. Every component of the shared stack,
    its simulators and the checks read this clock; Airflow's own records are mapped onto it
    (:meth:`AirflowStack.from_wall`).
    """
    return phased_clock(FIRST_WINDOW_SLOT_IN)


@pytest.fixture(scope="session")
def grid_simulator(integration_workdir: Path, pytestconfig: pytest.Config, shared_clock: ScaledClock) -> Iterator[str]:
    """Base URL of the local grid simulator, e.g. ``http://127.0.0.1:40123``, on the shared stack's clock."""
    marker = uuid.uuid4().hex
    began = time.monotonic()
    proc, url = start_simulator(integration_workdir / "simulator", marker=marker, clock=shared_clock)
    timings(pytestconfig)["simulator start"] = time.monotonic() - began
    yield url
    teardown_notes(pytestconfig).extend(f"grid simulator: {note}" for note in stop_processes([proc], marker=marker))
    if marked_pids(marker):
        raise StackError(f"grid simulator processes survived teardown: {marked_pids(marker)}")


def _waiting_scenario(name: str, module: str, starter: str, doc: str) -> Any:
    """A session fixture entering ``tests.integration.<module>.<starter>(airflow_stack, integration_workdir)``.

    Imported when first used: the test modules import this conftest's constants.
    """

    def fixture(airflow_stack: AirflowStack, integration_workdir: Path) -> Iterator[Any]:
        start = getattr(importlib.import_module(f"tests.integration.{module}"), starter)
        with start(airflow_stack, integration_workdir) as scenario:
            yield scenario

    fixture.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(fixture)


quickstart_run = _waiting_scenario(
    "quickstart_run", "test_quickstart", "quickstart_run_started", "docs/quickstart.md steps 2-5 done, its run watched."
)
batch_run = _waiting_scenario(
    "batch_run", "test_batch_dispatch", "batch_run_started", "The AWS Batch example triggered against moto, watched."
)
kube_training = _waiting_scenario(
    "kube_training", "test_kubernetes_dispatch", "kube_training_started", "The Kubernetes example's run, watched."
)
deferral_scenario = _waiting_scenario(
    "deferral_scenario", "test_deferral", "scenario_started", "Every dip run deferred, the triggerer restarted."
)

#: Started in this order. The quick start first: its window opens 2 minutes after its simulator starts, the
#: latest of all, and its steps before the trigger take 30-70 s; the deferral scenario last: its set-up (a
#: triggerer restart, 15-40 s) would delay every scenario after it, and it places its dip from its own start.
WAITING_SCENARIOS = ("quickstart_run", "batch_run", "kube_training", "deferral_scenario")


@pytest.fixture(autouse=True)
def _waiting_scenarios_before_the_first_shared_stack_test(request: pytest.FixtureRequest) -> None:
    # Only a test on the shared stack starts them. Under `make test` the worker that runs the tests with an Airflow
    # of their own (the demo run, the grid-event scenario) collects every test too, so a session-wide autouse
    # start made it bring up a second shared stack and all four scenarios, which no test there collects.
    if "airflow_stack" in request.fixturenames:
        request.getfixturevalue("waiting_scenarios")


@pytest.fixture(scope="session")
def waiting_scenarios(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> None:
    """Set up every waiting scenario the selected tests use, before the first test on the shared stack runs."""
    wanted = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    began = time.monotonic()
    started_scenarios = []
    for name in WAITING_SCENARIOS:
        if name not in wanted:
            continue
        started = time.monotonic()
        # A failed set-up is kept by pytest and raised again in each test that uses this fixture (where it
        # belongs): it must not stop the other scenarios from starting.
        with contextlib.suppress(Exception, pytest.fail.Exception):
            started_scenarios.append(request.getfixturevalue(name))
        timings(pytestconfig)[f"start {name}"] = time.monotonic() - started
    if wanted & set(WAITING_SCENARIOS):
        timings(pytestconfig)["waiting scenarios started (total)"] = time.monotonic() - began
    # Under `make test`: once every watched run has ended, the scheduler sends this worker the collecting tests
    # (and the triggerer restart after them) ahead of the modules still queued.
    announce_settled(pytestconfig, lambda: all(scenario.settled() for scenario in started_scenarios))


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("own_stack") is not None or item.get_closest_marker("restarts_shared_stack") is not None:
        # Restarting the shared triggerer stops it, and in one process a second Airflow would hold up the
        # scenarios' collection: either way their windows could open late (seen: releases 18 s and 7 s after
        # their windows, the second as another test restarted the triggerer 16 s before them). Run these once
        # the results are in. Under `make test` the own stacks run on the other workers from the start instead
        # (tests/support/scheduling.py), beside the scenarios (the demo run always was); the restart still waits.
        return 3
    if item.get_closest_marker("awaits_window") is not None:
        return 2
    return 0 if item.get_closest_marker("integration") is not None else 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Integration tests first (the first one starts the stack and the waiting scenarios), then the unit and
    # contract tests, then the tests collecting a waiting scenario's result: everything else runs while the
    # scenarios wait on the wall clock; tests with an Airflow of their own last. A stable sort: the order within
    # each group is pytest's. Under `make test` (four xdist workers) this order holds within each worker's groups
    # (tests/support/scheduling.py).
    items.sort(key=_run_order)


@pytest.fixture(scope="session")
def airflow_connections(grid_simulator: str) -> dict[str, ConnectionSpec]:
    """Connections every Airflow component sees, all pointing at the simulator (dummy credentials)."""
    return {
        "gridaware_ukci_default": {
            "conn_type": "gridaware_ukci",
            "host": f"{grid_simulator}/ukci",
            "extra": FAST_HTTP,
        },
        "gridaware_watttime_default": {
            "conn_type": "gridaware_watttime",
            "host": f"{grid_simulator}/watttime",
            "login": SIM_LOGIN,
            "password": SIM_PASSWORD,
            "extra": FAST_HTTP,
        },
        "gridaware_electricitymaps_default": {
            "conn_type": "gridaware_electricitymaps",
            "host": f"{grid_simulator}/electricitymaps",
            "password": SIM_PASSWORD,
            "extra": FAST_HTTP,
        },
        "gridaware_entsoe_default": {
            "conn_type": "gridaware_entsoe",
            "host": f"{grid_simulator}/entsoe",
            "password": SIM_PASSWORD,
            "extra": FAST_HTTP,
        },
    }


@pytest.fixture(scope="session")
def airflow_stack(
    integration_workdir: Path,
    airflow_connections: dict[str, ConnectionSpec],
    pytestconfig: pytest.Config,
    shared_clock: ScaledClock,
) -> Iterator[AirflowStack]:
    """A running Airflow 3.3 (api-server, scheduler, dag-processor, triggerer), shared by the session, on
    :func:`shared_clock`."""
    with contextlib.ExitStack() as resources:
        extra_env = {}
        reason = unreachable_reason()
        if reason is None:
            database = resources.enter_context(throwaway_database("gridaware_integration"))
            extra_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = database
        else:
            teardown_notes(pytestconfig).append(f"metadata database: SQLite ({reason})")
        stack = AirflowStack(
            integration_workdir / "airflow_home",
            connections=airflow_connections,
            extra_env=extra_env,
            clock=shared_clock,
        )
        stack.start(timeout=180)
        measured = timings(pytestconfig)
        measured["airflow db migrate"] = stack.timings.migrate
        measured["airflow components healthy"] = stack.timings.healthy
        measured["airflow stack start (total)"] = stack.timings.total
        try:
            yield stack
        finally:
            began = time.monotonic()
            teardown_notes(pytestconfig).extend(f"airflow stack: {note}" for note in stack.stop())
            measured["airflow stack stop"] = time.monotonic() - began
            survivors = marked_pids(stack.marker)
            if survivors:
                raise StackError(f"Airflow processes survived teardown: {survivors}")
