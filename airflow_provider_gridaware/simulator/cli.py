"""``gridaware simulate serve``: run the local grid simulator until SIGINT or SIGTERM.

Once listening it prints its base URL and, with ``--ready-file PATH``, writes the URL to PATH (atomically),
so a test harness can start it with ``--port 0`` and read which port it got.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError

DESCRIPTION = "Replay grid traces through the real WattTime, Electricity Maps, GB Carbon Intensity and ENTSO-E APIs."


def add_parser(subparsers: Any) -> None:
    """Register ``simulate`` and its ``serve`` action.

    :param subparsers: the ``gridaware`` command's subparsers.
    """
    parser = subparsers.add_parser("simulate", help="run the local grid simulator", description=DESCRIPTION)
    actions = parser.add_subparsers(dest="simulate_action", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve",
        help="serve the simulated APIs until interrupted",
        description=DESCRIPTION
        + " APIs live under /watttime, /electricitymaps, /ukci and /entsoe; control under /_sim.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default: 0)")
    serve.add_argument(
        "--trace",
        action="append",
        default=[],
        metavar="FILE[:ZONE]",
        help="carbon-intensity CSV (time,zone,value | time,<zone>... | Time,Carbon Intensity) or a folder;"
        " repeatable; default: the bundled GB trace",
    )
    serve.add_argument(
        "--price-trace",
        metavar="FILE",
        help="day-ahead price CSV in EUR/MWh; default: SYNTHETIC prices derived from the carbon traces",
    )
    serve.add_argument("--anchor", choices=["now", "fixed"], default="now", help="shift traces to the present (now)")
    serve.add_argument("--now", metavar="ISO_TIME", help="simulated time at start (default: now / trace start)")
    serve.add_argument("--speedup", type=float, default=1.0, help="simulated seconds per wall second (default: 1)")
    serve.add_argument(
        "--forecast-error", type=float, default=0.05, help="forecast error at 24 h, fraction (default: 0.05)"
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the forecast errors (default: 0)")
    serve.add_argument("--token-ttl", type=float, default=1800.0, help="WattTime token lifetime, s (default: 1800)")
    serve.add_argument("--api-token", help="the only Electricity Maps / ENTSO-E token accepted (default: any)")
    serve.add_argument("--watttime-username", help="the only WattTime user accepted (default: any)")
    serve.add_argument("--watttime-password", help="that user's password (default: any)")
    serve.add_argument(
        "--entsoe-resolution", choices=["auto", "60", "15"], default="auto", help="ENTSO-E price resolution, minutes"
    )
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="TARGET:MODE[:key=value,...] or JSON, e.g. ukci:rate_limit:retry_after=120,count=2; repeatable",
    )
    serve.add_argument(
        "--clean-window-in",
        metavar="DURATION",
        help="open a clean window this long after start (e.g. 3m, 90s, 1h30m): every carbon and price signal"
        " of every API, actual and forecast, dips there (default: no clean window)",
    )
    serve.add_argument(
        "--clean-window-for", metavar="DURATION", default="30m", help="how long the clean window lasts (default: 30m)"
    )
    serve.add_argument(
        "--clean-window-depth",
        type=float,
        default=0.5,
        help="how far below the lowest recorded value the window opens, 0-1 (default: 0.5 = half)",
    )
    serve.add_argument("--ready-file", metavar="PATH", help="write the base URL here once listening")
    serve.set_defaults(func=serve_command)


def _config(args: argparse.Namespace) -> Any:
    from airflow_provider_gridaware.simulator.faults import parse_fault_spec
    from airflow_provider_gridaware.simulator.grid import SimulatorConfig
    from airflow_provider_gridaware.traces.trace import TraceSpec, parse_trace_time

    if not args.speedup > 0:
        raise CommandError(f"--speedup must be positive, not {args.speedup:g}", EXIT_USAGE)
    if not args.forecast_error >= 0:
        raise CommandError(f"--forecast-error must be 0 or more, not {args.forecast_error:g}", EXIT_USAGE)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, not {args.port}", EXIT_USAGE)
    traces = [TraceSpec.parse(text) for text in args.trace]
    for spec in traces:
        if not spec.path.exists():
            raise CommandError(f"--trace {spec}: no such file or folder", EXIT_USAGE)
    if args.price_trace and not Path(args.price_trace).is_file():
        raise CommandError(f"--price-trace {args.price_trace}: no such file", EXIT_USAGE)
    now: datetime | None = None
    if args.now:
        try:
            now = parse_trace_time(args.now)
        except ValueError:
            raise CommandError(f"--now {args.now!r} is not an ISO 8601 date and time", EXIT_USAGE) from None
    try:
        faults = tuple(parse_fault_spec(text) for text in args.fault)
    except ValueError as exc:
        raise CommandError(f"--fault: {exc}", EXIT_USAGE) from None
    clean_window_in = None if args.clean_window_in is None else _duration("--clean-window-in", args.clean_window_in)
    clean_window_for = _duration("--clean-window-for", args.clean_window_for)
    if not clean_window_for > timedelta(0):
        raise CommandError(f"--clean-window-for must be longer than 0, not {args.clean_window_for!r}", EXIT_USAGE)
    if not 0 < args.clean_window_depth <= 1:
        raise CommandError(
            f"--clean-window-depth must be more than 0 and at most 1, not {args.clean_window_depth:g}", EXIT_USAGE
        )
    return SimulatorConfig(
        traces=tuple(traces),
        price_trace=args.price_trace,
        anchor=args.anchor,
        speedup=args.speedup,
        now=now,
        forecast_error=args.forecast_error,
        seed=args.seed,
        token_ttl=args.token_ttl,
        api_token=args.api_token,
        watttime_username=args.watttime_username,
        watttime_password=args.watttime_password,
        entsoe_resolution=args.entsoe_resolution,
        faults=faults,
        clean_window_in=clean_window_in,
        clean_window_for=clean_window_for,
        clean_window_depth=args.clean_window_depth,
    )


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> timedelta:
    """``90s``, ``3m``, ``1h30m``, ``2.5m`` as a timedelta; a bare number is refused (which unit was meant?).

    :param text: hours ``h``, minutes ``m`` and seconds ``s``, in that order, each optional.
    :raises ValueError: naming the text and the accepted form.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration like 90s, 3m or 1h30m")
    hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _duration(option: str, text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}", EXIT_USAGE) from None


