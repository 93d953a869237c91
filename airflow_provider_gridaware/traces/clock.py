"""Simulated time: a clock that may run faster than the wall clock and can be set, so tests never sleep.

``sim_now = origin + (wall_now - wall_origin) * speedup``. Setting the time or the speed-up re-bases the
clock, so simulated time never jumps unless someone asks it to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from airflow_provider_gridaware.signals.models import ensure_utc, format_time

UTC = timezone.utc


class SimClock:
    """A settable clock whose time runs ``speedup`` times faster than the wall clock.

    Thread-safe: the simulator's request handlers read it while a test sets it.

    :param now: simulated time at creation (default: the real current time).
    :param speedup: simulated seconds per wall second; must be positive.
    :param wall: the wall clock in seconds (monotonic); injectable so tests control elapsed time.
    """

    def __init__(
        self,
        *,
        now: datetime | None = None,
        speedup: float = 1.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check_speedup(speedup)
        self._wall = wall
        self._lock = threading.Lock()
        self._origin = ensure_utc(now, what="clock time") if now is not None else datetime.now(UTC)
        self._wall_origin = wall()
        self._speedup = float(speedup)

    @staticmethod
    def _check_speedup(speedup: float) -> None:
        if not speedup > 0 or speedup == float("inf"):
            raise ValueError(f"speed-up must be a positive finite number, not {speedup!r}")

    @property
    def speedup(self) -> float:
        return self._speedup

    def now(self) -> datetime:
        """The current simulated time (aware, UTC)."""
        with self._lock:
            elapsed = (self._wall() - self._wall_origin) * self._speedup
            return self._origin + timedelta(seconds=elapsed)

    __call__ = now  # a SimClock is also a plain ``() -> datetime`` clock

    def set(self, *, now: datetime | None = None, speedup: float | None = None) -> datetime:
        """Jump to ``now`` and/or change the speed-up from this moment on; returns the new simulated time.

        :param now: the new simulated time (aware); ``None`` keeps the current one.
        :param speedup: the new speed-up; ``None`` keeps the current one.
        """
        if speedup is not None:
            self._check_speedup(speedup)
        target = ensure_utc(now, what="clock time") if now is not None else None
        with self._lock:
            wall = self._wall()
            current = self._origin + timedelta(seconds=(wall - self._wall_origin) * self._speedup)
            self._origin = target if target is not None else current
            self._wall_origin = wall
            if speedup is not None:
                self._speedup = float(speedup)
            return self._origin

    def advance(self, delta: timedelta) -> datetime:
        """Move simulated time forward by ``delta`` at once (negative moves it back).

        :param delta: how far to jump.
        """
        return self.set(now=self.now() + delta)

    def wall_seconds(self, delta: timedelta) -> float:
        """Wall-clock seconds that ``delta`` of simulated time takes at the current speed-up.

        :param delta: a simulated duration.
        """
        return delta.total_seconds() / self._speedup

    def describe(self) -> dict[str, object]:
        """JSON-ready state: ``now`` and ``speedup``."""
        return {"now": format_time(self.now()), "speedup": self._speedup}
