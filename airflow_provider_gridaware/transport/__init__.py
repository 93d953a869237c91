"""HTTP transport shared by every hook: timeouts, retries with backoff, Retry-After, circuit breaker.

Pure Python (no Airflow import). ``requests`` and ``httpx`` are imported only when a request is
made, so importing a hook module in a DAG file stays cheap.
"""

from __future__ import annotations

from airflow_provider_gridaware.transport.breaker import CircuitBreaker, get_breaker, reset_breakers
from airflow_provider_gridaware.transport.http import HttpRequest, HttpResponse, HttpTransport, RetryPolicy

__all__ = [
    "CircuitBreaker",
    "HttpRequest",
    "HttpResponse",
    "HttpTransport",
    "RetryPolicy",
    "get_breaker",
    "reset_breakers",
]
