"""``gridaware relay``: serve the signed webhook relay (grid events by POST, stored before they are answered).

By default each ``/events/<conn id>`` is authenticated by the Airflow connection ``<conn id>`` (type
``gridaware_webhook``) read through the Task SDK: ``AIRFLOW_CONN_*`` variables and configured secrets
backends; with ``--connections-from-metadata-db`` also Airflow's metadata database (as the api-server reads
it), which needs ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``.
Standalone (no Airflow connections): name the connections with ``--conn-id`` and give the secret or token
through an environment variable (``--secret-env`` / ``--token-env``), never on the command line, where
``ps`` would show it.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gridaware.relay.app import RelayConfig


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "relay",
        help="serve the signed webhook relay for grid events",
        description="Accept grid events by POST on /events/<conn id> (gridaware event JSON) and /openadr3/<conn id> "
        "(OpenADR 3 notifications), authenticated by each gridaware_webhook connection (HMAC-SHA256 or bearer "
        "token); store them, then answer. GET /healthz checks the store.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8088, help="port (default 8088; 0 picks a free one)")
    parser.add_argument(
        "--conn-id",
        action="append",
        default=[],
        help="serve only this connection id (repeat for several; default: any gridaware_webhook connection)",
    )
    parser.add_argument(
        "--connections-from-metadata-db",
        action="store_true",
        help="also read connections from Airflow's metadata database (as the api-server does)",
    )
    parser.add_argument(
        "--settings-ttl-s",
        type=float,
        default=60.0,
        help="read each connection again after this many seconds (default 60: a rotated secret takes effect)",
    )
    parser.add_argument("--store-url", help="SQLAlchemy URL of the store (default: GRIDAWARE_STORE_URL or the config)")
    standalone = parser.add_argument_group("standalone (no Airflow connections; needs --conn-id)")
    secret = standalone.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", metavar="VAR", help="environment variable holding the HMAC shared secret")
    secret.add_argument("--token-env", metavar="VAR", help="environment variable holding the bearer token")
    standalone.add_argument("--tolerance-s", type=float, help="timestamp tolerance in seconds (default 300)")
    standalone.add_argument("--max-body-bytes", type=int, help="largest body accepted (default 262144)")
    standalone.add_argument(
        "--require-delivery-id", action="store_true", help="bearer mode: refuse requests without a delivery id"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run_relay)


def relay_config(args: argparse.Namespace) -> RelayConfig:
    """The relay's configuration from the command line (standalone or by Airflow connections)."""
    from airflow_provider_gridaware.relay.app import RelayConfig
    from airflow_provider_gridaware.relay.auth import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_S, RelayAuth
    from airflow_provider_gridaware.signals.errors import SourceConfigError

    store = None
    if args.store_url:
        from airflow_provider_gridaware.hooks.store import shared_event_store

        store = shared_event_store(args.store_url)
    variable = args.secret_env or args.token_env
    if variable is None:
        if args.tolerance_s is not None or args.max_body_bytes is not None or args.require_delivery_id:
            raise SourceConfigError(
                "--tolerance-s, --max-body-bytes and --require-delivery-id need --secret-env or --token-env"
            )
        return RelayConfig(
            store=store, conn_ids=frozenset(args.conn_id) if args.conn_id else None, settings_ttl_s=args.settings_ttl_s
        )
    if not args.conn_id:
        raise SourceConfigError("standalone mode (--secret-env / --token-env) needs at least one --conn-id")
    value = os.environ.get(variable)
    if not value:
        raise SourceConfigError(f"environment variable {variable} is not set or empty")
    try:
        auths = [
            RelayAuth(
                conn_id=conn_id,
                secret=value.encode() if args.secret_env else None,
                bearer_token=value if args.token_env else None,
                tolerance_s=args.tolerance_s if args.tolerance_s is not None else DEFAULT_TOLERANCE_S,
                max_body_bytes=args.max_body_bytes if args.max_body_bytes is not None else DEFAULT_MAX_BODY_BYTES,
                require_delivery_id=args.require_delivery_id,
            )
            for conn_id in args.conn_id
        ]
    except ValueError as exc:
        raise SourceConfigError(str(exc)) from None
    return RelayConfig.standalone(auths, store=store)


def run_relay(args: argparse.Namespace) -> int:
    import uvicorn

    if args.connections_from_metadata_db:
        # Airflow 3.3's Task SDK picks its secrets chain by this variable: "server" (api-server, scheduler)
        # includes the metadata database; a process without it reads env variables and secrets backends only.
        os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"

    from airflow_provider_gridaware.relay.app import create_relay_app, warm_up

    config = relay_config(args)
    warm_up(config)  # first: importing Airflow sets up its logging, which the lines below then amend
    # One stderr handler for the relay's lines (one per refusal) and uvicorn's, whatever Airflow set up.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("airflow_provider_gridaware", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(args.log_level.upper())
        logger.propagate = False
        logger.disabled = False
    app = create_relay_app(config)
    # What was loaded to start (Airflow, SQLAlchemy, pydantic) never becomes garbage: keeping it out of the
    # collector's full passes shortens the pauses every request waits through.
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0
