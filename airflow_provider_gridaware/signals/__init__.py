"""Pure domain signal types (no Airflow import): series, units and errors."""

from __future__ import annotations

from airflow_provider_gridaware.signals.errors import (
    CircuitOpenError,
    GridSignalError,
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    RateLimitedError,
    SourceAuthError,
    SourceConfigError,
    SourceRequestError,
    SourceUnavailableError,
    StaleSignalError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.models import (
    SignalPoint,
    SignalSeries,
    build_series,
    ensure_utc,
    format_time,
)
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind

__all__ = [
    "CarbonMetric",
    "CircuitOpenError",
    "GridSignalError",
    "InvalidSignalError",
    "MalformedPayloadError",
    "NoSignalDataError",
    "RateLimitedError",
    "SeriesType",
    "SignalKind",
    "SignalPoint",
    "SignalSeries",
    "SourceAuthError",
    "SourceConfigError",
    "SourceRequestError",
    "SourceUnavailableError",
    "StaleSignalError",
    "UnknownUnitError",
    "build_series",
    "ensure_utc",
    "format_time",
]
