"""The ``gridaware`` command: read signals, run the local grid simulator, run the demo.

Errors a user can fix (bad arguments, unreachable source, bad payload) print one clear line and exit
non-zero; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime

# Subcommand modules register themselves here: name -> (module, function adding the parser).
# Each module exposes ``add_parser(subparsers) -> None`` and sets ``func`` on its parser; imports are
# deferred so ``gridaware --help`` stays fast.
SUBCOMMANDS: dict[str, str] = {
    "signals": "airflow_provider_gridaware.commands.signals",
    "simulate": "airflow_provider_gridaware.simulator.cli",
    "demo": "airflow_provider_gridaware.commands.demo",
    "backtest": "airflow_provider_gridaware.commands.backtest",
    "openadr2b": "airflow_provider_gridaware.commands.openadr2b",
    "events": "airflow_provider_gridaware.commands.events",
    "relay": "airflow_provider_gridaware.commands.relay",
    "report": "airflow_provider_gridaware.commands.report",
    "flex": "airflow_provider_gridaware.commands.flex",
    "ledger": "airflow_provider_gridaware.commands.ledger",
}

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def time_argument(text: str, *, naive_is_utc: bool = False) -> datetime:
    """An argparse ``type=`` for ISO 8601 times, returned in UTC; naive times are refused unless ``naive_is_utc``."""
    from airflow_provider_gridaware.times import parse_time

    try:
        return parse_time(text, what="time", naive="utc" if naive_is_utc else "refuse")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="gridaware", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except CommandError as exc:
        if args.debug:
            raise
        print(f"gridaware {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except Exception as exc:
        from airflow_provider_gridaware.signals.errors import GridSignalError

        if args.debug or not isinstance(exc, GridSignalError):
            raise
        print(f"gridaware {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
