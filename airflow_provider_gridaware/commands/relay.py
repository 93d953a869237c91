"""``gridaware relay``: serve the signed webhook relay (grid events by POST, stored before they are answered)."""

from __future__ import annotations

import argparse
from typing import Any


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
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run_relay)


def run_relay(args: argparse.Namespace) -> int:
    import uvicorn

    from airflow_provider_gridaware.relay.app import create_relay_app

    uvicorn.run(create_relay_app(), host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
