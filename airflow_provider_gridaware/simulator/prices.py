"""A SYNTHETIC day-ahead price derived from a carbon trace, for when no real price trace may be shipped.

No price trace can be bundled (ENTSO-E terms), so by default the simulator invents one:

    price [EUR/MWh] = base + per_g * carbon [gCO2/kWh] + amplitude * cos(2 * pi * (hour_utc - peak_hour) / 24)

Affine in carbon (fossil plants set both the price and the emissions) plus a daily shape peaking in
the evening. It is labelled ``synthetic`` everywhere it is served. Give a real price CSV
(``--price-trace``) to replay real prices instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_gridaware.traces.timeline import SignalReplay
from airflow_provider_gridaware.traces.trace import RawPoint


@dataclass(frozen=True)
class SyntheticPriceFormula:
    """The documented synthetic price model.

    :param base_eur_mwh: the price at zero carbon and a neutral hour.
    :param eur_mwh_per_g: EUR/MWh added per gCO2/kWh of carbon intensity.
    :param amplitude_eur_mwh: half the daily swing.
    :param peak_hour_utc: hour of the day (UTC) at which the daily shape peaks.
    """

    base_eur_mwh: float = 30.0
    eur_mwh_per_g: float = 0.4
    amplitude_eur_mwh: float = 10.0
    peak_hour_utc: float = 18.0

    def price(self, carbon_g_per_kwh: float, at: datetime) -> float:
        """The synthetic price in EUR/MWh for ``carbon_g_per_kwh`` at time ``at``.

        :param carbon_g_per_kwh: the carbon intensity in force.
        :param at: the moment (its UTC hour sets the daily shape).
        """
        hour = at.hour + at.minute / 60 + at.second / 3600
        daily = math.cos(2 * math.pi * (hour - self.peak_hour_utc) / 24)
        return self.base_eur_mwh + self.eur_mwh_per_g * carbon_g_per_kwh + self.amplitude_eur_mwh * daily

    def describe(self) -> str:
        return (
            f"price_eur_mwh = {self.base_eur_mwh:g} + {self.eur_mwh_per_g:g} * carbon_g_per_kwh"
            f" + {self.amplitude_eur_mwh:g} * cos(2*pi*(hour_utc - {self.peak_hour_utc:g})/24)"
        )


@dataclass(frozen=True)
class SyntheticPriceReplay:
    """Prices computed point by point from a carbon replay with :class:`SyntheticPriceFormula`.

    :param carbon: the carbon-intensity replay (gCO2/kWh) the price follows.
    :param formula: the price model.
    """

    carbon: SignalReplay
    formula: SyntheticPriceFormula = SyntheticPriceFormula()
    currency: str = "EUR"

    @property
    def zone(self) -> str:
        return self.carbon.zone

    @property
    def step(self) -> timedelta:
        return self.carbon.step

    @property
    def scale(self) -> float:
        return abs(self.formula.base_eur_mwh + self.formula.eur_mwh_per_g * self.carbon.scale) or 1.0

    @property
    def synthetic(self) -> bool:
        return True

    def points(self, start: datetime, end: datetime) -> list[RawPoint]:
        """Synthetic prices over ``[start, end)``, one per carbon point, the daily shape taken at its middle.

        :param start: presented time.
        :param end: presented time.
        """
        return [(s, e, self.formula.price(v, s + (e - s) / 2)) for s, e, v in self.carbon.points(start, end)]

    def describe(self) -> dict[str, object]:
        info = dict(self.carbon.describe())
        info.update(synthetic=True, formula=self.formula.describe(), currency=self.currency, derived_from="carbon")
        return info
