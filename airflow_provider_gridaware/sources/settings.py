"""Connection settings as a plain value object, so adapters never touch Airflow's Connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_gridaware.signals.errors import SourceConfigError
from airflow_provider_gridaware.transport.http import RetryPolicy

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SourceSettings:
    """Everything an adapter needs from a connection.

    :param conn_id: the connection id (names the circuit breaker and error messages).
    :param base_url: scheme, host, port and path prefix, without a trailing slash.
    :param login: user name or client id.
    :param password: password, API token or client secret.
    :param extra: the connection's extra fields.
    """

    conn_id: str
    base_url: str
    login: str | None = None
    password: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        return str(value)

    def get_float(self, key: str, default: float) -> float:
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SourceConfigError(
                f"extra field {key!r} must be a number, not {value!r}", source=self.conn_id
            ) from None
        if number <= 0:
            raise SourceConfigError(f"extra field {key!r} must be positive, not {value!r}", source=self.conn_id)
        return number

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.extra.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise SourceConfigError(f"extra field {key!r} must be true or false, not {value!r}", source=self.conn_id)

    @property
    def verify(self) -> bool | str:
        """TLS verification: on by default; ``verify_ssl`` may be false or a CA bundle path."""
        value = self.extra.get("verify_ssl")
        if isinstance(value, str) and value.strip().lower() not in _TRUE | _FALSE and value.strip():
            return value.strip()
        return self.get_bool("verify_ssl", True)

    @property
    def connect_timeout(self) -> float:
        return self.get_float("connect_timeout", 5.0)

    @property
    def read_timeout(self) -> float:
        return self.get_float("timeout", 30.0)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=int(self.get_float("max_attempts", 4)),
            backoff_base=self.get_float("backoff_seconds", 0.5),
            max_retry_after=self.get_float("max_retry_after", 60.0),
            total_seconds=self.get_float("retry_budget_seconds", 120.0),
        )

    @property
    def circuit_failure_threshold(self) -> int:
        return int(self.get_float("circuit_failure_threshold", 5))

    @property
    def circuit_reset_seconds(self) -> float:
        return self.get_float("circuit_reset_seconds", 60.0)

    def require_password(self, what: str) -> str:
        if not self.password:
            raise SourceConfigError(f"the connection has no {what} (Password field)", source=self.conn_id)
        return self.password


def build_base_url(host: str | None, schema: str | None, port: int | None, default: str) -> str:
    """Base URL from a connection's host field: a full URL as given, or ``https://host[:port]``."""
    if not host:
        return default.rstrip("/")
    host = host.strip()
    if "://" in host:
        return host.rstrip("/")
    scheme = schema if schema in ("http", "https") else "https"
    return f"{scheme}://{host}{f':{port}' if port else ''}".rstrip("/")