def _write_ready_file(path: str, url: str) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(url + "\n")
    tmp.replace(target)  # atomic: a reader never sees half a URL


def serve_command(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code.

    :param args: the parsed ``simulate serve`` options.
    """
    from airflow_provider_gridaware.signals.errors import GridSignalError
    from airflow_provider_gridaware.simulator.grid import SimulatedGrid
    from airflow_provider_gridaware.simulator.server import serve_in_thread

    config = _config(args)
    try:
        grid = SimulatedGrid(config)
    except GridSignalError as exc:
        raise CommandError(str(exc)) from None
    try:
        handle = serve_in_thread(grid, host=args.host, port=args.port)
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.ready_file:
            _write_ready_file(args.ready_file, handle.url)
        synthetic = [z for z, r in grid.prices.items() if r.synthetic]
        print(f"gridaware simulator listening on {handle.url}", flush=True)
        print(f"  carbon zones: {', '.join(grid.carbon_zones)}; clock {grid.clock.describe()}", flush=True)
        if synthetic:
            print(f"  SYNTHETIC prices for: {', '.join(synthetic)} ({grid.synthetic_formula.describe()})", flush=True)
        if grid.clean_window is not None:
            window = grid.clean_window.describe()
            print(
                f"  clean window {window['start']} to {window['end']}: every signal {window['depth']:.0%} below"
                " the lowest recorded value at its opening, recovering by its end",
                flush=True,
            )
        while not stop.wait(0.2):
            pass
    finally:
        handle.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("gridaware simulator stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m airflow_provider_gridaware.simulator.cli serve ...``: the same as ``gridaware simulate serve``.

    The subprocess form of :func:`~airflow_provider_gridaware.simulator.start_simulator` runs this, so it
    does not depend on the other ``gridaware`` subcommands importing cleanly.

    :param argv: arguments after ``simulate`` (default: ``sys.argv[1:]``).
    """
    import sys

    parser = argparse.ArgumentParser(prog="gridaware")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"gridaware simulate: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
