"""The quick start (``docs/quickstart.md``), run from the page itself against a real Airflow 3.3.

Every command comes from the page's marked blocks (``<!-- quickstart:NAME -->`` before a fence), so
the page cannot drift from what works. Three substitutions only: the checkout path placeholder becomes
this checkout, the simulator's documented port 8099 becomes the free port the test's own simulator
got, and the simulator's 3-minute lead (time for a person to type steps 4 and 5) becomes 2 minutes
(:data:`LEAD`): the machine takes about 20 s for those steps, and a minute less lead is a minute less
of the whole suite waiting for this window at its end. The session's Airflow stack is reused: its
environment is fixed at start, so the page's ``AIRFLOW_CONN_*`` JSON is added through the REST API
instead (same fields), and the UI's "Test" button is pressed for each connection through the API.

The install commands are not run (the venv has the package installed already, and pip would need the
network for build isolation); pip's own parser checks that they are what it accepts and that they name
this checkout, its extras, its constraints file and its wheel.

What is asserted is only what a user sees: the task instance goes ``deferred``, then ``success``; the
function ran inside the clean window the simulator reports, and the decision it was given plans a start
inside it; and that within 5 minutes of the window opening (the planner's grid is 5 minutes).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.get_provider_info import CONNECTION_TYPES, EVENT_CONNECTION_TYPES
from airflow_provider_gridaware.times import Clock
from tests.integration.airflow_stack import (
    REPO,
    TERMINAL_TASK_STATES,
    VENV_BIN,
    AirflowStack,
    BackgroundPoll,
    StackError,
    marked_pids,
    start_simulator,
    stop_processes,
)
from tests.support.http import LOOPBACK

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

UTC = timezone.utc
QUICKSTART = REPO / "docs" / "quickstart.md"
CHECKOUT = "/path/to/airflow-provider-gridaware"
DOC_SIMULATOR = "http://127.0.0.1:8099"
#: The page's lead is for a person typing; the steps take the machine ~20 s (~40 s under a loaded suite), and the
#: task must decide more than the resume guard's 30 s before the opening to defer (else it waits on the worker).
DOC_LEAD, LEAD = "3m", "2m"
DAG_ID, TASK_ID, DAG_FILE = "gridaware_quickstart", "work", "gridaware_quickstart.py"
#: The planner places starts on a 5-minute grid: the task is released at most this long after the opening.
RELEASE_WITHIN = timedelta(minutes=5)
#: From release to the function running on a worker (scheduling, a task process starting).
RUN_SLACK = timedelta(seconds=60)

_BLOCK = re.compile(r"<!-- quickstart:([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


# -- reading the page ------------------------------------------------------------------------------------------
def quickstart_blocks() -> dict[str, str]:
    """Marked blocks of the quick start by name; a repeated name is an error (which one would run?)."""
    blocks: dict[str, str] = {}
    for name, _, body in _BLOCK.findall(QUICKSTART.read_text()):
        if name in blocks:
            raise AssertionError(f"{QUICKSTART}: block quickstart:{name} is marked twice")
        blocks[name] = body
    return blocks


def shell_commands(block: str) -> list[list[str]]:
    """Each command line of a bash block as argv (comments dropped; a pipe keeps only its first command)."""
    commands = []
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            commands.append(argv[: argv.index("|")] if "|" in argv else argv)
    return commands


def exports(block: str) -> dict[str, str]:
    """``export NAME=VALUE`` lines as a dict (the value as the shell would see it)."""
    found = {}
    for argv in shell_commands(block):
        assert argv[0] == "export" and len(argv) == 2 and "=" in argv[1], f"not a single export: {argv}"
        name, _, value = argv[1].partition("=")
        found[name] = value
    return found


def checked_blocks() -> dict[str, str]:
    """The page's marked blocks, every one the tests run present."""
    found = quickstart_blocks()
    expected = {"install", "install-variants", "connections", "providers", "dag-file", "simulator", "peek", "run"}
    assert expected <= set(found), f"{QUICKSTART}: missing marked blocks {sorted(expected - set(found))}"
    return found


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return checked_blocks()


# -- install: what pip accepts -------------------------------------------------------------------------------
def _installed() -> tuple[str, str, set[str]]:
    """Name, version and extras of the installed (editable) package, i.e. of ``pyproject.toml``."""
    meta = importlib.metadata.metadata("airflow-provider-gridaware")
    return meta["Name"], meta["Version"], set(meta.get_all("Provides-Extra") or ())


def _local(path: str) -> Path:
    return Path(path.replace(CHECKOUT, str(REPO)))


