"""The main job, end to end, on this machine: ``gridaware demo`` (``make demo``, ``make demo-ui``).

1. Starts a real Airflow 3.3 (api-server, scheduler, dag-processor, triggerer; SQLite; LocalExecutor) in a
   fresh ``AIRFLOW_HOME`` with the example DAGs, every component on one accelerated clock
   (``GRIDAWARE_CLOCK``: simulated time runs ``speed`` times faster than the wall clock).
2. Starts the local grid simulator on that same clock, with a clean window a little ahead (the bundled
   real GB trace, lowered there), and triggers ``example_gridaware_task``.
3. Follows the run through the REST API and prints, as they happen, the task deferring, the decisions
   the triggerer makes (``decide()``, in plain words), the release in the window and what it ran with.
4. Writes the daily report for the simulated day (``gridaware report``, see :func:`write_daily_report`)
   and prints where it is and the Airflow UI's address; ``keep_running`` keeps Airflow up until Ctrl-C.

Nothing is scripted: the waits and the decisions are the provider's own, against a real scheduler and
triggerer; only time runs faster.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_gridaware.demo.processes import StackError, free_port, poll
from airflow_provider_gridaware.demo.stack import EXAMPLE_DAGS, VENV_BIN, AirflowStack
from airflow_provider_gridaware.store.url import STORE_URL_ENV
from airflow_provider_gridaware.times import CLOCK_ENV, ScaledClock, format_duration, format_time, parse_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.simulator.server import SimulatorHandle

UTC = timezone.utc
DAG_ID = "example_gridaware_task"
TASK_ID = "retrain_model"
#: Written into the demo's ``AIRFLOW_HOME``: only a folder carrying it is wiped by the next demo.
HOME_MARKER = ".gridaware-demo-home"
#: The GB Carbon Intensity API (the example's source) is half-hourly: the window opens on a period's start.
SIGNAL_PERIOD = timedelta(minutes=30)
WINDOW_HEAD_START = timedelta(minutes=1)
#: What the example task logs on its way, in the order it happens; the demo prints these records.
NARRATED = (
    "released at once",
    "the window opens in",
    "deferring until",
    "decision ",
    "released:",
    "grid window open:",
    "running in",
    "ran in",
)
#: A reason shorter than this is printed again rather than pointed to.
MIN_REPEATED_REASON = 40


@dataclass(frozen=True)
class DemoOptions:
    """How the demo runs.

    :param home: the demo's ``AIRFLOW_HOME`` (created; wiped first if an earlier demo left it).
    :param speed: simulated seconds per wall second, for Airflow's grid-aware code and the simulator alike.
    :param window_lead: the clean window opens at least this long (simulated) after the trigger, on a
        half-hour boundary: long enough for the task to plan and defer first.
    :param window_length: how long the clean window lasts (simulated).
    :param window_depth: how far below the recorded trace the window opens (0.9 = a tenth of it).
    :param port: the Airflow UI's port on loopback (``0``: a free one).
    :param keep_running: keep Airflow up after the report until Ctrl-C.
    :param run_timeout: wall seconds the run may take before the demo gives up (with the logs).
    :param work: how long (simulated) the example's stand-in for training runs once released: the ledger
        estimates its energy from the run's length and the declared GPUs, so the report has figures to show.
    :param dags: the folder of example DAGs.
    """

    home: Path
    speed: float = 60.0
    window_lead: timedelta = timedelta(minutes=90)
    window_length: timedelta = timedelta(hours=6)
    window_depth: float = 0.9
    port: int = 0
    keep_running: bool = False
    run_timeout: float = 600.0
    work: timedelta = timedelta(minutes=30)
    dags: Path = EXAMPLE_DAGS


@dataclass
class RunWatch:
    """What the demo saw of the run.

    :param states: the task's states in the order seen.
    :param narrated: the log records printed (their text).
    :param run_state: the run's final state.
    :param result: the task's XCom (where and when it ran, expected and "at once" signals).
    """

    states: list[str] = field(default_factory=list)
    narrated: list[str] = field(default_factory=list)
    run_state: str = ""
    result: dict[str, Any] | None = None


class Narrator:
    """Prints progress lines stamped with the wall time elapsed and the simulated time.

    :param clock: the accelerated clock every component runs on.
    :param out: where to print.
    """

    def __init__(self, clock: ScaledClock, out: IO[str]) -> None:
        self.clock = clock
        self.out = out
        self.began = time.time()

    def say(self, text: str, *, at: datetime | None = None) -> None:
        """One line: ``[+ 12 s | sim 14:05Z] text``; ``at`` is the wall-clock instant it happened (default: now)."""
        wall = at.timestamp() if at is not None else time.time()
        sim = self.clock.from_wall(datetime.fromtimestamp(wall, UTC))
        elapsed = wall - self.began
        self.out.write(f"[+{elapsed:4.0f} s | sim {sim:%H:%M}Z] {text}\n")
        self.out.flush()

    def plain(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def run_demo(options: DemoOptions, out: IO[str] = sys.stdout) -> int:
    """Run the demo; returns the exit code (0: the task deferred, was released in the window, succeeded).

    :param options: how to run it.
    :param out: where the narration goes.
    :raises StackError: Airflow or the simulator did not start, or the run did not end in time (the message
        carries the components' logs).
    """
    from airflow_provider_gridaware.commands.demo import DEMO_PASSWORD, DEMO_TOKEN, DEMO_USER, connection_env
    from airflow_provider_gridaware.simulator import start_simulator

    dag_file = options.dags / f"{DAG_ID}.py"
    if not dag_file.is_file():
        raise StackError(f"the example DAG {dag_file} is missing: run the demo from a checkout (make demo)")
    prepare_home(options.home)
    now = time.time()
    clock = ScaledClock(now, now, options.speed)
    say = Narrator(clock, out)
    sim_port = free_port()  # the simulator starts just before the trigger; Airflow needs its address now
    sim_url = f"http://127.0.0.1:{sim_port}"
    ui_port = usable_port(options.port)
    stack = AirflowStack(
        options.home,
        # The demo's store (ledger, archive, events) lives in its own home, whatever store the caller's
        # environment names: the demo wipes its home and must not write into another Airflow's store.
        extra_env={
            CLOCK_ENV: clock.spec(),
            STORE_URL_ENV: f"sqlite:///{options.home / 'gridaware.db'}",
            **connection_env(sim_url),
        },
        dag_sources=(options.dags,),
        port=ui_port,
    )
    sim: SimulatorHandle | None = None
    say.plain(
        f"gridaware demo: a real Airflow 3.3 with the grid-aware provider, simulated time {options.speed:g}x the wall"
        f" clock\nAIRFLOW_HOME={options.home}\n"
    )
    if options.port and ui_port != options.port:
        say.plain(f"port {options.port} is taken: the Airflow UI will be on port {ui_port}\n")
    try:
        say.say("starting Airflow 3.3 (db migrate; api-server, scheduler, dag-processor, triggerer; LocalExecutor)")
        stack.start(timeout=300)
        say.say(f"Airflow is up ({stack.timings.summary()}); UI at {stack.api_url}")
        stack.wait_for_dag(DAG_ID, timeout=180)
        say.say(f"the dag-processor parsed {DAG_ID} (and the other example DAGs)")
        sim_start = clock.now()
        opens_in = window_lead(sim_start, options.window_lead)
        sim = start_simulator(
            port=sim_port,
            now=sim_start,
            speedup=options.speed,
            api_token=DEMO_TOKEN,
            watttime_username=DEMO_USER,
            watttime_password=DEMO_PASSWORD,
            clean_window_in=opens_in,
            clean_window_for=options.window_length,
            clean_window_depth=options.window_depth,
        )
        sim.set_clock(now=clock.now())  # the grid was built in between: same clock as Airflow, to the millisecond
        window = sim.state()["clean_window"]
        window_start, window_end = parse_time(window["start"], what="start"), parse_time(window["end"], what="end")
        say.say(
            f"grid simulator at {sim.url}: bundled real GB carbon intensity (Carbon Intensity API, National Grid ESO,"
            f" CC BY 4.0), with a clean window {window_start:%H:%M}Z-{window_end:%H:%M}Z simulated"
            f" ({options.window_depth:.0%} below the recorded values at its opening), opening in about"
            f" {clock.wall_seconds(opens_in.total_seconds()):.0f} s of wall time"
        )
        run_id = stack.trigger_dag(DAG_ID, conf={"work_seconds": clock.wall_seconds(options.work.total_seconds())})
        say.say(
            f"triggered {DAG_ID} (run {run_id}): {TASK_ID}, 2 h of training on 8 H100s due within 12 h (the demo's"
            f" stand-in runs {format_duration(options.work.total_seconds())}), plans its start"
        )
        watch = watch_run(stack, run_id, say, timeout=options.run_timeout)
        code = summarise(watch, window_start, window_end, say)
        day = simulated_day(watch, clock)
        report = write_daily_report(day, options.home / "reports", stack.env, say)
        say.plain()
        say.plain(f"Airflow home (logs, SQLite DB, DAGs): {options.home}")
        say.plain(f"Daily report for {day.isoformat()}: {report}")
        login = f"user admin, password {stack.password}"
        if options.keep_running:
            say.plain(f"Airflow UI: {stack.api_url}  ({login})")
            say.plain("Airflow and the simulator keep running (simulated time too); Ctrl-C stops them.")
            wait_for_interrupt()
        else:
            say.plain(f"Airflow UI: {stack.api_url}  ({login}), up while the demo ran: `make demo-ui` keeps it up.")
        return code
    finally:
        say.say("stopping Airflow and the simulator")
        stack.stop()
        if sim is not None:
            sim.stop()


def prepare_home(home: Path) -> None:
    """Create the demo's ``AIRFLOW_HOME``, wiping the one an earlier demo left (and nothing else).

    :raises StackError: ``home`` exists, is not empty, and was not made by the demo.
    """
    if home.exists():
        if not (home / HOME_MARKER).exists() and any(home.iterdir()):
            raise StackError(f"{home} exists and was not made by the demo: choose another --home or remove it")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / HOME_MARKER).write_text("made by `gridaware demo`; the next demo wipes this folder\n")


def usable_port(wanted: int) -> int:
    """``wanted`` if nobody listens on it on loopback, else a free port (``0`` asks for a free one)."""
    if wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", wanted))
            except OSError:
                return free_port()
        return wanted
    return free_port()


def window_lead(now: datetime, at_least: timedelta) -> timedelta:
    """How far ahead of ``now`` the clean window opens: ``at_least``, then to a minute before the next half hour.

    The example reads half-hourly signals: a window opening mid-period would dip only part of that period,
    and the planner's start (a period's start) would fall before the window.
    """
    earliest = (now + at_least).timestamp()
    step = SIGNAL_PERIOD.total_seconds()
    boundary = datetime.fromtimestamp(math.ceil(earliest / step) * step, UTC)
    # A minute early: the simulator places the window on its own clock, read a moment after ``now``.
    return boundary - WINDOW_HEAD_START - now


def shorten_repeated_reason(text: str, earlier: Sequence[str]) -> str:
    """``text`` with its reason replaced by "as above" when an earlier narrated line already gave that reason.

    The trigger, the worker and the example task each log the release with the decision's reason (each to
    its own log, where it is needed); printed one after another they would repeat one long sentence.
    """
    for before in reversed(earlier):
        _, sep, reason = before.partition(": ")
        if sep and len(reason) >= MIN_REPEATED_REASON and text.endswith(f": {reason}"):
            return f"{text[: -len(reason)]}as above"
    return text


def watch_run(stack: AirflowStack, run_id: str, say: Narrator, *, timeout: float) -> RunWatch:
    """Follow the run through the REST API until it ends, printing the task's states and decisions as they come.

    :raises StackError: the run did not end within ``timeout`` wall seconds (with the components' logs).
    """
    watch = RunWatch()
    seen: set[tuple[str, str]] = set()

    def narrate(task_id: str, try_number: int) -> None:
        try:
            entries = stack.task_log_entries(DAG_ID, run_id, task_id, try_number)
        except StackError:
            return  # the log is not there yet (the task has not started): next poll
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            text = str(entry.get("event") or "")
            key = (str(entry.get("timestamp")), text)
            if key in seen or not text.startswith(NARRATED):
                continue
            seen.add(key)
            watch.narrated.append(text)
            stamp = entry.get("timestamp")
            shown = shorten_repeated_reason(text, watch.narrated[:-1])
            say.say(f"  {task_id}: {shown}", at=parse_time(str(stamp), what="log time") if stamp else None)

    def check() -> str | None:
        for ti in stack.task_instances(DAG_ID, run_id):
            task_id, state = str(ti["task_id"]), str(ti.get("state") or "none")
            if state not in ("none", "scheduled", "queued") and ti.get("try_number"):
                narrate(task_id, int(ti["try_number"]))  # what led to the state first
            if task_id == TASK_ID and state != "none" and (not watch.states or watch.states[-1] != state):
                watch.states.append(state)
                say.say(f"{TASK_ID} is {state}{STATE_NOTES.get(state, '')}")
        run_state = str(stack.dag_run(DAG_ID, run_id)["state"])
        return run_state if run_state in ("success", "failed") else None

    watch.run_state = poll(
        check, timeout=timeout, interval=1.0, what=f"run {DAG_ID}/{run_id}", on_timeout=stack.diagnostics
    )
    for ti in stack.task_instances(DAG_ID, run_id):  # records written in the last second
        if ti.get("try_number"):
            narrate(str(ti["task_id"]), int(ti["try_number"]))
    if watch.run_state == "success":
        watch.result = stack.xcom(DAG_ID, run_id, TASK_ID)
    else:
        say.plain(stack.task_log(DAG_ID, run_id, TASK_ID))
    say.say(f"run {run_id} ended: {watch.run_state}")
    return watch


STATE_NOTES = {
    "deferred": " (waiting in the triggerer for its grid window: no worker slot held)",
    "running": " (on a worker)",
    "success": "",
}


def summarise(watch: RunWatch, window_start: datetime, window_end: datetime, say: Narrator) -> int:
    """Print the outcome in plain words; 0 if the task deferred, then ran inside the clean window."""
    if watch.run_state != "success" or watch.result is None:
        say.plain(f"\nThe run ended {watch.run_state}: see the log above.")
        return 1
    result = watch.result
    ran_from = parse_time(result["window_start"], what="window_start")
    unit = next(iter(result.get("expected") or {}), "gCO2eq/kWh")
    expected, at_once = result["expected"].get(unit), result["if_started_at_once"].get(unit)
    saving = f" ({1 - expected / at_once:.0%} lower)" if expected is not None and at_once else ""
    deferred = "deferred" in watch.states
    inside = window_start <= ran_from < window_end
    say.plain()
    say.plain(
        f"Decision: {'waited in the triggerer, then ' if deferred else ''}ran {TASK_ID} in {result['zone']} from"
        f" {format_time(ran_from)} (simulated): expected {expected:.0f} {unit} against {at_once:.0f} {unit} had it"
        f" started at once{saving}."
    )
    say.plain(
        f"The clean window was {format_time(window_start)} to {format_time(window_end)}: the release was"
        f" {'inside' if inside else 'OUTSIDE'} it."
    )
    if not deferred:
        say.plain("The task never deferred (it planned after the window had opened): try a larger --window-in.")
    return 0 if deferred and inside else 1


def simulated_day(watch: RunWatch, clock: ScaledClock) -> date:
    """The simulated day the run's work fell on (today's simulated date if it never ran)."""
    if watch.result is not None:
        return parse_time(watch.result["window_start"], what="window_start").date()
    return clock.now().date()


def write_daily_report(day: date, out_dir: Path, env: Mapping[str, str], say: Narrator) -> Path:
    """``gridaware report --date DAY --out DIR``, as a subprocess with Airflow's environment; the report's page.

    :raises StackError: the command failed (its output in the message).
    """
    argv = [str(VENV_BIN / "gridaware"), "report", "--date", day.isoformat(), "--out", str(out_dir)]
    say.say(f"writing the daily report: {' '.join(argv[1:])}")
    result = subprocess.run(
        argv, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise StackError(f"gridaware report exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    headline = next((line for line in result.stdout.splitlines() if line.strip()), "")
    if headline:
        say.say(f"report: {headline}")
    index = out_dir / "report.html"
    return index if index.exists() else out_dir


def wait_for_interrupt() -> None:
    """Block until Ctrl-C: for ``make demo-ui`` that is the normal end, not an error."""
    try:
        threading.Event().wait()  # SIGINT raises KeyboardInterrupt here, in the main thread
    except KeyboardInterrupt:
        return
