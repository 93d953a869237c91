"""A per-connection circuit breaker, so a dead source fails fast instead of stalling every task."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_provider_gridaware.signals.errors import CircuitOpenError


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures -> half-open after ``reset_seconds``.

    In half-open state one trial call goes through; success closes the circuit, failure re-opens it.

    :param name: what the breaker protects (a connection id), used in error messages.
    :param failure_threshold: consecutive failed calls (each after its own retries) that open it.
    :param reset_seconds: how long it stays open before a trial call is let through.
    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` if calls are currently short-circuited."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return
            if state == "half-open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            assert self._opened_at is not None
            retry_in = max(0.0, self.reset_seconds - (self._clock() - self._opened_at))
        raise CircuitOpenError(
            f"circuit open after {self.failure_threshold} consecutive failures; next trial in {retry_in:.0f}s",
            source=self.name,
            retry_in=retry_in,
        )

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def get_breaker(name: str, *, failure_threshold: int = 5, reset_seconds: float = 60.0) -> CircuitBreaker:
    """The process-wide breaker for ``name`` (one per connection id), created on first use."""
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(name)
        if breaker is None:
            breaker = CircuitBreaker(name, failure_threshold=failure_threshold, reset_seconds=reset_seconds)
            _BREAKERS[name] = breaker
        return breaker


def reset_breakers() -> None:
    """Forget every breaker (tests, and a CLI run that wants a clean slate)."""
    with _BREAKERS_LOCK:
        _BREAKERS.clear()
