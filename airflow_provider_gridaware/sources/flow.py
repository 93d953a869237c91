"""Drive a sans-I/O source flow over a transport, synchronously or asynchronously."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.signals.units import SignalKind

if TYPE_CHECKING:
    from airflow_provider_gridaware.transport.http import HttpRequest, HttpResponse, HttpTransport

T = TypeVar("T")
Flow = Generator["HttpRequest", "HttpResponse", T]


@dataclass(frozen=True)
class SignalQuery:
    """What a caller wants from a source, the same shape for every hook.

    :param zone: the zone in the source's own naming.
    :param kind: carbon intensity, carbon index or price; ``None`` means the source's main signal.
    :param forecast: ``True`` for values ahead of now (forecast or firm day-ahead), ``False`` for actuals.
    :param start: start of the wanted range (UTC); the source's default when ``None``.
    :param end: end of the wanted range (UTC); the source's default when ``None``.
    """

    zone: str
    kind: SignalKind | None = None
    forecast: bool = True
    start: datetime | None = None
    end: datetime | None = None


def run_flow(flow: Flow[T], transport: HttpTransport) -> T:
    """Run ``flow`` with blocking requests. Transport errors are thrown into the flow first."""
    try:
        request = next(flow)
        while True:
            try:
                response = transport.request(request)
            except GridSignalError as exc:
                request = flow.throw(exc)
            else:
                request = flow.send(response)
    except StopIteration as stop:
        return stop.value


async def arun_flow(flow: Flow[T], transport: HttpTransport) -> T:
    """Async twin of :func:`run_flow`, for triggers."""
    try:
        request = next(flow)
        while True:
            try:
                response = await transport.arequest(request)
            except GridSignalError as exc:
                request = flow.throw(exc)
            else:
                request = flow.send(response)
    except StopIteration as stop:
        return stop.value
