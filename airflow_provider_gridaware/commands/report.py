"""``gridaware report --date YYYY-MM-DD --out DIR``: the daily carbon report, the same files the DAG writes.

Reads the day's records from the ledger in the provider's store (or a ledger file), the zones' actuals
from the forecast archive and the day's grid events from the event log, finalises the records with the
ledger's finaliser, and writes ``report.html`` (charts under ``charts/``), ``records.csv`` and
``summary.json`` into DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.slo import SustainabilitySlo


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


def _zone_conn(text: str) -> tuple[str, str]:
    zone, sep, conn_id = text.partition("=")
    if not sep or not zone.strip() or not conn_id.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected ZONE=CONN_ID, e.g. GB=gridaware_ukci_default")
    return zone.strip(), conn_id.strip()


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the daily carbon report of one UTC day",
        description="Write the daily carbon report of one UTC day (the same files the daily report DAG writes): "
        "report.html with charts, records.csv and summary.json.",
    )
    parser.add_argument("--date", type=_date, default=None, help="the UTC day, YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--out", required=True, type=Path, help="the folder to write the report into")
    parser.add_argument("--ledger-file", type=Path, help="read the records from this ledger file (.json/.jsonl)")
    parser.add_argument("--store", default=None, help="SQLAlchemy URL of the store (default: the provider's)")
    parser.add_argument("--dag-id", action="append", dest="dag_ids", help="only this DAG (repeatable)")
    parser.add_argument(
        "--actuals",
        action="append",
        type=_zone_conn,
        default=[],
        metavar="ZONE=CONN_ID",
        help="fetch the zone's actuals through this grid-signal connection first (repeatable)",
    )
    parser.add_argument(
        "--slos",
        metavar="JSON|FILE",
        help="the sustainability SLOs to report, a JSON list as SustainabilitySloOperator takes (inline or a file); "
        "default: [gridaware] slos; '[]' for none",
    )
    parser.add_argument(
        "--dag-tags",
        metavar="JSON|FILE",
        help='each DAG\'s tags for SLOs set per tag, {"dag_id": ["tag", ...]} (inline or a file); '
        "default: read from Airflow's metadata database when an SLO needs them",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the headline")
    parser.set_defaults(func=run_report)


def _json_or_file(text: str, option: str) -> str:
    """``text`` itself when it looks like JSON, else the contents of the file it names."""
    if text.lstrip().startswith(("[", "{")):
        return text
    try:
        return Path(text).expanduser().read_text("utf-8")
    except OSError as exc:
        raise CommandError(
            f"{option} {text}: not JSON and not a readable file ({exc.strerror or exc})", EXIT_USAGE
        ) from None


def report_slos(args: argparse.Namespace) -> tuple[list[SustainabilitySlo], dict[str, list[str]] | None, list[str]]:
    """The SLOs to report (``--slos``, else ``[gridaware] slos``), the DAG tags they need, and notes.

    :raises CommandError: SLOs or tags that cannot be read (named).
    """
    from airflow_provider_gridaware.hooks.store import _config
    from airflow_provider_gridaware.ledger.slo import SLOS_KEY, parse_slos

    where = "--slos" if args.slos else f"[gridaware] {SLOS_KEY}"
    try:
        slos = parse_slos(_json_or_file(args.slos, "--slos") if args.slos else _config(SLOS_KEY), where)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    notes: list[str] = []
    tags: dict[str, list[str]] | None = None
    if args.dag_tags:
        try:
            given = json.loads(_json_or_file(args.dag_tags, "--dag-tags"))
        except json.JSONDecodeError as exc:
            raise CommandError(f"--dag-tags is not JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(given, dict) or not all(isinstance(v, list) for v in given.values()):
            raise CommandError('--dag-tags must be a JSON object {"dag_id": ["tag", ...]}', EXIT_USAGE)
        tags = {str(dag): [str(t) for t in names] for dag, names in given.items()}
    elif any(slo.tags for slo in slos):
        try:
            from airflow_provider_gridaware.plugins.sources import dag_tags_from_db

            tags = dag_tags_from_db()
        except Exception as exc:  # the SLOs set per tag are then reported as not judged, saying why
            notes.append(f"DAG tags could not be read from Airflow's metadata database ({exc}): give --dag-tags.")
    return slos, tags, notes


def run_report(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.hooks.carbon_report import (
        fetch_day_actuals,
        ledger_finaliser,
        response_paused_work,
    )
    from airflow_provider_gridaware.hooks.ledger_reader import LedgerUnavailableError, open_ledger_reader
    from airflow_provider_gridaware.hooks.store import GridStoreHook, shared_archive, shared_event_store
    from airflow_provider_gridaware.ledger.file import LedgerFile, LedgerFileError
    from airflow_provider_gridaware.ledger.records import LedgerReader
    from airflow_provider_gridaware.reporting.collect import collect_daily_report
    from airflow_provider_gridaware.reporting.render import JSON_FILE, render_report_files, write_report_files
    from airflow_provider_gridaware.times import UTC

    day: date = args.date or (datetime.now(UTC) - timedelta(days=1)).date()
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder", EXIT_USAGE)
    url = args.store or GridStoreHook().get_url()
    ledger: LedgerReader
    try:
        ledger = LedgerFile(args.ledger_file) if args.ledger_file else open_ledger_reader(url)
    except (LedgerFileError, LedgerUnavailableError) as exc:
        raise CommandError(str(exc)) from None
    slos, dag_tags, slo_notes = report_slos(args)
    fetched, notes = fetch_day_actuals(dict(args.actuals), day) if args.actuals else ({}, [])
    notes = [*notes, *slo_notes]
    report = collect_daily_report(
        day,
        ledger,
        archive=shared_archive(url),
        event_store=shared_event_store(url),
        finaliser=ledger_finaliser(None if args.ledger_file else url),
        paused_work=response_paused_work(url),
        fetched_actuals=fetched,
        dag_ids=args.dag_ids,
        extra_notes=notes,
        slos=slos,
        dag_tags=dag_tags,
    )
    files = render_report_files(report)
    try:
        written = write_report_files(files, out)
    except OSError as exc:
        raise CommandError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    if args.json:
        summary = json.loads(files[JSON_FILE])
        summary["location"] = str(out.resolve())
        print(json.dumps(summary, indent=2))
    else:
        print(report.headline())
        for path in written:
            print(f"  {path}")
        print(f"open {(out / 'report.html').resolve().as_uri()}")
    sys.stdout.flush()
    return 0
