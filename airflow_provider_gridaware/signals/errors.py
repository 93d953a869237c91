"""Typed errors for grid signals: each names the source and what exactly was wrong.

Callers branch on the type (retry, fall back, fail the task); the message is for the log.
"""

from __future__ import annotations


class GridSignalError(Exception):
    """Base class for every failure to obtain a valid grid signal.

    :param message: what went wrong, for a human reading the task log.
    :param source: the signal source (``watttime``, ``entsoe`` ...) or connection id, when known.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"[{source}] {message}" if source else message)


class InvalidSignalError(GridSignalError, ValueError):
    """Values were parsed but are not a valid signal (NaN, negative carbon, overlapping intervals...)."""


class UnknownUnitError(InvalidSignalError):
    """The payload or configuration names a unit we do not know how to convert."""


class MalformedPayloadError(GridSignalError):
    """The response body could not be parsed into the documented shape (truncated, wrong type...)."""


class NoSignalDataError(GridSignalError):
    """The source answered correctly but with no data points for the request."""


class StaleSignalError(GridSignalError):
    """The newest data the source has is older than the caller accepts."""


class SourceConfigError(GridSignalError):
    """The connection or call is configured wrongly (missing token, unsupported zone format...)."""


class SourceAuthError(GridSignalError):
    """The source rejected our credentials (HTTP 401/403)."""


class SourceRequestError(GridSignalError):
    """The source rejected the request itself (HTTP 4xx other than auth and rate limits)."""

    def __init__(self, message: str, *, source: str | None = None, status: int | None = None) -> None:
        self.status = status
        super().__init__(message, source=source)


class SourceUnavailableError(GridSignalError):
    """The source could not be reached or kept failing after retries (timeouts, refused, 5xx)."""


class RateLimitedError(SourceUnavailableError):
    """The source keeps answering 429/503 and asks us to come back after ``retry_after`` seconds."""

    def __init__(self, message: str, *, source: str | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, source=source)


class CircuitOpenError(SourceUnavailableError):
    """Calls to this source are short-circuited after repeated failures, until ``reopens_at``."""

    def __init__(self, message: str, *, source: str | None = None, retry_in: float = 0.0) -> None:
        self.retry_in = retry_in
        super().__init__(message, source=source)
