"""``gridaware ledger``: print the carbon ledger's records (one line each, or JSON) and their totals.

    gridaware ledger --since 2026-06-01                     # runs started since then (UTC), until now
    gridaware ledger --since 24h --dag-id train --json      # the last day of one DAG, as JSON lines
    gridaware ledger --since 24h --reconcile                # which tries Airflow ran have no record (exit 1)

Totals are summed per intensity kind (average and marginal never together) and cost per currency.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerRecord
    from airflow_provider_gridaware.store.ledger import LedgerStore

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_argument(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: an ISO 8601 time or date (UTC when no offset), or an age like ``24h``, ``7d``.

    :param text: the argument.
    :param now: the current time (default: the provider's clock, ``GRIDAWARE_CLOCK``).
    """
    from airflow_provider_gridaware.times import current_clock, parse_time

    match = _AGO.match(text.strip())
    if match:
        age = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        return (now or current_clock().now()) - age
    try:
        return parse_time(text.strip(), what="time", naive="utc")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (give an ISO time or date, or an age like 24h, 7d)") from None


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ledger",
        help="print the carbon ledger: one record per executed try of a grid-aware task",
        description="Print the carbon ledger's records whose run started in [--since, --until), with energy, "
        "intensity, emissions, cost and the saving against starting when the wait began; then the totals.",
    )
    parser.add_argument(
        "--since", required=True, type=since_argument, help="ISO time or date (UTC), or an age: 24h, 7d"
    )
    parser.add_argument("--until", type=since_argument, default=None, help="exclusive end (default: now)")
    parser.add_argument("--dag-id", action="append", dest="dag_ids", help="only this DAG (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON document per record, then one of totals")
    parser.add_argument("--store", default=None, help="SQLAlchemy URL of the store (default: the provider's)")
    parser.add_argument(
        "--reconcile",
        action="store_true",
        help="instead: list the tries of grid-aware tasks that ended in the period (Airflow's REST API) and "
        "say which have no ledger record; exit 1 if a succeeded one has none",
    )
    parser.add_argument(
        "--airflow-conn-id",
        default=None,
        help="with --reconcile: the connection to Airflow's api-server (URL, user, password); "
        "default gridaware_airflow_api",
    )
    parser.add_argument(
        "--operator",
        action="append",
        dest="operators",
        default=None,
        help="with --reconcile: another task type that writes records (a subclass of ours), repeatable",
    )
    parser.set_defaults(func=run_ledger)


def run_ledger(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.hooks.store import GridStoreHook, shared_ledger_store
    from airflow_provider_gridaware.ledger.codec import record_to_dict
    from airflow_provider_gridaware.times import current_clock

    until = args.until or current_clock().now()
    if until <= args.since:
        raise CommandError(f"--until {until.isoformat()} is not after --since {args.since.isoformat()}", EXIT_USAGE)
    store = shared_ledger_store(args.store or GridStoreHook().get_url())
    if args.reconcile:
        return run_reconcile(args, store, until)
    records = store.records(args.since, until, dag_ids=args.dag_ids)
    summary = totals(records)
    if args.json:
        for record in records:
            print(json.dumps(record_to_dict(record), sort_keys=True))
        print(json.dumps({"totals": summary}, sort_keys=True))
    else:
        for record in records:
            print(describe_line(record))
        print(describe_totals(summary, len(records)))
    sys.stdout.flush()
    return 0


def run_reconcile(args: argparse.Namespace, store: LedgerStore, until: datetime) -> int:
    """``--reconcile``: the tries Airflow ran against the ledger's keys; 1 if a succeeded try has no record."""
    from airflow_provider_gridaware.hooks.airflow_api import AirflowApiError, AirflowApiHook
    from airflow_provider_gridaware.ledger.reconcile import LEDGER_OPERATORS, reconcile

    hook = AirflowApiHook(args.airflow_conn_id or AirflowApiHook.default_conn_name)
    operators = LEDGER_OPERATORS | set(args.operators or ())
    try:
        tries = hook.ended_tries(args.since, until, dag_ids=args.dag_ids, operators=operators)
    except AirflowApiError as exc:
        raise CommandError(f"reading the tries from Airflow failed: {exc}") from None
    finally:
        hook.close()
    result = reconcile(tries, store.keys(t.key for t in tries))
    for label, found in (("no record", result.missing), ("failed, no record", result.failed_unrecorded)):
        for t in found:
            key = t.key
            task = f"{key.dag_id}/{key.task_id}" + (f"[{key.map_index}]" if key.map_index >= 0 else "")
            print(f"{label}: {task} try {key.try_number} ({key.run_id}), {t.operator}")
    print(result.describe())
    sys.stdout.flush()
    return 0 if result.complete else 1


def totals(records: Sequence[LedgerRecord]) -> dict[str, Any]:
    """Sums over ``records``: energy; emissions and savings per intensity kind; cost per currency.

    :param records: ledger records.
    """
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: {"tries": 0, "emissions_kg": 0.0, "saved_kg": 0.0})
    cost: dict[str, dict[str, float]] = defaultdict(lambda: {"cost": 0.0, "saved": 0.0})
    energy = 0.0
    estimated = unknown = 0
    for record in records:
        a = record.actual
        if a.energy_kwh is None:
            unknown += 1
        else:
            energy += a.energy_kwh
            estimated += record.energy_method.value == "estimated"
        if a.emissions_g is not None and a.intensity_kind:
            kind = by_kind[a.intensity_kind]
            kind["tries"] += 1
            kind["emissions_kg"] += a.emissions_g / 1000
            kind["saved_kg"] += (record.saved_g or 0.0) / 1000
        if a.cost is not None and a.currency:
            cost[a.currency]["cost"] += a.cost
            cost[a.currency]["saved"] += record.saved_cost or 0.0
    return {
        "tries": len(records),
        "energy_kwh": energy,
        "tries_energy_estimated": estimated,
        "tries_energy_unknown": unknown,
        "carbon": {kind: dict(values) for kind, values in by_kind.items()},
        "cost": {currency: dict(values) for currency, values in cost.items()},
        "not_finalised": sum(1 for r in records if not r.finalised),
        "missed_deadlines": sum(1 for r in records if r.missed_deadline),
    }


