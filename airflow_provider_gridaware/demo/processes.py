"""Processes that must not outlive us: start each in its own group, stop it the way its supervisor expects.

:class:`ManagedProcess` starts a subprocess in a new session (process group id == pid) with its output in
a log file and SIGTERM to it if this process dies (``PR_SET_PDEATHSIG``); :func:`stop_processes` escalates
from SIGTERM to the leader to SIGKILL of what is left, and ends with a sweep for anything carrying a marker
variable (Airflow puts each task and trigger runner in a process group of its own). Forced steps come back
as notes. :func:`poll` waits for a condition with a timeout that raises with the evidence.

Shared by ``gridaware demo`` (a real Airflow on this machine) and the integration tests' harness.
Standard library only (Linux ``/proc`` for the process tree).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

#: Every process a stack starts carries this variable, so a leftover can be found even outside its group.
MARKER_VAR = "GRIDAWARE_TEST_STACK"

T = TypeVar("T")


class StackError(RuntimeError):
    """A process failed to start or died, or a wait timed out; the message carries the evidence."""


# -- small utilities -------------------------------------------------------------------------------------
#: Where :func:`free_port` notes the ports it handed out, one empty file per port, machine-wide.
PORT_CLAIMS = Path(tempfile.gettempdir()) / f"gridaware-ports-{os.getuid()}"
#: How long a handed-out port stays claimed: longer than any pick-to-bind gap (an Airflow component binds
#: after ``db migrate``; the demo's simulator after Airflow is up, a few minutes at worst).
PORT_CLAIM_TTL = 15 * 60.0
#: The lowest port :func:`free_port` hands out; the highest is just below the kernel's ephemeral range.
LOWEST_PORT = 15000


def ephemeral_ports() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; the IANA range elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on, that no outgoing connection can take and no other caller was just given.

    The caller binds it later, often much later (an Airflow component's port goes into the environment
    before ``db migrate``), so a port the OS picks (bind to 0) is not enough: it comes from the ephemeral
    range, where any outgoing connection on the machine may take it meanwhile (seen as ``address already
    in use`` with three test workers starting stacks at once). So the port comes from below that range,
    and a claim file (:data:`PORT_CLAIMS`, created exclusively) keeps every other process calling this from
    being handed the same one for :data:`PORT_CLAIM_TTL`.
    """
    lowest, highest = LOWEST_PORT, ephemeral_ports()[0] - 1
    if highest - lowest < 1000:  # an unusual kernel range: let the OS pick
        return _os_port(host)
    try:
        PORT_CLAIMS.mkdir(mode=0o700, exist_ok=True)
        ours = PORT_CLAIMS.stat().st_uid == os.getuid()
    except OSError:
        ours = False
    if not ours:  # nowhere of our own to note claims (a read-only temp, another user's folder): the OS picks
        return _os_port(host)
    count = highest - lowest + 1
    first = random.SystemRandom().randrange(count)  # from a random point, so callers rarely contend for a claim
    for step in range(count):
        port = lowest + (first + step) % count
        if _claim(port) and _bindable(host, port):
            return port
    return _os_port(host)  # every port below the range claimed or taken


def _claim(port: int) -> bool:
    claim = PORT_CLAIMS / str(port)
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        if time.time() - claim.stat().st_mtime < PORT_CLAIM_TTL:
            return False
        # Stale: take it over. Two processes doing so at the same instant could both win; the bind check
        # still keeps out a port already listened on, and a stale claim is one nobody has used for 15 minutes.
        claim.unlink()
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except OSError:
        return False


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT does not count
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _os_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 1024 * lines))  # Airflow log lines run long
            data = handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str,
    on_timeout: Callable[[], str] = lambda: "",
) -> T:
    """Call ``check`` until it returns something other than ``None``; raise :class:`StackError` after ``timeout``.

    ``check`` may raise to abort early (a process died, an import error appeared).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}".rstrip())
        time.sleep(interval)


def proc_stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, pgid)`` of a live process; ``None`` if it is gone or a zombie (dead, awaiting its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else (int(fields[1]), int(fields[2]))


def _all_pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) pids in process group ``pgid``."""
    return [pid for pid in _all_pids() if (stat := proc_stat(pid)) is not None and stat[1] == pgid]


