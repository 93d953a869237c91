"""``gridaware demo``: the main job end to end on this machine, with no keys and no network.

``gridaware demo`` starts a real Airflow 3.3 with the example DAGs and the local grid simulator on
accelerated time, triggers the example training DAG and shows its task deferring, being released in the
clean window with its decision in plain words, then writes the daily report for the simulated day
(:mod:`airflow_provider_gridaware.demo.run`). ``--keep-running`` (``make demo-ui``) keeps Airflow up
afterwards until Ctrl-C.

``gridaware demo --signals`` is the quick look without Airflow: it starts the simulator, points one
Airflow connection of each type at it, reads a forecast through every hook exactly as a DAG would, and
prints what ``decide()`` (the release rule every grid-aware task runs) does with a job on each: start
now, or wait for a cleaner (or cheaper) window, against starting it now.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError, time_argument

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries

DEMO_TOKEN = "demo-token"  # the simulator accepts only this token: the hooks really authenticate
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"


@dataclass(frozen=True)
class DemoSource:
    conn_id: str
    conn_type: str
    path: str  # under the simulator's URL; "" for the file replay
    zone: str
    kind: str | None = None
    login: str | None = None
    password: str | None = None


SOURCES = (
    DemoSource("gridaware_ukci_default", "gridaware_ukci", "/ukci", "GB"),
    DemoSource(
        "gridaware_electricitymaps_default", "gridaware_electricitymaps", "/electricitymaps", "GB", password=DEMO_TOKEN
    ),
    DemoSource(
        "gridaware_watttime_default", "gridaware_watttime", "/watttime", "GB", login=DEMO_USER, password=DEMO_PASSWORD
    ),
    DemoSource("gridaware_entsoe_default", "gridaware_entsoe", "/entsoe", "GB", kind="price", password=DEMO_TOKEN),
    DemoSource("gridaware_replay_default", "gridaware_replay", "", "GB"),
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job end to end: a real Airflow, the local simulator on accelerated time, the report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    airflow = parser.add_argument_group("the Airflow run (default)")
    airflow.add_argument(
        "--home",
        type=Path,
        default=Path(".demo/airflow-home"),
        help="the demo's AIRFLOW_HOME; an earlier demo's is wiped first (default: .demo/airflow-home)",
    )
    airflow.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60: 1 h = 1 min)"
    )
    airflow.add_argument(
        "--window-in",
        type=float,
        default=90.0,
        metavar="MINUTES",
        help="the clean window opens at least this many simulated minutes after the trigger (default 90)",
    )
    airflow.add_argument("--port", type=int, default=0, help="the Airflow UI's port (default: a free one)")
    airflow.add_argument(
        "--keep-running", action="store_true", help="keep Airflow up after the report until Ctrl-C (make demo-ui)"
    )
    airflow.add_argument("--timeout", type=float, default=600.0, help="wall seconds the run may take (default 600)")
    signals = parser.add_argument_group("--signals: every source through its hook, no Airflow")
    signals.add_argument("--signals", action="store_true", help="only read every source and print each decision")
    signals.add_argument("--hours", type=float, default=3.0, help="job duration in hours (default 3)")
    signals.add_argument("--within", type=float, default=24.0, help="deadline in hours from now (default 24)")
    signals.add_argument(
        "--at",
        type=functools.partial(time_argument, naive_is_utc=True),
        help="simulated 'now', ISO 8601 (default: the real time; the trace loops)",
    )
    signals.add_argument("--json", action="store_true", help="print one JSON object per source")
    parser.set_defaults(func=run)


def connection_env(sim_url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables pointing every demo connection at the simulator."""
    env = {}
    for source in SOURCES:
        conn: dict[str, Any] = {"conn_type": source.conn_type}
        if source.path:
            conn["host"] = sim_url + source.path
        if source.login:
            conn["login"] = source.login
        if source.password:
            conn["password"] = source.password
        env[f"AIRFLOW_CONN_{source.conn_id.upper()}"] = json.dumps(conn)
    return env


def run(args: argparse.Namespace) -> int:
    if args.signals:
        return run_signals(args)
    return run_airflow(args)


def run_airflow(args: argparse.Namespace) -> int:
    """The main job on a real Airflow (:func:`airflow_provider_gridaware.demo.run.run_demo`)."""
    if not args.speed > 0:
        raise CommandError(f"--speed must be positive, not {args.speed:g}", EXIT_USAGE)
    if not args.window_in > 0:
        raise CommandError(f"--window-in must be positive, not {args.window_in:g}", EXIT_USAGE)
    from airflow_provider_gridaware.demo.processes import StackError
    from airflow_provider_gridaware.demo.run import DemoOptions, run_demo

    options = DemoOptions(
        home=args.home.resolve(),
        speed=args.speed,
        window_lead=timedelta(minutes=args.window_in),
        port=args.port,
        keep_running=args.keep_running,
        run_timeout=args.timeout,
    )
    try:
        return run_demo(options)
    except StackError as exc:
        raise CommandError(str(exc)) from None