def test_install_commands_are_what_pip_accepts_for_this_checkout(blocks: dict[str, str]) -> None:
    from pip._internal.commands import create_command
    from pip._internal.models.wheel import Wheel
    from pip._internal.req.constructors import install_req_from_line

    name, version, extras = _installed()
    # The machine's own pip configuration may add constraints of its own: only the page's count.
    configured = set(create_command("install").parse_args([])[0].constraints)
    commands = shell_commands(blocks["install"]) + shell_commands(blocks["install-variants"])
    assert commands[0][:2] == ["git", "clone"] and commands[0][-1] == CHECKOUT
    pip_commands = [argv for argv in commands if argv[0] == "pip"]
    assert {argv[1] for argv in pip_commands} == {"install", "wheel"}
    installs, wheel_dirs = 0, []
    for argv in pip_commands:
        options, args = create_command(argv[1]).parse_args(argv[2:])  # exits on an option pip does not know
        assert len(args) == 1, f"one thing to install per command: {argv}"
        target = args[0]
        if argv[1] == "wheel":
            assert options.ignore_dependencies and _local(target) == REPO, argv
            wheel_dirs.append(Path(options.wheel_dir))
            continue
        installs += 1
        given = [_local(c) for c in options.constraints if c not in configured]
        assert given == [REPO / "constraints.txt"], argv
        assert (REPO / "constraints.txt").is_file()
        if target.endswith(".whl"):
            wheel = Wheel(Path(target).name)
            assert (wheel.name.replace("_", "-"), wheel.version) == (name, version), target
            assert Path(target).parent in wheel_dirs, f"{target} is not where the page's pip wheel puts it"
            continue
        requirement = install_req_from_line(str(_local(target)))
        assert requirement.link is not None and Path(requirement.link.file_path) == REPO, target
        unknown = set(requirement.extras) - extras
        assert not unknown, f"{target}: extras {sorted(unknown)} are not in pyproject.toml"
    assert installs == 3


# -- the run -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Simulator:
    url: str
    window_start: datetime
    window_end: datetime


@contextlib.contextmanager
def page_simulator(
    blocks: dict[str, str], integration_workdir: Path, clock: Clock | None = None
) -> Iterator[Simulator]:
    """The page's ``gridaware simulate serve`` command, on a free port instead of 8099 (and on ``clock``: the
    shared stack's, shifted from the wall clock)."""
    (argv,) = shell_commands(blocks["simulator"])
    assert argv[:3] == ["gridaware", "simulate", "serve"], argv
    options = argv[3:]
    assert options[options.index("--port") + 1] == DOC_SIMULATOR.rsplit(":", 1)[1], "the page's port changed"
    del options[options.index("--port") : options.index("--port") + 2]
    assert options[options.index("--clean-window-in") + 1] == DOC_LEAD, "the page's lead changed"
    options[options.index("--clean-window-in") + 1] = LEAD
    marker = uuid.uuid4().hex
    proc, url = start_simulator(integration_workdir / "quickstart_simulator", *options, marker=marker, clock=clock)
    try:
        window = LOOPBACK.get(f"{url}/_sim/state", timeout=10).raise_for_status().json()["clean_window"]
        assert window is not None, f"the page's simulator command opens no clean window: {argv}"
        yield Simulator(url, _utc(window["start"]), _utc(window["end"]))
    finally:
        stop_processes([proc], marker=marker)
        if marked_pids(marker):
            raise StackError(f"quick start simulator processes survived teardown: {marked_pids(marker)}")


def connections_from_page(blocks: dict[str, str], simulator_url: str) -> dict[str, dict[str, Any]]:
    """``AIRFLOW_CONN_<ID>`` JSON of the page by connection id, pointed at ``simulator_url``."""
    found = {}
    for name, value in exports(blocks["connections"]).items():
        if name.startswith("AIRFLOW_CONN_"):
            spec = json.loads(value.replace(DOC_SIMULATOR, simulator_url))
            found[name.removeprefix("AIRFLOW_CONN_").lower()] = spec
    return found


@dataclass
class QuickstartRun:
    """The page's run, triggered when the session's waiting scenarios start, and its wait under way."""

    stack: AirflowStack
    simulator: Simulator
    run_id: str
    triggered_at: datetime
    #: (when, task state) at each change, polled every 2 s from the trigger on.
    seen: list[tuple[datetime, str | None]]
    finished: BackgroundPoll[str]

    def settled(self) -> bool:
        """Collecting this run now would not wait: its watch has ended."""
        return self.finished.done


