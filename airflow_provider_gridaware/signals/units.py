"""Signal kinds, carbon metrics and unit conversion to one canonical unit per kind.

Canonical units: carbon intensity in gCO2eq/kWh, carbon index in percentile (0-100), price in
<currency>/MWh. Everything is converted at the edge (the parser) so the planner never sees a
foreign unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from airflow_provider_gridaware.signals.errors import UnknownUnitError

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb = 453.59237 g; per MWh -> per kWh divides by 1000

G_PER_KWH = "gCO2eq/kWh"
PERCENTILE = "percentile"


class SignalKind(str, Enum):
    """What a series measures."""

    CARBON_INTENSITY = "carbon_intensity"
    # A relative 0-100 index (WattTime signal-index): comparable over time within one zone only.
    CARBON_INDEX = "carbon_index"
    PRICE = "price"


class CarbonMetric(str, Enum):
    """Which carbon question a value answers; the two must never be mixed in one decision."""

    AVERAGE = "average"  # location-based: emissions of the whole mix per kWh consumed
    MARGINAL = "marginal"  # MOER: emissions of the generator that answers one more kWh


class SeriesType(str, Enum):
    ACTUAL = "actual"
    FORECAST = "forecast"


@dataclass(frozen=True)
class CanonicalUnit:
    """A source unit resolved to its canonical form: ``canonical_value = value * factor``."""

    unit: str
    factor: float
    currency: str | None = None


_CARBON_UNITS: dict[str, float] = {
    "gco2/kwh": 1.0,
    "gco2eq/kwh": 1.0,
    "gco2e/kwh": 1.0,
    "g/kwh": 1.0,
    "g_per_kwh": 1.0,
    "kgco2/mwh": 1.0,
    "kgco2eq/mwh": 1.0,
    "kg/mwh": 1.0,
    "tco2/mwh": 1000.0,
    "t/mwh": 1000.0,
    "kgco2/kwh": 1000.0,
    "kg/kwh": 1000.0,
    "lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lbs/mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lb/mwh": LBS_PER_MWH_TO_G_PER_KWH,
    "lbsco2/mwh": LBS_PER_MWH_TO_G_PER_KWH,
}

_PRICE_ENERGY: dict[str, float] = {"mwh": 1.0, "kwh": 1000.0, "wh": 1_000_000.0}
# Minor currency units, written as a prefix ("ct/kWh", "c/kWh", "p/kWh", "cents/kWh").
_MINOR_UNITS = {"ct", "c", "cent", "cents", "p", "pence"}
_PRICE_RE = re.compile(r"^\s*([A-Za-z]{1,5})\s*(?:/|_per_)\s*(mwh|kwh|wh)\s*$", re.IGNORECASE)


def canonical_carbon_unit(unit: str) -> CanonicalUnit:
    """Resolve a carbon-intensity unit (``lbs_co2_per_mwh``, ``gCO2eq/kWh``...) to gCO2eq/kWh."""
    key = unit.strip().lower().replace(" ", "")
    if key in _CARBON_UNITS:
        return CanonicalUnit(G_PER_KWH, _CARBON_UNITS[key])
    if key in {"percent", "percentile", "%"}:
        raise UnknownUnitError(f"unit {unit!r} is a relative index, not an intensity: read it as kind 'carbon_index'")
    raise UnknownUnitError(
        f"unknown carbon-intensity unit {unit!r}; expected one of: {', '.join(sorted(_CARBON_UNITS))}"
    )


def canonical_price_unit(unit: str, currency: str | None = None) -> CanonicalUnit:
    """Resolve a price unit (``EUR/MWh``, ``ct/kWh`` with currency EUR, ``USD_per_kwh``) to <CUR>/MWh.

    :param unit: the source's unit string.
    :param currency: ISO 4217 code; needed when ``unit`` names a minor unit (``ct``) or no currency.
    """
    match = _PRICE_RE.match(unit)
    if not match:
        raise UnknownUnitError(
            f"unknown price unit {unit!r}; expected '<currency>/MWh' or '<currency>/kWh', e.g. 'EUR/MWh'"
        )
    money, energy = match.group(1), match.group(2).lower()
    factor = _PRICE_ENERGY[energy]
    if money.lower() in _MINOR_UNITS:
        if not currency:
            raise UnknownUnitError(f"price unit {unit!r} names a minor currency unit but no currency is given")
        factor /= 100.0
        money = currency
    elif currency and money.upper() != currency.upper():
        raise UnknownUnitError(f"price unit {unit!r} contradicts the configured currency {currency!r}")
    code = money.upper()
    if len(code) != 3:
        raise UnknownUnitError(f"price unit {unit!r}: {money!r} is not an ISO 4217 currency code")
    return CanonicalUnit(f"{code}/MWh", factor, code)


def canonical_unit(kind: SignalKind, unit: str, currency: str | None = None) -> CanonicalUnit:
    """Resolve ``unit`` for a series of ``kind``; raise :class:`UnknownUnitError` if it does not fit."""
    if kind is SignalKind.CARBON_INTENSITY:
        return canonical_carbon_unit(unit)
    if kind is SignalKind.CARBON_INDEX:
        if unit.strip().lower() in {"percent", "percentile", "%"}:
            return CanonicalUnit(PERCENTILE, 1.0)
        raise UnknownUnitError(f"a carbon index is a percentile (0-100), not {unit!r}")
    return canonical_price_unit(unit, currency)