def descendants(pid: int) -> list[int]:
    """Live children, grandchildren ... of ``pid``, whatever their process group.

    Airflow's supervisors put each task and trigger runner in a group of its own (``setpgid``), so a
    process group does not hold everything a component started.
    """
    children: dict[int, list[int]] = {}
    for child in _all_pids():
        if (stat := proc_stat(child)) is not None:
            children.setdefault(stat[0], []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def marked_pids(marker: str) -> list[int]:
    """Pids of our own processes whose environment carries ``MARKER_VAR=marker``."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and proc_stat(pid) is not None:
            found.append(pid)
    return found


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when the process starting it dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, in the parent: the child only calls it
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


_PREEXEC = _parent_death_signal()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- processes -------------------------------------------------------------------------------------------
@dataclass
class ManagedProcess:
    """A subprocess in its own process group, its output in a log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls, name: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ManagedProcess:
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group: pgid == pid
                # If this process is killed, the leader still gets SIGTERM and stops its own children.
                # (Linux sends it when the *thread* that started the process ends: start from the main one.)
                preexec_fn=_PREEXEC,
            )
        return cls(name, list(argv), log_path, popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.running else f"exited with {self.popen.returncode}"
        body = self.tail(lines) or "(log empty)"
        return f"----- {self.name} (pid {self.pid}, {state}) {self.log_path} -----\n{body}"


def stop_processes(
    processes: Iterable[ManagedProcess], *, patience: float = 3.0, marker: str | None = None
) -> list[str]:
    """Stop processes the way their supervisors expect, then make sure nothing is left.

    1. SIGTERM to each leader only, as ``airflow standalone`` does: the scheduler stops its LocalExecutor
       workers and log server itself.
    2. After ``patience`` seconds, a second SIGTERM to leaders still alive: Airflow's components take it
       as "stop now".
    3. Two seconds later, SIGKILL the descendants of leaders still alive, so a leader waiting on a child
       can finish its own shutdown (seen in 3.3.2: ``LocalExecutor.end()`` joining an idle worker that
       never got its poison pill); two more seconds, then SIGKILL the leader and its group. (The
       triggerer often needs this: after SIGINT its trigger runner lingers and the supervisor's
       escalation waits 10 s + 5 s whatever the runner does.)
    4. Members left in a group after its leader exited get SIGTERM, a few seconds, then SIGKILL.
    5. With ``marker``: SIGKILL our processes that left their group (task and trigger runners get groups
       of their own) but still carry the marker variable.

    Returns notes on everything that needed force (empty when all stopped on the first SIGTERM).
    """
    procs = list(processes)
    notes: list[str] = []

    def alive() -> list[ManagedProcess]:
        return [p for p in procs if p.running]

    for proc in procs:
        _signal_leader(proc, signal.SIGTERM)
    wait_until(lambda: not alive(), timeout=patience)
    for proc in alive():
        notes.append(f"{proc.name} still running {patience:g}s after SIGTERM; signalled again")
        _signal_leader(proc, signal.SIGTERM)
    wait_until(lambda: not alive(), timeout=2)
    for proc in alive():
        children = descendants(proc.pid)
        notes.append(f"{proc.name} still running after two SIGTERMs; killed its descendants {children}")
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(), timeout=2)
    for proc in alive():
        notes.append(f"{proc.name} (pid {proc.pid}) still running; killed its process group")
        _signal_group(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=10)
    for proc in procs:
        if not group_members(proc.pid):
            continue
        _signal_group(proc.pid, signal.SIGTERM)
        wait_until(partial(_group_empty, proc.pid), timeout=5)
        leftovers = group_members(proc.pid)
        if leftovers:
            notes.append(f"{proc.name}: {leftovers} outlived their leader and SIGTERM; killed")
            _signal_group(proc.pid, signal.SIGKILL)
            wait_until(partial(_group_empty, proc.pid), timeout=5)
    if marker:
        escaped = marked_pids(marker)
        for pid in escaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if escaped:
            notes.append(f"processes {escaped} had left their process group; killed")
    return notes


def _group_empty(pgid: int) -> bool:
    return not group_members(pgid)


def _signal_leader(proc: ManagedProcess, sig: signal.Signals) -> None:
    if proc.running:
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(sig)


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True
