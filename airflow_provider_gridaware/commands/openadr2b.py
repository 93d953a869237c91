"""``gridaware openadr2b register``: register this VEN with an OpenADR 2.0b VTN once, keep its venID in the store."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_provider_gridaware.cli import EXIT_USAGE, CommandError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "openadr2b",
        help="OpenADR 2.0b VEN: register with a VTN",
        description="OpenADR 2.0b VEN commands for a gridaware_openadr2b connection.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    register = actions.add_parser(
        "register",
        help="register this VEN with the VTN and keep its venID and registrationID in the store",
        description="Send oadrQueryRegistration and oadrCreatePartyRegistration to the connection's VTN and keep "
        "the venID and registrationID it assigns in the provider's store, where every poll reads them. Safe to "
        "repeat.",
    )
    register.add_argument("--conn-id", required=True, help="Airflow connection id (type gridaware_openadr2b)")
    register.set_defaults(func=run_register)


def run_register(args: argparse.Namespace) -> int:
    from airflow_provider_gridaware.hooks.grid_event_base import event_hook_for
    from airflow_provider_gridaware.hooks.openadr2b import OpenADR2bHook
    from airflow_provider_gridaware.signals.errors import SourceConfigError

    try:
        hook = event_hook_for(args.conn_id)
    except SourceConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    if not isinstance(hook, OpenADR2bHook):
        raise CommandError(f"connection {args.conn_id!r} is not of type gridaware_openadr2b", EXIT_USAGE)
    registration = hook.register()
    poll = f", poll every {registration.poll_interval:g} s" if registration.poll_interval else ""
    print(
        f"{hook.source}: registered as venID {registration.ven_id}, registrationID {registration.registration_id}"
        f"{poll} (kept in the store)"
    )
    return 0
