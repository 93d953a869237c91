"""The simulator's FastAPI app: the four simulated APIs under their prefixes, faults, and the ``/_sim`` control API.

Control API (no auth: the simulator listens on loopback for tests and demos):

- ``GET /_sim/state``: clock, zones, traces (synthetic ones flagged), faults, request counts per API and per
  path (times in the path counted as ``{time}``);
- ``POST /_sim/faults``: add a fault (a JSON object or a list of them, fields of
  :class:`~airflow_provider_gridaware.simulator.faults.FaultSpec`);
- ``DELETE /_sim/faults[?target=...]``: clear faults;
- ``POST /_sim/clock``: ``{"now": ISO time?, "speedup": number?, "advance_seconds": number?}``;
- ``DELETE /_sim/tokens``: revoke every WattTime token (to test re-login without waiting for expiry).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_gridaware.simulator.apis import electricity_maps, entsoe, ukci, watttime
from airflow_provider_gridaware.simulator.apis.common import FAULT_SCOPE_KEY, grid_of, json_response
from airflow_provider_gridaware.simulator.faults import (
    TARGETS,
    FaultMode,
    FaultSpec,
    describe_validation_error,
)
from airflow_provider_gridaware.simulator.grid import SimulatedGrid
from airflow_provider_gridaware.traces.trace import parse_trace_time

DEFAULT_TIMEOUT_DELAY = 30.0
DEFAULT_RETRY_AFTER = 60.0
_DATA_FAULTS = (FaultMode.STALE, FaultMode.EMPTY, FaultMode.NAN)


class FaultMiddleware:
    """Counts requests per API and applies the first matching fault before (or after) the endpoint runs.

    :param app: the wrapped ASGI app.
    :param grid: holds the fault book and the request counters.
    """

    def __init__(self, app: ASGIApp, grid: SimulatedGrid) -> None:
        self.app = app
        self.grid = grid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        target = path.split("/", 2)[1] if path.count("/") >= 1 else ""
        if target not in TARGETS:
            await self.app(scope, receive, send)
            return
        self.grid.count_request(target, path)
        fault = self.grid.faults.take(target, path[len(target) + 1 :] or "/")
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.mode is FaultMode.TIMEOUT:
            delay = DEFAULT_TIMEOUT_DELAY if fault.delay is None else fault.delay
            replay = await _hang(receive, delay)
            if replay is not None:
                await self.app(scope, replay, send)
        elif fault.mode is FaultMode.ERROR:
            await _send_simple(send, fault.http_status, b'{"error": "simulated fault"}', {})
        elif fault.mode is FaultMode.RATE_LIMIT:
            retry_after = DEFAULT_RETRY_AFTER if fault.retry_after is None else fault.retry_after
            body = b'{"error": "rate limit exceeded (simulated)"}'
            await _send_simple(send, fault.http_status, body, {"retry-after": f"{retry_after:g}"})
        elif fault.mode is FaultMode.MALFORMED:
            await self.app(scope, receive, _Truncating(send))
        else:
            scope[FAULT_SCOPE_KEY] = fault  # stale, empty, nan: the endpoint shapes its data
            await self.app(scope, receive, send)


async def _hang(receive: Receive, delay: float) -> Receive | None:
    """Wait ``delay`` seconds, or until the client gives up; returns a ``receive`` to answer with, or ``None``."""
    consumed: list[Message] = []
    deadline = asyncio.get_running_loop().time() + delay
    try:
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                break
            if message["type"] == "http.disconnect":
                return None  # the client timed out and left: nobody to answer
            consumed.append(message)  # the request body: kept for the endpoint
    except asyncio.CancelledError:
        return None  # the server is shutting down: drop the hanging request quietly

    async def replay() -> Message:
        return consumed.pop(0) if consumed else await receive()

    return replay


async def _send_simple(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Truncating:
    """An ASGI ``send`` that holds the response back and sends only the first half of its body."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(self.chunks)
        cut = body[: max(0, min(len(body) // 2, len(body) - 1))]
        assert self.start is not None
        headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": cut, "more_body": False})


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    return json.loads(raw)


def _add_control_routes(app: FastAPI) -> None:
    @app.get("/_sim/state")
    def state(request: Request) -> Response:
        return json_response(grid_of(request).state())

    @app.post("/_sim/faults")
    async def add_faults(request: Request) -> Response:
        grid = grid_of(request)
        try:
            body = await _json_body(request)
            items = body if isinstance(body, list) else [body]
            faults = [FaultSpec.model_validate(item) for item in items]
        except ValueError as exc:
            message = describe_validation_error(exc) if isinstance(exc, ValidationError) else f"invalid JSON: {exc}"
            return json_response({"error": message}, 422)
        for fault in faults:
            grid.faults.add(fault)
        return json_response({"faults": grid.faults.describe()})

    @app.delete("/_sim/faults")
    def clear_faults(request: Request) -> Response:
        grid = grid_of(request)
        removed = grid.faults.clear(request.query_params.get("target"))
        return json_response({"removed": removed, "faults": grid.faults.describe()})

    @app.post("/_sim/clock")
    async def set_clock(request: Request) -> Response:
        grid = grid_of(request)
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            unknown = set(body) - {"now", "speedup", "advance_seconds"}
            if unknown:
                raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
            now = parse_trace_time(str(body["now"])) if body.get("now") is not None else None
            speedup = float(body["speedup"]) if body.get("speedup") is not None else None
            grid.clock.set(now=now, speedup=speedup)
            if body.get("advance_seconds") is not None:
                grid.clock.advance(timedelta(seconds=float(body["advance_seconds"])))
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 422)
        return json_response({**grid.clock.describe(), "anchor": grid.anchor.value})

    @app.delete("/_sim/tokens")
    def revoke_tokens(request: Request) -> Response:
        grid = grid_of(request)
        revoked = len(grid.tokens)
        grid.tokens.clear()
        return json_response({"revoked": revoked})


def create_app(grid: SimulatedGrid) -> FastAPI:
    """The simulator app serving ``grid``.

    :param grid: the simulated grid every route reads.
    """
    app = FastAPI(title="gridaware grid simulator", docs_url="/_sim/docs", openapi_url="/_sim/openapi.json")
    app.state.grid = grid
    for module in (watttime, electricity_maps, ukci, entsoe):
        app.include_router(module.router)
    _add_control_routes(app)
    app.add_middleware(FaultMiddleware, grid=grid)
    return app
