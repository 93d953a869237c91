"""Start and stop the simulator: in this process (uvicorn in a thread) or as a ``gridaware simulate serve`` subprocess.

Example::

    with start_simulator(speedup=60) as sim:
        # a connection with host f"{sim.url}/ukci" makes UKCarbonIntensityHook read the simulator
        sim.add_fault({"target": "ukci", "mode": "rate_limit", "count": 1})
        sim.set_clock(advance=timedelta(hours=1))
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.simulator.faults import FaultSpec, parse_fault_spec
from airflow_provider_gridaware.traces.trace import TraceSpec

if TYPE_CHECKING:
    from airflow_provider_gridaware.simulator.grid import SimulatedGrid, SimulatorConfig

FaultLike = FaultSpec | Mapping[str, Any] | str


def as_fault(fault: FaultLike) -> FaultSpec:
    """A :class:`FaultSpec` from a spec, a dict of its fields, or the ``TARGET:MODE[:k=v,...]`` form."""
    if isinstance(fault, FaultSpec):
        return fault
    if isinstance(fault, str):
        return parse_fault_spec(fault)
    return FaultSpec.model_validate(dict(fault))


class SimulatorHandle:
    """A running simulator: its base URL, control helpers, and ``stop()``. Use as a context manager.

    :param url: base URL without a trailing slash (``http://127.0.0.1:PORT``).
    :param stop: stops the server and releases its port.
    :param pid: the subprocess id (``None`` in-process).
    :param grid: the simulated grid (in-process only: tests may read or drive it directly).
    """

    def __init__(
        self, url: str, stop: Callable[[], None], *, pid: int | None = None, grid: SimulatedGrid | None = None
    ) -> None:
        self.url = url
        self.pid = pid
        self.grid = grid
        self._stop = stop
        self._stopped = False

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if not self._stopped:
            self._stopped = True
            self._stop()

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimulatorHandle(url={self.url!r}, pid={self.pid})"

    # -- control API -----------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(f"simulator refused {method} {path}: HTTP {exc.code}: {detail}") from None

    def state(self) -> dict[str, Any]:
        """``GET /_sim/state``: clock, zones, traces, faults and request counts."""
        result: dict[str, Any] = self._call("GET", "/_sim/state")
        return result

    def add_fault(self, *faults: FaultLike) -> list[dict[str, Any]]:
        """Activate faults; returns the active faults.

        :param faults: :class:`FaultSpec`, dicts of its fields, or ``TARGET:MODE[:k=v,...]`` strings.
        """
        body = [as_fault(f).model_dump(mode="json", exclude_none=True) for f in faults]
        result: list[dict[str, Any]] = self._call("POST", "/_sim/faults", body)["faults"]
        return result

    def clear_faults(self, target: str | None = None) -> None:
        """Clear every fault, or those of one API.

        :param target: ``watttime``, ``electricitymaps``, ``ukci``, ``entsoe`` or ``None`` for all.
        """
        self._call("DELETE", "/_sim/faults" + (f"?target={target}" if target else ""))

    def set_clock(
        self, *, now: datetime | None = None, speedup: float | None = None, advance: timedelta | None = None
    ) -> datetime:
        """Set simulated time and/or speed-up, or jump ahead; returns the simulated time.

        :param now: the new simulated time (aware).
        :param speedup: simulated seconds per wall second from now on.
        :param advance: jump forward by this much (after applying ``now``).
        """
        body: dict[str, Any] = {}
        if now is not None:
            body["now"] = format_time(now)
        if speedup is not None:
            body["speedup"] = speedup
        if advance is not None:
            body["advance_seconds"] = advance.total_seconds()
        from airflow_provider_gridaware.traces.trace import parse_trace_time

        return parse_trace_time(self._call("POST", "/_sim/clock", body)["now"])

    def now(self) -> datetime:
        """The simulator's current simulated time."""
        from airflow_provider_gridaware.traces.trace import parse_trace_time

        return parse_trace_time(self.state()["clock"]["now"])

    def revoke_tokens(self) -> None:
        """Invalidate every WattTime token, as if they had all expired."""
        self._call("DELETE", "/_sim/tokens")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_in_thread(
    grid: SimulatedGrid, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> SimulatorHandle:
    """Serve ``grid`` with uvicorn in a daemon thread of this process; returns once it accepts connections.

    :param grid: what to serve.
    :param host: interface to listen on.
    :param port: port, ``0`` for a free one.
    :param timeout: seconds to wait for the server to start.
    """
    import uvicorn

    from airflow_provider_gridaware.simulator.app import create_app

    sock = _bind(host, port)
    config = uvicorn.Config(
        create_app(grid),
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gridaware-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the simulator did not start on {host}:{port} within {timeout:g}s")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return SimulatorHandle(_url(host, sock), stop, grid=grid)


def config_to_argv(config: SimulatorConfig) -> list[str]:
    """``gridaware simulate serve`` options reproducing ``config`` (for the subprocess form)."""
    argv: list[str] = []
    for spec in config.traces:
        argv += ["--trace", str(TraceSpec.parse(spec))]
    if config.price_trace is not None:
        argv += ["--price-trace", str(config.price_trace)]
    argv += ["--anchor", str(getattr(config.anchor, "value", config.anchor))]
    argv += ["--speedup", repr(config.speedup)]
    if config.now is not None:
        argv += ["--now", format_time(config.now)]
    argv += ["--forecast-error", repr(config.forecast_error), "--seed", str(config.seed)]
    argv += ["--token-ttl", repr(config.token_ttl), "--entsoe-resolution", str(config.entsoe_resolution)]
    for flag, value in (
        ("--api-token", config.api_token),
        ("--watttime-username", config.watttime_username),
        ("--watttime-password", config.watttime_password),
    ):
        if value is not None:
            argv += [flag, value]
    for fault in config.faults:
        argv += ["--fault", fault.model_dump_json(exclude_none=True)]
    if config.clean_window_in is not None:
        argv += ["--clean-window-in", f"{config.clean_window_in.total_seconds():g}s"]
        argv += ["--clean-window-for", f"{config.clean_window_for.total_seconds():g}s"]
        argv += ["--clean-window-depth", repr(config.clean_window_depth)]
    return argv


def serve_in_subprocess(
    config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 60.0
) -> SimulatorHandle:
    """Run ``gridaware simulate serve`` as a child process; returns once it has written its URL.

    :param config: what to serve.
    :param host: interface to listen on.
    :param port: port, ``0`` for a free one.
    :param timeout: seconds to wait for the ready file.
    """
    workdir = Path(tempfile.mkdtemp(prefix="gridaware-sim-"))
    ready = workdir / "ready"
    log_path = workdir / "simulator.log"
    argv = [sys.executable, "-m", "airflow_provider_gridaware.simulator.cli", "serve"]
    argv += ["--host", host, "--port", str(port), "--ready-file", str(ready), *config_to_argv(config)]
    log = log_path.open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            log.close()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the simulator subprocess did not start (exit {process.returncode}):\n{tail}")
        time.sleep(0.05)
    url = ready.read_text().strip()

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        for path in (ready, log_path):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            workdir.rmdir()

    return SimulatorHandle(url, stop, pid=process.pid)


def start_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    traces: Sequence[str | os.PathLike[str] | TraceSpec] | None = None,
    speedup: float = 1.0,
    faults: Iterable[FaultLike] = (),
    in_process: bool = True,
    price_trace: str | os.PathLike[str] | None = None,
    anchor: str = "now",
    now: datetime | None = None,
    forecast_error: float = 0.05,
    seed: int = 0,
    token_ttl: float = 1800.0,
    api_token: str | None = None,
    watttime_username: str | None = None,
    watttime_password: str | None = None,
    entsoe_resolution: str = "auto",
    clean_window_in: timedelta | None = None,
    clean_window_for: timedelta = timedelta(minutes=30),
    clean_window_depth: float = 0.5,
    startup_timeout: float = 60.0,
) -> SimulatorHandle:
    """Start the local grid simulator and return a handle with its ``url``; stop it with ``.stop()`` or ``with``.

    Each API lives under its prefix: ``{url}/watttime``, ``{url}/electricitymaps``, ``{url}/ukci``,
    ``{url}/entsoe``; point a connection's host there and the real hook talks to it unchanged.

    :param host: interface to listen on (loopback by default).
    :param port: port, ``0`` for a free one.
    :param traces: carbon traces (``FILE[:ZONE]``, paths or specs); ``None`` serves the bundled GB trace.
    :param speedup: simulated seconds per wall second.
    :param faults: faults active from the start (specs, dicts, or ``TARGET:MODE[:k=v,...]``).
    :param in_process: run uvicorn in a thread here (fast); ``False`` runs ``gridaware simulate serve``.
    :param price_trace: a real price CSV (EUR/MWh); ``None`` serves SYNTHETIC prices derived from carbon.
    :param anchor: ``now`` (shift traces to the present, looping) or ``fixed`` (trace times).
    :param now: simulated time at start (default: now, or the trace start for a fixed anchor).
    :param forecast_error: forecast error at 24 h, fraction of the zone's typical value; 0 = perfect.
    :param seed: seed of the forecast errors.
    :param token_ttl: WattTime token lifetime in seconds.
    :param api_token: the only Electricity Maps / ENTSO-E token accepted (``None``: any).
    :param watttime_username: the only WattTime user accepted (``None``: any).
    :param watttime_password: that user's password (``None``: any).
    :param entsoe_resolution: ``auto``, ``60`` or ``15`` (minutes per ENTSO-E price position).
    :param clean_window_in: open a clean window this long after the simulated start (``None``: none): every
        carbon and price signal of every API, actual and forecast, dips there (see ``docs/simulator.md``).
    :param clean_window_for: how long the clean window lasts.
    :param clean_window_depth: how far below the lowest recorded value in it the window opens (0.5 = half).
    :param startup_timeout: seconds to wait for the server to accept connections.
    """
    from airflow_provider_gridaware.simulator.grid import SimulatedGrid, SimulatorConfig

    config = SimulatorConfig(
        traces=tuple(TraceSpec.parse(Path(t) if isinstance(t, os.PathLike) else t) for t in traces or ()),
        price_trace=os.fspath(price_trace) if price_trace is not None else None,
        anchor=anchor,
        speedup=speedup,
        now=now,
        forecast_error=forecast_error,
        seed=seed,
        token_ttl=token_ttl,
        api_token=api_token,
        watttime_username=watttime_username,
        watttime_password=watttime_password,
        entsoe_resolution=str(entsoe_resolution),
        faults=tuple(as_fault(f) for f in faults),
        clean_window_in=clean_window_in,
        clean_window_for=clean_window_for,
        clean_window_depth=clean_window_depth,
    )
    if not in_process:
        return serve_in_subprocess(config, host=host, port=port, timeout=startup_timeout)
    return serve_in_thread(SimulatedGrid(config), host=host, port=port, timeout=startup_timeout)
