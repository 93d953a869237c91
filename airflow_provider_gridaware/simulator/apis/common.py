"""Helpers shared by the simulated APIs: responses, query parsing, and the data faults (stale, empty, nan)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response

from airflow_provider_gridaware.simulator.faults import FaultMode, FaultSpec
from airflow_provider_gridaware.traces.trace import RawPoint, from_epoch, parse_trace_time, to_epoch

if TYPE_CHECKING:
    from airflow_provider_gridaware.simulator.grid import SimulatedGrid

UTC = timezone.utc
FAULT_SCOPE_KEY = "gridaware.fault"  # the fault middleware leaves the data fault for the endpoint here


class BadRequest(Exception):
    """A query the real API would refuse; each API renders it in its own error shape.

    :param message: what is wrong, as the API would say it.
    :param status: the HTTP status to answer.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def grid_of(request: Request) -> SimulatedGrid:
    """The simulated grid behind the app serving ``request``."""
    grid: SimulatedGrid = request.app.state.grid
    return grid


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """JSON that may hold NaN (the ``nan`` fault), which FastAPI's own JSON response refuses to encode."""
    body = json.dumps(payload, allow_nan=True, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json", headers=dict(headers or {}))


def data_fault(request: Request) -> FaultSpec | None:
    """The ``stale``, ``empty`` or ``nan`` fault hitting this request, if any."""
    fault = request.scope.get(FAULT_SCOPE_KEY)
    return fault if isinstance(fault, FaultSpec) else None


def is_mode(fault: FaultSpec | None, mode: FaultMode) -> bool:
    return fault is not None and fault.mode is mode


def stale_window(
    start: datetime, end: datetime, now: datetime, fault: FaultSpec | None
) -> tuple[datetime, datetime, timedelta]:
    """Under a ``stale`` fault, ``[start, end)`` moved back so it ends ``stale_hours`` before now.

    Returns the window and the shift applied (zero when not stale, or already old enough).
    """
    if not is_mode(fault, FaultMode.STALE):
        return start, end, timedelta(0)
    assert fault is not None
    newest = now - timedelta(hours=fault.stale_hours)
    if end <= newest:
        return start, end, timedelta(0)
    shift = end - newest
    return start - shift, end - shift, shift


def shape_values(points: list[RawPoint], fault: FaultSpec | None) -> list[RawPoint]:
    """Points as the ``empty`` (none) or ``nan`` (every value NaN) fault wants them; unchanged otherwise."""
    if is_mode(fault, FaultMode.EMPTY):
        return []
    if is_mode(fault, FaultMode.NAN):
        return [(s, e, math.nan) for s, e, _ in points]
    return points


def floor_to(value: datetime, step: timedelta) -> datetime:
    """``value`` rounded down to a multiple of ``step`` since the epoch."""
    width = step.total_seconds()
    return from_epoch(math.floor(to_epoch(value) / width) * width)


def parse_time_param(value: str | None, name: str) -> datetime:
    """A query or path time: ISO 8601, ``Z`` or offset, naive read as UTC.

    :raises BadRequest: missing or not a time.
    """
    if value is None or not value.strip():
        raise BadRequest(f"missing required parameter {name!r}")
    try:
        return parse_trace_time(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not an ISO 8601 date and time") from None


def parse_float_param(value: str | None, name: str, default: float | None = None) -> float:
    """A numeric query parameter, or ``default`` when absent.

    :raises BadRequest: missing without a default, or not a number.
    """
    if value is None or value == "":
        if default is None:
            raise BadRequest(f"missing required parameter {name!r}")
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name}={value!r} is not a finite number")
    return number


def round_value(value: float, digits: int) -> float:
    """Rounded for the payload; NaN stays NaN (the ``nan`` fault)."""
    return value if math.isnan(value) else round(value, digits)


def int_value(value: float) -> int | float:
    """An integer as the API sends it (GB and Electricity Maps send whole numbers); NaN stays NaN."""
    return value if math.isnan(value) else round(value)