def describe_line(record: LedgerRecord) -> str:
    """One record in one line."""
    from airflow_provider_gridaware.times import format_time

    key, a = record.key, record.actual
    task = f"{key.dag_id}/{key.task_id}" + (f"[{key.map_index}]" if key.map_index >= 0 else "")
    parts = [f"{format_time(a.start)}  {task} try {key.try_number} ({key.run_id})  {record.state}  {a.zone}"]
    if record.placement:
        parts.append(f"on {record.placement}")
    parts.append(
        f"{a.energy_kwh:.3f} kWh {record.energy_method.value}" if a.energy_kwh is not None else "energy unknown"
    )
    if a.intensity_g_per_kwh is not None:
        parts.append(f"{a.intensity_g_per_kwh:.0f} g/kWh {a.intensity_kind}")
    if a.emissions_g is not None:
        parts.append(f"{a.emissions_g / 1000:.3f} kgCO2eq")
    if record.saved_g is not None:
        parts.append(f"saved {record.saved_g / 1000:.3f} kgCO2eq")
    if a.cost is not None:
        parts.append(f"{a.cost:.2f} {a.currency}")
    parts.append(
        f"waited {record.waited_s / 60:.0f} min, {record.basis.value}{'' if record.finalised else ' (not final)'}"
    )
    return "  ".join(parts)


def describe_totals(summary: dict[str, Any], count: int) -> str:
    """The totals in a few lines."""
    if count == 0:
        return "no ledger records in that period"
    lines = [
        f"{count} tries, {summary['energy_kwh']:.3f} kWh"
        + (f" ({summary['tries_energy_estimated']} estimated)" if summary["tries_energy_estimated"] else "")
        + (f", {summary['tries_energy_unknown']} without energy" if summary["tries_energy_unknown"] else "")
    ]
    for kind, values in sorted(summary["carbon"].items()):
        lines.append(
            f"{kind} intensity: {values['emissions_kg']:.3f} kgCO2eq over {values['tries']:.0f} tries, saved "
            f"{values['saved_kg']:.3f} kgCO2eq against starting when the wait began"
        )
    for currency, values in sorted(summary["cost"].items()):
        lines.append(f"cost: {values['cost']:.2f} {currency}, saved {values['saved']:.2f} {currency}")
    if summary["not_finalised"]:
        lines.append(f"{summary['not_finalised']} tries not finalised with actuals yet")
    if summary["missed_deadlines"]:
        lines.append(f"{summary['missed_deadlines']} tries ended after their deadline")
    return "\n".join(lines)
