"""Forecasts from a trace: the future true values plus deterministic noise that grows with lead time.

The error at lead ``L`` is a Gaussian random walk on a 5-minute grid, so consecutive forecast points err
together (as real forecasts do) and the spread grows like ``sqrt(L)``: its standard deviation is
``error_fraction * scale * sqrt(L / reference_lead)``, i.e. ``error_fraction`` of the zone's typical
value at 24 h by default. The walk is seeded by (seed, zone key, issue time), so asking again for the
forecast issued at the same time gives exactly the same numbers, and every API view of one issue
(5-minute WattTime, hourly Electricity Maps, half-hourly GB) shares the same error path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from airflow_provider_gridaware.traces.trace import RawPoint, to_epoch

NOISE_RESOLUTION = timedelta(minutes=5)
_BLOCK = 288  # walks are generated a day (of 5-minute steps) at a time, so cached prefixes are reused


@lru_cache(maxsize=512)
def _walk(seed: int, key: str, issued_epoch: float, steps: int, sigma: float) -> tuple[float, ...]:
    # str seeds go through SHA-512 in random.seed, so the path is the same in every process.
    rng = random.Random(f"{seed}|{key}|{issued_epoch:.0f}")
    walk = [0.0]
    for _ in range(steps):
        walk.append(walk[-1] + rng.gauss(0.0, sigma))
    return tuple(walk)


@dataclass(frozen=True)
class ForecastNoise:
    """Deterministic, lead-dependent forecast error.

    :param error_fraction: standard deviation of the error at ``reference_lead``, as a fraction of the
        zone's typical value (its mean absolute value); ``0`` gives a perfect forecast.
    :param reference_lead: the lead at which the spread equals ``error_fraction``.
    :param seed: changes every error path at once (for repeated experiments).
    """

    error_fraction: float = 0.05
    reference_lead: timedelta = timedelta(hours=24)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.error_fraction >= 0 or math.isinf(self.error_fraction):
            raise ValueError(f"forecast error must be a finite number >= 0, not {self.error_fraction!r}")
        if self.reference_lead <= timedelta(0):
            raise ValueError("reference_lead must be positive")

    @property
    def step_sigma(self) -> float:
        """Standard deviation of one 5-minute step of the walk (relative to the scale)."""
        return self.error_fraction * math.sqrt(NOISE_RESOLUTION / self.reference_lead)

    def relative_errors(self, key: str, issued_at: datetime, lead: timedelta) -> tuple[float, ...]:
        """The error path (relative to the scale) from lead 0 to at least ``lead``, one value per 5 minutes.

        :param key: names the signal (zone and kind), so zones err independently.
        :param issued_at: the forecast's issue time.
        :param lead: the longest lead needed.
        """
        steps = max(1, math.ceil(lead / NOISE_RESOLUTION))
        steps = math.ceil(steps / _BLOCK) * _BLOCK
        return _walk(self.seed, key, to_epoch(issued_at), steps, self.step_sigma)

    def error_at(self, key: str, issued_at: datetime, lead: timedelta) -> float:
        """The relative error at ``lead`` after ``issued_at`` (``0`` for leads of 5 minutes or less).

        :param key: names the signal.
        :param issued_at: the forecast's issue time.
        :param lead: time from issue to the forecast point's start.
        """
        if self.error_fraction == 0 or lead <= timedelta(0):
            return 0.0
        index = int(lead / NOISE_RESOLUTION)
        return self.relative_errors(key, issued_at, lead)[index]

    def apply(
        self,
        points: list[RawPoint],
        *,
        key: str,
        issued_at: datetime,
        scale: float,
        lower: float | None = 0.0,
    ) -> list[RawPoint]:
        """Forecast values for ``points`` (the true values) as issued at ``issued_at``.

        :param points: ``(start, end, true value)``; points starting before the issue time are kept true.
        :param key: names the signal (e.g. ``"GB|carbon"``).
        :param issued_at: when the forecast is issued.
        :param scale: the zone's typical value; the error is a fraction of it.
        :param lower: values are clipped at this floor (0 for carbon; ``None`` for prices, which may be negative).
        """
        if self.error_fraction == 0 or not points:
            return list(points)
        longest = max(p[0] for p in points) - issued_at
        path = self.relative_errors(key, issued_at, longest) if longest > timedelta(0) else (0.0,)
        out: list[RawPoint] = []
        for start, end, value in points:
            lead = start - issued_at
            error = path[int(lead / NOISE_RESOLUTION)] if lead > timedelta(0) else 0.0
            forecast = value + error * scale
            if lower is not None:
                forecast = max(lower, forecast)
            out.append((start, end, forecast))
        return out
