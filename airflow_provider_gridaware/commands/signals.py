"""``gridaware signals``: print the normalised series a connection's source returns."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError, time_argument

if TYPE_CHECKING:
    from airflow_provider_gridaware.hooks.base import GridSignalHook
    from airflow_provider_gridaware.signals.models import SignalSeries

KINDS = {"carbon": "carbon_intensity", "index": "carbon_index", "price": "price"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "signals",
        help="print a grid signal series read through an Airflow connection",
        description="Read one zone's carbon intensity or price through an Airflow connection of a gridaware_* "
        "type (from AIRFLOW_CONN_<ID> or the metadata database) and print the normalised series.",
    )
    parser.add_argument("--conn-id", required=True, help="Airflow connection id (type gridaware_*)")
    parser.add_argument("--zone", required=True, help="zone in the source's naming (GB, DE, CAISO_NORTH ...)")
    parser.add_argument("--kind", choices=sorted(KINDS), help="signal kind (default: the source's main signal)")
    parser.add_argument("--forecast", action="store_true", help="values ahead of now instead of actuals")
    parser.add_argument("--start", type=time_argument, help="range start, ISO 8601 (default: the source's)")
    parser.add_argument("--end", type=time_argument, help="range end, ISO 8601 (default: the source's)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.set_defaults(func=run)


def hook_for_connection(conn_id: str) -> GridSignalHook:
    """The provider's hook for ``conn_id``, chosen by the connection's type; user errors as CommandError."""
    from airflow_provider_gridaware.hooks import registry
    from airflow_provider_gridaware.signals.errors import SourceConfigError

    try:
        return registry.hook_for_connection(conn_id)
    except SourceConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # AirflowNotFoundException's module differs across Airflow versions
        if "isn't defined" in str(exc) or "not found" in str(exc).lower() or type(exc).__name__.endswith("NotFound"):
            raise CommandError(
                f"connection {conn_id!r} is not defined: set AIRFLOW_CONN_{conn_id.upper()} or create it "
                "in the Airflow UI",
                EXIT_USAGE,
            ) from None
        raise


def run(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery

    if args.start and args.end and args.end <= args.start:
        raise CommandError("--end must be after --start", EXIT_USAGE)
    hook = hook_for_connection(args.conn_id)
    kind = SignalKind(KINDS[args.kind]) if args.kind else None
    series = hook.get_signal(SignalQuery(args.zone, kind, args.forecast, args.start, args.end))
    write_series(series, as_json=args.json)
    return 0


def write_series(series: SignalSeries, *, as_json: bool, out: Any = None) -> None:
    out = out or sys.stdout
    if as_json:
        for record in series.to_records():
            out.write(json.dumps(record) + "\n")
        return
    issued = f", issued {series.issued_at:%Y-%m-%d %H:%MZ}" if series.issued_at else ""
    metric = f" {series.metric.value}" if series.metric else ""
    out.write(
        f"{series.source} {series.zone}: {len(series)} {series.series_type.value}{metric} "
        f"{series.kind.value} points in {series.unit}{issued}\n"
    )
    out.write(f"{'start (UTC)':<18} {'end (UTC)':<18} {'value':>10}\n")
    for point in series.points:
        out.write(f"{point.start:%Y-%m-%d %H:%M}   {point.end:%Y-%m-%d %H:%M}   {point.value:>10.2f}\n")
