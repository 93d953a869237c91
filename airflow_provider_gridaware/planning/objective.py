"""The planner's objective: carbon and price mixed by weights, on comparable scales.

Each signal is divided by its typical level (the median magnitude over every candidate zone and the
planning horizon) before weighting, so ``carbon_weight=1, price_weight=1`` means "a 10 % cleaner hour is
worth a 10 % cheaper hour". The scale is shared by all zones of a signal, which keeps region shifting
honest: a zone with half the intensity still scores half.

Signals that answer different questions are refused rather than mixed: average and marginal carbon,
intensity and a percentile index, or prices in two currencies (see ``docs/adr/0002``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from airflow_provider_gridaware.signals.errors import InvalidSignalError
from airflow_provider_gridaware.signals.models import SignalSeries
from airflow_provider_gridaware.signals.units import SignalKind

FloatArray = npt.NDArray[np.float64]


class IncomparableSignalsError(InvalidSignalError):
    """Signals that must not meet in one decision (average with marginal carbon, two currencies ...)."""


@dataclass(frozen=True)
class SignalFamily:
    """What a set of series measures, once checked comparable.

    :param kind: carbon intensity, carbon index or price.
    :param unit: the canonical unit they share (``gCO2eq/kWh``, ``EUR/MWh``...).
    :param metric: ``average`` / ``marginal`` for carbon, ``None`` for price.
    """

    kind: SignalKind
    unit: str
    metric: str | None


def check_comparable(series: Sequence[SignalSeries], *, role: str) -> SignalFamily | None:
    """The shared family of ``series``, or an error naming what differs; ``None`` for no series.

    :param series: the series of one objective term (all carbon, or all price) across zones.
    :param role: ``carbon`` or ``price``, for messages and to check each series is of that role.
    """
    if not series:
        return None
    families = set()
    for s in series:
        is_price = s.kind is SignalKind.PRICE
        if (role == "price") != is_price:
            raise IncomparableSignalsError(f"{s.source} {s.zone}: a {s.kind.value} series given as the {role} signal")
        families.add(SignalFamily(s.kind, s.unit, s.metric.value if s.metric else None))
    if len(families) > 1:
        described = ", ".join(sorted(f"{f.kind.value}/{f.metric or f.unit}" for f in families))
        raise IncomparableSignalsError(
            f"the {role} signals of the candidate zones are not comparable ({described}); average and marginal "
            "carbon, intensities and indices, or two currencies are never mixed in one decision"
        )
    family = families.pop()
    zones = {s.zone for s in series}
    if family.kind is SignalKind.CARBON_INDEX and len(zones) > 1:
        raise IncomparableSignalsError(
            "a carbon index is a percentile within one zone; it cannot rank several zones: "
            f"use an intensity for {sorted(zones)}"
        )
    return family


def typical_level(values: npt.ArrayLike) -> float:
    """The scale a signal is divided by: median magnitude of its finite values (1.0 if there are none or all are 0).

    :param values: any array of the signal's values.
    """
    array = np.abs(np.asarray(values, dtype=np.float64))
    array = array[np.isfinite(array)]
    if array.size == 0:
        return 1.0
    level = float(np.median(array))
    if level <= 0:
        level = float(array.mean())
    return level if level > 0 else 1.0


@dataclass(frozen=True)
class Objective:
    """Weights of the normalised signals.

    :param carbon_weight: weight of carbon (>= 0).
    :param price_weight: weight of price (>= 0).
    """

    carbon_weight: float = 1.0
    price_weight: float = 0.0

    def __post_init__(self) -> None:
        if min(self.carbon_weight, self.price_weight) < 0 or self.carbon_weight + self.price_weight <= 0:
            raise ValueError(f"objective weights must be >= 0 and not both 0, got {self}")

    def combine(
        self,
        carbon: FloatArray | None,
        price: FloatArray | None,
        *,
        carbon_scale: float,
        price_scale: float,
        shape: tuple[int, ...],
    ) -> FloatArray:
        """Normalised objective per slot; NaN where a weighted signal is missing.

        :param carbon: carbon values (physical unit) or ``None`` if there is no carbon signal.
        :param price: price values or ``None``.
        :param carbon_scale: the carbon typical level.
        :param price_scale: the price typical level.
        :param shape: the output shape (used when a weighted signal is missing entirely).
        """
        total = np.zeros(shape)
        for weight, values, scale in (
            (self.carbon_weight, carbon, carbon_scale),
            (self.price_weight, price, price_scale),
        ):
            if weight == 0:
                continue
            if values is None:
                return np.full(shape, np.nan)
            total = total + weight * np.asarray(values, np.float64) / scale
        return total
