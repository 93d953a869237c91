"""``gridaware events``: print a demand-response connection's events, normalised, as they arrive.

An operator checks a connection with it: one poll (recorded in the store like any other), every event
printed in one line or as JSON; ``--follow`` keeps polling at the party's rate and prints each new state
from the store, including states the relay or another poller stored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.grid_event import GridEvent


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="print a demand-response connection's events, normalised",
        description="Poll a demand-response connection (OpenADR 2.0b, OpenADR 3, IEEE 2030.5, webhook) once, "
        "record its events in the provider's store and print them; --follow keeps printing new states as they "
        "are stored. Without --conn-id, print what the store holds.",
    )
    parser.add_argument("--conn-id", help="Airflow connection id of a gridaware_openadr2b/openadr3/... connection")
    parser.add_argument("--follow", action="store_true", help="keep polling and print each new state")
    parser.add_argument("--json", action="store_true", help="one JSON document per line")
    parser.add_argument("--all", action="store_true", help="also print completed and cancelled events")
    parser.add_argument(
        "--interval", type=float, default=None, help="seconds between polls with --follow (default: the party's)"
    )
    parser.add_argument("--store", default=None, help="SQLAlchemy URL of the store (default: the provider's)")
    parser.set_defaults(func=run_events)


def _print(event: GridEvent, *, as_json: bool, outcome: str | None = None) -> None:
    if as_json:
        document = event.model_dump(mode="json")
        if outcome:
            document["outcome"] = outcome
        print(json.dumps(document, sort_keys=True))
    else:
        print(f"{outcome + ': ' if outcome else ''}{event.describe()}")
    sys.stdout.flush()


def run_events(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.hooks.grid_event_base import event_hook_for
    from airflow_provider_gridaware.hooks.store import GridStoreHook, shared_event_store
    from airflow_provider_gridaware.signals.errors import GridSignalError, SourceConfigError

    if args.interval is not None and args.interval <= 0:
        raise CommandError(f"--interval must be positive, not {args.interval}", EXIT_USAGE)
    store = shared_event_store(args.store or GridStoreHook().get_url())
    hook = None
    if args.conn_id:
        try:
            hook = event_hook_for(args.conn_id)
        except SourceConfigError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if hook is not None:
        try:
            received = hook.receive(store)
        except GridSignalError as exc:
            raise CommandError(f"{hook.source}: {exc}") from None
        for item in received:
            _print(item.event, as_json=args.json, outcome=item.recorded.outcome.value)
        if not received and not args.json:
            print(f"{hook.source}: no events")
    else:
        for event in store.current(include_final=args.all):
            _print(event, as_json=args.json)
    if not args.follow:
        return 0
    cursor = store.last_seq()  # what was printed above is not printed again
    source = hook.source if hook is not None else None
    interval = args.interval or (hook.poll_interval() if hook is not None else 1.0)
    next_poll = time.monotonic() + interval
    while True:
        if hook is not None and time.monotonic() >= next_poll:
            try:
                hook.receive(store)
            except GridSignalError as exc:
                print(f"{hook.source}: poll failed, will retry: {exc}", file=sys.stderr)
            next_poll = time.monotonic() + interval
        for stored in store.since(cursor):
            cursor = stored.seq
            if source is None or stored.event.source == source:
                _print(stored.event, as_json=args.json, outcome="stored")
        time.sleep(min(1.0, max(0.0, next_poll - time.monotonic())) if hook is not None else 1.0)