def run_signals(args: argparse.Namespace) -> int:
    """Every source through its hook against the simulator, and what ``decide()`` makes of each (no Airflow)."""
    if not 0 < args.hours < args.within:
        raise CommandError("need 0 < --hours < --within", EXIT_USAGE)
    # Keep the demo from writing an airflow.cfg into the user's home.
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="gridaware-demo-airflow-"))

    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.errors import GridSignalError
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.simulator import start_simulator
    from airflow_provider_gridaware.sources.flow import SignalQuery

    duration = timedelta(hours=args.hours)
    out = sys.stdout
    with start_simulator(
        api_token=DEMO_TOKEN, watttime_username=DEMO_USER, watttime_password=DEMO_PASSWORD, now=args.at
    ) as sim:
        os.environ.update(connection_env(sim.url))
        now = sim.now()
        horizon_end = now + timedelta(hours=args.within)
        if not args.json:
            out.write(
                f"Local grid simulator at {sim.url} (bundled GB carbon data, Carbon Intensity API, National Grid"
                " ESO, CC BY 4.0; prices are synthetic)\n"
                f"Job: {args.hours:g} h, must finish within {args.within:g} h of {now:%Y-%m-%d %H:%M}Z\n\n"
                f"{'source':<18} {'signal':<36} {'points':>6}  {'decision: start (UTC)':<23} {'expected':>8} "
                f"{'now':>8} {'saving':>7}\n"
            )
        failures = 0
        for source in SOURCES:
            hook = hook_for_connection(source.conn_id)
            kind = SignalKind(source.kind) if source.kind == "price" else None
            try:
                series = hook.get_signal(SignalQuery(source.zone, kind, True, now, horizon_end))
            except GridSignalError as exc:
                failures += 1
                out.write(f"{hook.source_name:<18} FAILED: {exc}\n")
                continue
            report = summarise(series, duration, now, horizon_end)
            if args.json:
                out.write(json.dumps({"source": hook.source_name, "conn_id": source.conn_id, **report}) + "\n")
            else:
                out.write(format_row(hook.source_name, report))
        if not args.json:
            out.write(
                "\nEach row is a real hook reading the simulator over HTTP through an Airflow connection"
                " (AIRFLOW_CONN_*),\nthen decide(), the release rule every grid-aware task runs (latest start,"
                " runtime margin, min_gain): 'wait' = it would defer until that start.\n"
                "Sources differ on the same GB trace, as real ones do: each forecast carries its own error"
                " (5 % at 24 h, drawn\nindependently per source) at its own resolution and horizon (UKCI and"
                " the replay half-hourly for 48 h,\nWattTime 5-minute, Electricity Maps hourly for 24 h);"
                " ENTSO-E prices are synthetic here.\n"
                "The simulator serves the GB average trace as WattTime's marginal signal too; real WattTime values"
                " are marginal (MOER) and never compared with averages.\n"
            )
    return 1 if failures else 0


def summarise(series: SignalSeries, duration: timedelta, now: datetime, deadline: datetime) -> dict[str, Any]:
    """What ``decide()`` (the release rule every grid-aware task runs) does with a job on this series."""
    from airflow_provider_gridaware.planning.decision import decide
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.planning.signal_grid import grid_for
    from airflow_provider_gridaware.signals.units import SignalKind

    is_price = series.kind is SignalKind.PRICE
    job = Job(
        duration=duration,
        earliest_start=now,
        deadline=deadline,
        zones=(series.zone,),
        carbon_weight=0.0 if is_price else 1.0,
        price_weight=1.0 if is_price else 0.0,
        job_id="demo",
    )
    grid = grid_for(
        job, carbon={} if is_price else {series.zone: series}, price={series.zone: series} if is_price else {}, now=now
    )
    decision = decide(job, grid, now)
    plan = decision.plan
    unit = series.unit
    best, at_once = plan.expected_signals.get(unit), plan.now_signals.get(unit)
    saving = (1 - best / at_once) * 100 if best is not None and at_once else None
    signal = f"{series.kind.value}{'/' + series.metric.value if series.metric else ''} {series.unit}"
    return {
        "signal": signal,
        "points": len(series),
        "issued_at": series.issued_at.isoformat() if series.issued_at else None,
        "decision": decision.action.value,
        "best_start": plan.start.astimezone(timezone.utc).isoformat(),
        "best_mean": round(best, 2) if best is not None else None,
        "now_mean": round(at_once, 2) if at_once is not None else None,
        "saving_percent": round(saving, 1) if saving is not None else None,
        "reason": decision.reason,
    }


def format_row(source: str, report: dict[str, Any]) -> str:
    def number(value: float | None) -> str:
        return f"{value:8.1f}" if value is not None else f"{'-':>8}"

    start = report["best_start"][:16].replace("T", " ")
    verb = "now" if report["decision"] == "release" else "wait"
    saving = f"{report['saving_percent']:6.1f}%" if report["saving_percent"] is not None else f"{'-':>7}"
    return (
        f"{source:<18} {report['signal']:<36} {report['points']:>6}  {verb:<5} {start:<17} "
        f"{number(report['best_mean'])} {number(report['now_mean'])} {saving}\n"
    )
