"""The integration tests' real Airflow 3.3: :class:`AirflowStack` with the tests' DAGs, and the simulator fixture.

The stack itself (four components, SQLite, LocalExecutor, a REST API v2 client) and the process handling
(:class:`ManagedProcess`, :func:`stop_processes`, :func:`poll`) live in the package, in
``airflow_provider_gridaware/demo/`` (``stack.py``, ``processes.py``), because ``gridaware demo`` starts
the same Airflow; they are re-exported here under the names the tests use. What only tests need stays
here: the tests' own DAGs folder linked beside the examples, :class:`BackgroundPoll` and
:class:`WatchedRun` for the waiting scenarios, and the grid simulator as a subprocess.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from airflow_provider_gridaware.demo import stack as _stack
from airflow_provider_gridaware.demo.processes import (
    MARKER_VAR,
    ManagedProcess,
    StackError,
    descendants,
    free_port,
    group_members,
    marked_pids,
    poll,
    stop_processes,
    tail,
)
from airflow_provider_gridaware.demo.stack import (
    ADMIN_USER,
    COMPONENTS,
    EXAMPLE_DAGS,
    HEALTH_KEYS,
    HEARTBEATS,
    TERMINAL_RUN_STATES,
    TERMINAL_TASK_STATES,
    VENV_BIN,
    ConnectionSpec,
    Restart,
    Timings,
    connection_env,
)
from airflow_provider_gridaware.demo.topology import LOCAL_TOPOLOGY, Component
from airflow_provider_gridaware.times import CLOCK_ENV, Clock, ScaledClock, SystemClock, format_time
from tests.support.http import LOOPBACK

__all__ = [
    "ADMIN_USER",
    "COMPONENTS",
    "EXAMPLE_DAGS",
    "HEALTH_KEYS",
    "HEARTBEATS",
    "MARKER_VAR",
    "REPO",
    "TERMINAL_RUN_STATES",
    "TERMINAL_TASK_STATES",
    "TEST_DAGS",
    "VENV_BIN",
    "AirflowStack",
    "BackgroundPoll",
    "ConnectionSpec",
    "ManagedProcess",
    "Restart",
    "StackError",
    "Timings",
    "WatchedRun",
    "connection_env",
    "descendants",
    "free_port",
    "group_members",
    "marked_pids",
    "phased_clock",
    "poll",
    "simulator_argv",
    "start_simulator",
    "stop_processes",
    "tail",
]

REPO = Path(__file__).resolve().parents[2]
#: The planner's slots: candidate starts are multiples of this many epoch seconds (``PlannerSettings.step``).
PLANNING_STEP_S = 300.0


def phased_clock(slot_in: float, *, step_s: float = PLANNING_STEP_S, wall: float | None = None) -> ScaledClock:
    """A clock at the wall clock's pace, shifted by at most half a slot so that a slot starts ``slot_in`` wall
    seconds from now.

    The planner releases work on epoch multiples of its 5-minute step, so a window placed "at least a
    minute ahead" opened anywhere from one to six minutes later on the wall clock: on this clock the first
    slot after ``slot_in`` seconds from this call starts right then, whatever the minute. Nothing else
    changes: one clock second is one wall second, and every component, simulator and check reads the same
    clock.
    """
    wall = time.time() if wall is None else wall
    target = wall + slot_in
    shift = math.ceil(target / step_s) * step_s - target  # in [0, step)
    if shift > step_s / 2:
        shift -= step_s
    return ScaledClock(sim_epoch_s=wall + shift, wall_epoch_s=wall, speed=1.0)


#: DAG files only the tests use; linked into the DAGs folder beside the examples when present.
TEST_DAGS = Path(__file__).resolve().parent / "dags"

T = TypeVar("T")


class AirflowStack(_stack.AirflowStack):
    """:class:`airflow_provider_gridaware.demo.stack.AirflowStack` with the tests' DAGs beside the examples.

    :param home: an empty directory to use as ``AIRFLOW_HOME``.
    :param connections: ``{conn_id: URI or dict}`` exported as ``AIRFLOW_CONN_*`` to every component.
    :param extra_env: more environment (``AIRFLOW__SECTION__KEY`` overrides win over the defaults here).
    :param dag_sources: directories whose ``*.py`` files are linked into the DAGs folder.
    :param components: the processes to start (default: the LocalExecutor's four; the distributed test
        passes :data:`~airflow_provider_gridaware.demo.topology.CELERY_TOPOLOGY`).
    :param extra_users: more SimpleAuthManager users (``name:role[:team|team]``), passwords in :attr:`passwords`.
    :param after_migrate: ``airflow`` commands run after ``db migrate``, before the components start.
    :param clock: the provider's clock for every component (``GRIDAWARE_CLOCK``; default: the system clock).
        Airflow's own records stay on the wall clock: :meth:`from_wall` maps them.
    """

    def __init__(
        self,
        home: Path,
        *,
        connections: Mapping[str, ConnectionSpec] | None = None,
        extra_env: Mapping[str, str] | None = None,
        dag_sources: Sequence[Path] = (EXAMPLE_DAGS, TEST_DAGS),
        components: Sequence[Component] = LOCAL_TOPOLOGY,
        extra_users: Sequence[str] = (),
        after_migrate: Sequence[Sequence[str]] = (),
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        if isinstance(self.clock, ScaledClock):
            extra_env = {**(extra_env or {}), CLOCK_ENV: self.clock.spec()}
        super().__init__(
            home,
            connections=connections,
            extra_env=extra_env,
            dag_sources=dag_sources,
            components=components,
            extra_users=extra_users,
            after_migrate=after_migrate,
        )

    def now(self) -> datetime:
        """Now on the provider's clock, as the stack's components read it."""
        return self.clock.now()

    def from_wall(self, instant: datetime) -> datetime:
        """The provider clock's time at a wall-clock ``instant`` Airflow recorded (a task's start or end)."""
        return self.clock.from_wall(instant) if isinstance(self.clock, ScaledClock) else instant


class BackgroundPoll(Generic[T]):
    """:func:`poll` in a daemon thread, started now and collected later with :meth:`result`.

    Lets a test start its wait for a grid window early (every waiting scenario of the session is started
    before the first test runs), so the session waits about as long as the longest wait, not their sum.
    Only the polling runs in the thread: processes must still be started from the main thread (see
    :meth:`ManagedProcess.start`).
    """

    def __init__(
        self,
        check: Callable[[], T | None],
        *,
        timeout: float,
        interval: float = 0.25,
        what: str,
        on_timeout: Callable[[], str] = lambda: "",
    ) -> None:
        self._check = check
        self._halt = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(timeout, interval, what, on_timeout), name=f"poll: {what}", daemon=True
        )
        self._thread.start()

    def _run(self, timeout: float, interval: float, what: str, on_timeout: Callable[[], str]) -> None:
        try:
            self._value = poll(self._checked, timeout=timeout, interval=interval, what=what, on_timeout=on_timeout)
        except BaseException as exc:  # handed to the test by result(), with its traceback
            self._error = exc

    def _checked(self) -> T | None:
        if self._halt.is_set():
            raise StackError("stopped before the wait ended (the session is tearing down)")
        return self._check()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> T:
        """Wait for the poll to end; its result, or its exception re-raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def stop(self) -> None:
        """End the poll at its next check (teardown of a scenario whose test never collected it)."""
        self._halt.set()
        self._thread.join(timeout=30)