@contextlib.contextmanager
def quickstart_run_started(stack: AirflowStack, integration_workdir: Path) -> Iterator[QuickstartRun]:
    """Steps 2 to 5 of the page (connections and their "Test", the provider check, the peek, the DAG file,
    unpause and trigger) with their checks, then the watch of step 6 started in the background.

    Used by the ``quickstart_run`` fixture (``tests/integration/conftest.py``) as the session starts, so the
    page's 3-minute lead overlaps the other waits; the test collects it.
    """
    blocks = checked_blocks()
    workdir = integration_workdir / "quickstart"
    workdir.mkdir(parents=True, exist_ok=True)
    with page_simulator(blocks, integration_workdir, stack.clock) as simulator:
        # 2. Connections: the page's JSON, every connection type, each passing the "Test" button.
        settings = exports(blocks["connections"])
        assert settings["AIRFLOW__CORE__TEST_CONNECTION"] == stack.env["AIRFLOW__CORE__TEST_CONNECTION"] == "Enabled"
        connections = connections_from_page(blocks, simulator.url)
        # Every grid-signal connection type (demand-response ones need a party to talk to: docs/events.md).
        assert sorted(c["conn_type"] for c in connections.values()) == sorted(
            t["connection-type"] for t in CONNECTION_TYPES if t["connection-type"] not in EVENT_CONNECTION_TYPES
        )
        for conn_id, spec in connections.items():
            fields = {k: v for k, v in spec.items() if k != "conn_type"}
            stack.add_connection(conn_id, spec["conn_type"], **fields)
            body = {"connection_id": conn_id, "conn_type": spec["conn_type"], **fields}
            if isinstance(body.get("extra"), dict):
                body["extra"] = json.dumps(body["extra"])
            tested = stack.api("POST", "/api/v2/connections/test", json=body)
            assert tested["status"] is True, f"'Test' on {conn_id}: {tested}"

        # The page's provider check, and its peek at the forecast with the exported JSON as Airflow reads it.
        (providers,) = shell_commands(blocks["providers"])
        listed = stack.cli(*providers[1:])
        assert listed.returncode == 0 and "airflow-provider-gridaware" in listed.stdout, listed.stdout[-2000:]
        (peek,) = shell_commands(blocks["peek"])
        conn_env = {k: v.replace(DOC_SIMULATOR, simulator.url) for k, v in settings.items()}
        shown = subprocess.run(
            [str(VENV_BIN / peek[0]), *peek[1:]],
            env={**stack.env, **conn_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shown.returncode == 0 and "GB" in shown.stdout, shown.stdout + shown.stderr

        # 3. The DAG file, as printed on the page.
        assert f"Save this as `{DAG_FILE}`" in QUICKSTART.read_text()
        dag_file = workdir / DAG_FILE
        dag_file.write_text(blocks["dag-file"] + "\n")
        stack.link_dag(dag_file)
        stack.wait_for_dag(DAG_ID, timeout=120)

        # 5. Unpause and trigger with the page's commands.
        triggered_at = stack.now()
        assert triggered_at < simulator.window_start, "the stack took longer than the page's lead to parse the DAG"
        for argv in shell_commands(blocks["run"]):
            assert argv[0] == "airflow", argv
            result = stack.cli(*argv[1:])
            assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-3000:]}"
        runs = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
        run_id = max(runs, key=lambda r: _utc(r["run_after"]))["dag_run_id"]

        # 6. Watch: deferred, then success.
        seen: list[tuple[datetime, str | None]] = []

        def finished() -> str | None:
            (ti,) = [t for t in stack.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID]
            if not seen or seen[-1][1] != ti["state"]:
                seen.append((stack.now(), ti["state"]))
            return ti["state"] if ti["state"] in TERMINAL_TASK_STATES else None

        wait = (simulator.window_start - stack.now() + RELEASE_WITHIN + 2 * RUN_SLACK).total_seconds()
        watch = BackgroundPoll(
            finished, timeout=wait, interval=2.0, what=f"{DAG_ID} {run_id}", on_timeout=stack.diagnostics
        )
        try:
            yield QuickstartRun(stack, simulator, run_id, triggered_at, seen, watch)
        finally:
            watch.stop()


@pytest.mark.awaits_window
def test_quickstart_task_defers_and_runs_in_the_clean_window(quickstart_run: QuickstartRun) -> None:
    qs = quickstart_run
    stack, simulator, run_id, triggered_at, seen = qs.stack, qs.simulator, qs.run_id, qs.triggered_at, qs.seen
    state = qs.finished.result()
    log = stack.task_log(DAG_ID, run_id, TASK_ID)
    history = ", ".join(f"{at:%H:%M:%S} {s}" for at, s in seen)
    assert state == "success", f"states {history}\n--- log ---\n{log}"
    deferred = [at for at, s in seen if s == "deferred"]
    assert deferred and deferred[0] < simulator.window_start, f"never seen deferred before the window: {history}"

    result = stack.xcom(DAG_ID, run_id, TASK_ID)
    window = f"{simulator.window_start:%H:%M:%S}-{simulator.window_end:%H:%M:%S}"
    # The page's task stamps the wall clock; the shared stack's clock is shifted from it.
    planned, started = _utc(result["planned_start"]), stack.from_wall(_utc(result["started_at"]))
    assert simulator.window_start <= planned < simulator.window_end, f"planned {planned} outside {window}"
    assert simulator.window_start <= started < simulator.window_end, f"ran at {started}, outside {window}"
    assert started - simulator.window_start < RELEASE_WITHIN + RUN_SLACK, f"ran at {started}: window {window}"
    assert f"running in GB from {result['planned_start']}" in log, log
    print(  # the figures, for -s
        f"\nquick start: window {window}, triggered {triggered_at:%H:%M:%S}, first seen deferred"
        f" {deferred[0]:%H:%M:%S}, planned {planned:%H:%M:%S}, ran {started:%H:%M:%S}"
        f" ({(started - simulator.window_start).total_seconds():.0f} s after the opening,"
        f" {(started - triggered_at).total_seconds():.0f} s after the trigger); states {history}"
    )
