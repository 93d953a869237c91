"""A real Airflow 3.3 on this machine: api-server, scheduler, dag-processor and triggerer.

:class:`AirflowStack` builds a throw-away ``AIRFLOW_HOME`` (SQLite metadata DB, LocalExecutor,
SimpleAuthManager with a known admin password), runs ``airflow db migrate`` and starts the four
components as separate processes (:class:`~airflow_provider_gridaware.demo.processes.ManagedProcess`),
each in its own process group with its log in ``AIRFLOW_HOME/<component>.log``. It waits for
``/api/v2/monitor/health`` to report every component healthy and then serves as a small REST API v2
client (trigger a DAG, wait for a run, read task instances, logs and XComs).

:meth:`AirflowStack.restart_component` stops one component the way :meth:`AirflowStack.stop` does and starts
it again with the same environment (a triggerer restart while tasks are deferred, for instance).

Connections reach Airflow as ``AIRFLOW_CONN_<ID>`` variables fixed before the start (every component
and every task inherits them), or at run time through :meth:`AirflowStack.add_connection` (REST API,
stored in the metadata DB).

The components are a topology of :mod:`~airflow_provider_gridaware.demo.topology` (default: the
LocalExecutor's four); the distributed test passes the CeleryExecutor's (two triggerers, two Celery
workers) with a PostgreSQL database and Redis in ``extra_env``. A process that runs twice gets log-server
ports of its own, so two triggerers or two workers on one host do not collide; a Celery worker counts as
started once it logs that it is ready.

Used by ``gridaware demo`` and by the integration tests' harness (``tests/integration/airflow_stack.py``).
Only the standard library and ``httpx`` (an Airflow dependency) are used; nothing here imports
Airflow, so the calling process needs no Airflow configuration of its own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from airflow_provider_gridaware.demo.processes import (
    MARKER_VAR,
    ManagedProcess,
    StackError,
    descendants,
    free_port,
    marked_pids,
    poll,
    proc_stat,
    stop_processes,
    wait_until,
)
from airflow_provider_gridaware.demo.topology import LOCAL_TOPOLOGY, Component

#: The example DAGs of a checkout (``make demo`` runs from one; an installed wheel does not ship them).
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"
#: The venv we run in (``.venv/bin``); deliberately not resolved, a venv's python is a symlink.
VENV_BIN = Path(sys.executable).parent
#: how often an API call that failed on Airflow's SQLite write lock is made again.
SQLITE_LOCK_RETRIES = 5

COMPONENTS = tuple(component.name for component in LOCAL_TOPOLOGY)
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
#: Component -> (its key in /api/v2/monitor/health, its heartbeat field there); the api-server has none.
HEARTBEATS = {
    "scheduler": ("scheduler", "latest_scheduler_heartbeat"),
    "triggerer": ("triggerer", "latest_triggerer_heartbeat"),
    "dag-processor": ("dag_processor", "latest_dag_processor_heartbeat"),
}
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TASK_STATES = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
ADMIN_USER = "admin"


# -- the stack -------------------------------------------------------------------------------------------
ConnectionSpec = str | Mapping[str, Any]


def connection_env(connections: Mapping[str, ConnectionSpec]) -> dict[str, str]:
    """``{conn_id: URI or JSON-able dict}`` as ``AIRFLOW_CONN_<CONN_ID>`` variables."""
    env = {}
    for conn_id, spec in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = spec if isinstance(spec, str) else json.dumps(dict(spec))
    return env


@dataclass
class Timings:
    """Seconds spent in each phase of :meth:`AirflowStack.start`."""

    migrate: float = 0.0
    healthy: float = 0.0  # from launching the components to all healthy
    total: float = 0.0

    def summary(self) -> str:
        return f"db migrate {self.migrate:.1f}s + components healthy {self.healthy:.1f}s = {self.total:.1f}s"


@dataclass
class Restart:
    """What :meth:`AirflowStack.restart_component` did.

    :param name: the component.
    :param old_pid: the stopped process; ``new_pid`` the one started in its place.
    :param stop_seconds: from the first signal until the old process (and its runners) were gone.
    :param start_seconds: from starting the new process until it reported healthy.
    :param started_at: wall-clock time (UTC) the new process was started.
    :param notes: what needed force (see :func:`stop_processes`).
    """

    name: str
    old_pid: int
    new_pid: int
    stop_seconds: float
    start_seconds: float
    started_at: datetime
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.stop_seconds + self.start_seconds


def _own_log_ports() -> dict[str, str]:
    return {
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }


class AirflowStack:
    """A real Airflow 3.3 in a temporary ``AIRFLOW_HOME``, plus a REST API v2 client.

    :param home: an empty directory to use as ``AIRFLOW_HOME``.
    :param connections: ``{conn_id: URI or dict}`` exported as ``AIRFLOW_CONN_*`` to every component.
    :param extra_env: more environment (``AIRFLOW__SECTION__KEY`` overrides win over the defaults here).
    :param dag_sources: directories whose ``*.py`` files are linked into the DAGs folder.
    :param port: the api-server's (and UI's) port on loopback; ``None`` picks a free one.
    :param components: the processes to start (``airflow <args>``), in order; the api-server must be one.
    :param extra_users: more SimpleAuthManager users beside the admin, ``name:role`` or ``name:role:team|team``
        (teams need ``[core] multi_team``); each gets a password of its own (:attr:`passwords`).
    :param after_migrate: ``airflow`` commands run after ``db migrate``, before the components start
        (``("teams", "sync")``).
    """

    def __init__(
        self,
        home: Path,
        *,
        connections: Mapping[str, ConnectionSpec] | None = None,
        extra_env: Mapping[str, str] | None = None,
        dag_sources: Sequence[Path] = (EXAMPLE_DAGS,),
        port: int | None = None,
        components: Sequence[Component] = LOCAL_TOPOLOGY,
        extra_users: Sequence[str] = (),
        after_migrate: Sequence[Sequence[str]] = (),
    ) -> None:
        self.home = home
        self.dags_folder = home / "dags"
        self.marker = uuid.uuid4().hex
        self.port = port or free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16)
        self.extra_users = list(extra_users)
        #: Each user's password (the admin's is :attr:`password`).
        self.passwords = {
            ADMIN_USER: self.password,
            **{u.split(":")[0]: secrets.token_urlsafe(16) for u in extra_users},
        }
        self.after_migrate = [list(command) for command in after_migrate]
        self.processes: dict[str, ManagedProcess] = {}
        self.timings = Timings()
        self._dag_sources = list(dag_sources)
        self._client: httpx.Client | None = None
        self._plain: httpx.Client | None = None
        self.env = self._build_env(connections or {}, extra_env or {})
        self.components = {component.name: component for component in components}
        # A process that runs twice (two triggerers, two workers) needs log-server ports of its own; the
        # others keep the shared ones (the api-server reads task logs from the files, on this host).
        kinds = Counter(component.args[:2] for component in components)
        self._own_env = {
            name: _own_log_ports() if kinds[component.args[:2]] > 1 else {}
            for name, component in self.components.items()
        }

    def component_env(self, name: str) -> dict[str, str]:
        """The environment component ``name`` starts with: :attr:`env` plus its own log-server ports, if any."""
        return {**self.env, **self._own_env[name]}

    # -- environment -----------------------------------------------------------------------------------
    def _build_env(self, connections: Mapping[str, ConnectionSpec], extra_env: Mapping[str, str]) -> dict[str, str]:
        # Start from the caller's environment without any Airflow settings: the stack must not depend on
        # (or leak into) whatever AIRFLOW_HOME or AIRFLOW__* the developer has exported.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTEST_", "COV_CORE"))}
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                MARKER_VAR: self.marker,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                # LocalExecutor is the default in 3.3 and what `airflow standalone` forces; with SQLite it works
                # because task processes talk to the execution API, not to the database.
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__FERNET_KEY": fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join([f"{ADMIN_USER}:admin", *self.extra_users]),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                # Parse fast: look for new files every few seconds, one parsing process (2-core CI). New and
                # modified files are parsed at once whatever the interval (file_parsing_sort_mode modified_time),
                # so unchanged ones wait 10 minutes, longer than a demo or a test stack lives: re-parsing the
                # tests' 14 files took 40 % of a core every 10 s, 3.5 % every 2 minutes (bench_idle_stack.py).
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                # Fixed default ports (8793/8794) would collide with a developer's own Airflow.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            }
        )
        env.update(connection_env(connections))
        env.update(extra_env)
        return env

    def _prepare_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.dags_folder.mkdir(exist_ok=True)
        for source in self._dag_sources:
            for path in sorted(source.glob("*.py")) if source.is_dir() else ():
                if path.name != "__init__.py":
                    self.link_dag(path)
        (self.home / "simple_auth_manager_passwords.json").write_text(json.dumps(self.passwords))

    def link_dag(self, path: Path) -> Path:
        """Make ``path`` visible in the DAGs folder (a symlink); the dag-processor finds it within seconds."""
        target = self.dags_folder / path.name
        if not target.exists():
            target.symlink_to(path.resolve())
        return target

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self, *, timeout: float = 120.0) -> None:
        """Migrate the DB, start the components, and wait until all report healthy (or raise with their logs)."""
        began = time.monotonic()
        self._prepare_home()
        result = self.cli("db", "migrate", timeout=timeout)
        if result.returncode != 0:
            raise StackError(f"airflow db migrate failed ({result.returncode}):\n{result.stdout[-4000:]}")
        for command in self.after_migrate:
            result = self.cli(*command, timeout=timeout)
            if result.returncode != 0:
                raise StackError(f"airflow {' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}")
        migrated = time.monotonic()
        self.timings.migrate = migrated - began
        try:
            for name, component in self.components.items():
                self.processes[name] = ManagedProcess.start(
                    name,
                    [str(VENV_BIN / "airflow"), *component.args],
                    env=self.component_env(name),
                    cwd=self.home,
                    log_path=self.home / f"{name}.log",
                )
            remaining = max(10.0, timeout - (migrated - began))
            poll(
                self._started,
                timeout=remaining,
                interval=0.5,
                what="Airflow to be healthy",
                on_timeout=self.diagnostics,
            )
            self._client = self._login()
        except BaseException:
            self.stop()
            raise
        self.timings.healthy = time.monotonic() - migrated
        self.timings.total = time.monotonic() - began

    def stop(self) -> list[str]:
        """Stop every component (see :func:`stop_processes`); returns notes on what needed force.

        The api-server goes last: task and trigger runners talk to its execution API while they shut down.
        """
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._plain is not None:
            self._plain.close()
            self._plain = None
        api_server = [p for name, p in self.processes.items() if name == "api-server"]
        others = [p for name, p in self.processes.items() if name != "api-server"]
        notes = stop_processes(others)
        notes += stop_processes(api_server, marker=self.marker)
        return notes

    def restart_component(
        self, name: str, *, timeout: float = 120.0, while_down: Callable[[], None] | None = None
    ) -> Restart:
        """Stop one component the way :meth:`stop` does, start it again with the same environment, wait until healthy.

        Runners the old process started in process groups of their own (a triggerer's trigger runner, an
        executor's task runners) get SIGTERM, then SIGKILL, if they outlive it. The new process appends
        to the same log after a marker line. "Healthy" means every component healthy in
        ``/api/v2/monitor/health`` *and*, for a component with a heartbeat there, a heartbeat from after
        the new process started (the old process's last heartbeat stays "healthy" for a while); the
        api-server counts once it answers again (the client then logs in afresh). ``while_down`` runs
        between the stop and the start.
        """
        if name not in self.processes:
            raise ValueError(f"no component {name!r}; running: {', '.join(self.processes)}")
        old = self.processes[name]
        began = time.monotonic()
        runners = descendants(old.pid)
        if name == "api-server" and self._client is not None:
            self._client.close()
            self._client = None
        notes = stop_processes([old])
        leftovers = sorted(set(runners) & set(marked_pids(self.marker)))
        if leftovers:
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            wait_until(lambda: all(proc_stat(pid) is None for pid in leftovers), timeout=3)
            killed = [pid for pid in leftovers if proc_stat(pid) is not None]
            for pid in killed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            notes.append(
                f"{name}: runners {leftovers} outlived it; SIGTERM" + (f", then SIGKILL {killed}" if killed else "")
            )
        if while_down is not None:
            while_down()
        stopped = time.monotonic()
        started_at = datetime.now(timezone.utc)
        with old.log_path.open("a") as log:
            log.write(f"\n----- gridaware tests: {name} restarted at {started_at.isoformat()} -----\n")
        new = ManagedProcess.start(name, old.argv, env=self.component_env(name), cwd=self.home, log_path=old.log_path)
        self.processes[name] = new
        poll(
            partial(self._healthy_since, name, started_at),
            timeout=timeout,
            interval=0.5,
            what=f"the {name} to be healthy again after its restart",
            on_timeout=self.diagnostics,
        )
        if name == "api-server":
            self._client = self._login()
        return Restart(
            name=name,
            old_pid=old.pid,
            new_pid=new.pid,
            stop_seconds=stopped - began,
            start_seconds=time.monotonic() - stopped,
            started_at=started_at,
            notes=notes,
        )

    def _healthy_since(self, name: str, since: datetime) -> dict[str, Any] | None:
        health = self._healthy()
        if health is None or name not in HEARTBEATS:
            return health
        key, field_name = HEARTBEATS[name]
        beat = (health.get(key) or {}).get(field_name)
        if not beat or datetime.fromisoformat(str(beat).replace("Z", "+00:00")) <= since:
            return None
        return health

    def __enter__(self) -> AirflowStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_alive(self) -> None:
        dead = [p for p in self.processes.values() if not p.running]
        if dead:
            names = ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in dead)
            raise StackError(f"Airflow component(s) exited: {names}\n{self.diagnostics()}")

    def _started(self) -> dict[str, Any] | None:
        """Every component healthy in ``/api/v2/monitor/health`` and every Celery worker ready."""
        health = self._healthy()
        if health is None:
            return None
        workers = [name for name, component in self.components.items() if component.health == "celery"]
        return health if all(self._celery_ready(name) for name in workers) else None

    def _celery_ready(self, name: str) -> bool:
        # Celery logs "<node name> ready." once it consumes from its queues.
        return " ready." in self.processes[name].tail(200)

    @property
    def _http(self) -> httpx.Client:
        """An unauthenticated client for health polls and token requests."""
        # ``httpx.get()`` builds a client, and so a TLS context loading the CA bundle (tens of ms of CPU), on
        # every call; a stack's start polls its health four times a second. No keep-alive: each request opens
        # its connection, as ``httpx.get()`` did, so a restarted api-server is never asked on a dead one.
        if self._plain is None:
            self._plain = httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))
        return self._plain

    def _healthy(self) -> dict[str, Any] | None:
        self._check_alive()
        try:
            response = self._http.get(f"{self.api_url}/api/v2/monitor/health")
        except httpx.TransportError:
            return None  # api-server still starting
        if response.status_code != 200:
            return None
        health = response.json()
        statuses = {key: (health.get(key) or {}).get("status") for key in HEALTH_KEYS}
        return health if all(status == "healthy" for status in statuses.values()) else None

    def diagnostics(self, lines: int = 40) -> str:
        """Tails of every component's log, for failure messages."""
        parts = [p.describe(lines) for p in self.processes.values()]
        try:
            health = self._http.get(f"{self.api_url}/api/v2/monitor/health").text
        except httpx.HTTPError as exc:
            health = f"unreachable: {exc}"
        parts.append(f"----- /api/v2/monitor/health -----\n{health}")
        return "\n".join(parts)

    # -- CLI -------------------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120.0, merge_stderr: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with the stack's environment.

        By default stderr is merged into ``.stdout`` (one readable transcript for assertion messages);
        pass ``merge_stderr=False`` to keep machine-readable output (``--output json``) clean.
        """
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str, timeout: float = 120.0) -> Any:
        """Run ``airflow <args> --output json`` and parse it; raise with the transcript if it fails."""
        result = self.cli(*args, "--output", "json", timeout=timeout, merge_stderr=False)
        if result.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        text = result.stdout
        start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
        try:
            return json.loads(text[start:])
        except ValueError as exc:
            raise StackError(f"airflow {' '.join(args)} printed no JSON ({exc}):\n{text}\n{result.stderr}") from None

    # -- REST API v2 -----------------------------------------------------------------------------------
    def token(self, username: str = ADMIN_USER) -> str:
        """A bearer token of ``username`` (the admin, or one of :attr:`extra_users`) from ``POST /auth/token``."""
        response = self._http.post(
            f"{self.api_url}/auth/token",
            json={"username": username, "password": self.passwords[username]},
            timeout=30,
        )
        if response.status_code not in (200, 201):
            raise StackError(f"POST /auth/token for {username} answered {response.status_code}: {response.text}")
        return str(response.json()["access_token"])

    def _login(self) -> httpx.Client:
        token = self.token()
        return httpx.Client(base_url=self.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    @property
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` on the api-server with an admin bearer token."""
        if self._client is None:
            raise StackError("the Airflow stack is not running")
        return self._client

    def api(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 204),
    ) -> Any:
        """Call the API (``path`` from the server root, e.g. ``/api/v2/dags``); parsed JSON, or raise with the body."""
        for attempt in range(SQLITE_LOCK_RETRIES + 1):
            response = self.client.request(method, path, json=json, params=params, headers=headers)
            # Airflow on SQLite has one writer: with several scenarios starting at once, a write can fail with
            # "database is locked" after its transaction was rolled back. Nothing was written; ask again.
            if response.status_code != 500 or "database is locked" not in response.text:
                break
            time.sleep(0.2 * (attempt + 1))
        if response.status_code not in set(ok):
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text[:2000]}")
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    @staticmethod
    def _q(value: str) -> str:
        return quote(value, safe="")

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"])

    def wait_for_dag(self, dag_id: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the dag-processor has serialized ``dag_id``; fail early on its import error."""

        def check() -> dict[str, Any] | None:
            response = self.client.get(f"/api/v2/dags/{self._q(dag_id)}")
            if response.status_code == 200:
                return dict(response.json())
            for error in self.import_errors():
                filename = str(error.get("filename", ""))
                if Path(filename).stem == dag_id or dag_id in str(error.get("stack_trace", "")):
                    raise StackError(f"DAG {dag_id!r} failed to import from {filename}:\n{error.get('stack_trace')}")
            self._check_alive()
            return None

        def explain() -> str:
            errors = "\n".join(f"{e.get('filename')}:\n{e.get('stack_trace')}" for e in self.import_errors())
            files = ", ".join(sorted(p.name for p in self.dags_folder.iterdir()))
            return f"DAGs folder: {files}\nimport errors:\n{errors or '(none)'}\n{self.diagnostics(20)}"

        return poll(check, timeout=timeout, interval=0.5, what=f"DAG {dag_id!r} to be parsed", on_timeout=explain)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/api/v2/dags/{self._q(dag_id)}", json={"is_paused": False})

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None, *, timeout: float = 60.0) -> str:
        """Wait for the DAG to be parsed, unpause it, create a manual run; returns its run id."""
        self.wait_for_dag(dag_id, timeout=timeout)
        self.unpause(dag_id)
        run = self.api(
            "POST",
            f"/api/v2/dags/{self._q(dag_id)}/dagRuns",
            json={"logical_date": None, "conf": dict(conf or {})},
        )
        return str(run["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}"))

    def wait_for_run(
        self, dag_id: str, run_id: str, *, timeout: float = 120.0, states: Iterable[str] = TERMINAL_RUN_STATES
    ) -> str:
        """Wait until the run reaches one of ``states`` (default: success or failed); returns the state."""
        wanted = frozenset(states)

        def check() -> str | None:
            state = str(self.dag_run(dag_id, run_id)["state"])
            if state in wanted:
                return state
            self._check_alive()
            return None

        def explain() -> str:
            tis = "\n".join(f"  {t['task_id']}: {t['state']}" for t in self.task_instances(dag_id, run_id))
            return f"run state: {self.dag_run(dag_id, run_id)['state']}\ntask instances:\n{tis}\n{self.diagnostics(30)}"

        return poll(check, timeout=timeout, interval=0.5, what=f"run {dag_id}/{run_id}", on_timeout=explain)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.api("GET", f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances")
        return list(body["task_instances"])

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, map_index: int = -1) -> str:
        """The task's log as text, one line per structured log record (``timestamp level event key=value``)."""
        entries = self.task_log_entries(dag_id, run_id, task_id, try_number, map_index=map_index)
        return "\n".join(_log_line(entry) for entry in entries)

    def task_log_entries(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, map_index: int = -1
    ) -> list[Any]:
        """The task's log records as the API returns them (dicts with ``timestamp``, ``level``, ``event`` ...)."""
        body = self.api(
            "GET",
            f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
            f"/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        return list(body.get("content", []))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", *, map_index: int = -1) -> Any:
        """The XCom value as JSON (a JSON-able return value comes back as the same structure)."""
        body = self.api(
            "GET",
            f"/api/v2/dags/{self._q(dag_id)}/dagRuns/{self._q(run_id)}/taskInstances/{self._q(task_id)}"
            f"/xcomEntries/{self._q(key)}",
            params={"map_index": map_index},
        )
        value = body["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def add_connection(self, conn_id: str, conn_type: str, **fields: Any) -> None:
        """Create (or replace) a connection in the metadata DB through the REST API, visible to new tasks at once.

        ``extra`` may be a dict. Connections set as ``AIRFLOW_CONN_*`` take precedence over these.
        """
        if isinstance(fields.get("extra"), Mapping):
            fields["extra"] = json.dumps(fields["extra"])
        body = {"connection_id": conn_id, "conn_type": conn_type, **fields}
        self.client.delete(f"/api/v2/connections/{self._q(conn_id)}")
        self.api("POST", "/api/v2/connections", json=body)


def _log_line(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return str(entry)
    rest = {k: v for k, v in entry.items() if k not in ("timestamp", "level", "event", "logger")}
    extras = " ".join(f"{k}={v}" for k, v in rest.items())
    parts = [str(entry.get("timestamp") or ""), str(entry.get("level") or ""), str(entry.get("event") or ""), extras]
    return " ".join(p for p in parts if p)