@dataclass
class WatchedRun:
    """A DAG run triggered as the session's waiting scenarios start, watched in the background.

    :param stack: the stack it runs on.
    :param run_id: the run.
    :param seen: ``(when, task state, trigger classpath)`` of the waiting task at each poll.
    :param waiting_jobs: what the external system held (per zone) while the task first waited for its window.
    :param finished: the poll, ending with the run's final state.
    :param explain: evidence for a failure message.
    """

    stack: AirflowStack
    run_id: str
    seen: list[tuple[datetime, str, str | None]]
    waiting_jobs: dict[str, list[dict[str, Any]]]
    finished: BackgroundPoll[str]
    explain: Callable[[], str]

    def settled(self) -> bool:
        """Collecting this run now would not wait: its watch has ended."""
        return self.finished.done


# -- the simulator ---------------------------------------------------------------------------------------
def simulator_argv(ready_file: Path, *options: str) -> list[str]:
    """``gridaware simulate serve`` on a free loopback port, writing its base URL to ``ready_file``."""
    common = ["--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready_file), *options]
    return [str(VENV_BIN / "gridaware"), "simulate", "serve", *common]


def start_simulator(
    workdir: Path, *options: str, timeout: float = 60.0, marker: str | None = None, clock: Clock | None = None
) -> tuple[ManagedProcess, str]:
    """Start the grid simulator on a free loopback port; returns the process and its base URL.

    :param options: more ``gridaware simulate serve`` options (``--speedup 60``, ``--fault ...``).
    :param clock: run the simulator on this clock (a stack's :attr:`AirflowStack.clock`) at speed 1: it starts
        at the clock's now (unless ``options`` name ``--now``) and is set to it once it listens.
    """
    if clock is not None and "--now" not in options:
        options = (*options, "--now", format_time(clock.now()))
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "simulator.url"
    ready.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"PYTHONUNBUFFERED": "1", "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    if marker:
        env[MARKER_VAR] = marker
    proc = ManagedProcess.start(
        "simulator", simulator_argv(ready, *options), env=env, cwd=REPO, log_path=workdir / "simulator.log"
    )

    def url() -> str | None:
        if not proc.running:
            raise StackError(f"the grid simulator exited with {proc.popen.returncode}\n{proc.describe()}")
        text = ready.read_text().strip().rstrip("/") if ready.exists() else ""
        parsed = urlsplit(text)
        if not (parsed.scheme and parsed.hostname and parsed.port):
            return None  # not written yet (or half written)
        try:  # listening for real, not a half-written port number
            socket.create_connection((parsed.hostname, parsed.port), timeout=1).close()
        except OSError:
            return None
        return text

    try:
        base_url = poll(url, timeout=timeout, interval=0.1, what="the grid simulator", on_timeout=proc.describe)
        if clock is not None:
            # --now was read before the simulator finished starting: put it back on the clock.
            now = {"now": format_time(clock.now())}
            LOOPBACK.post(f"{base_url}/_sim/clock", json=now, timeout=10).raise_for_status()
    except BaseException:
        stop_processes([proc], marker=marker)
        raise
    return proc, base_url
