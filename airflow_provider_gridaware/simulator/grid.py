"""The simulated grid: traces, clock, forecasts, prices and faults, behind every simulated API.

Pure Python (no FastAPI): the API modules turn what this object answers into each API's payloads.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from airflow_provider_gridaware.signals.errors import SourceConfigError
from airflow_provider_gridaware.simulator.faults import FaultBook, FaultSpec
from airflow_provider_gridaware.simulator.prices import SyntheticPriceFormula, SyntheticPriceReplay
from airflow_provider_gridaware.traces.clock import SimClock
from airflow_provider_gridaware.traces.forecast import ForecastNoise
from airflow_provider_gridaware.traces.timeline import (
    DEFAULT_CLEAN_WINDOW_DEPTH,
    Anchor,
    CleanWindow,
    SignalReplay,
    ZoneReplay,
    resample,
)
from airflow_provider_gridaware.traces.trace import (
    SOURCE,
    RawPoint,
    TraceSpec,
    load_trace_file,
    load_traces,
)

# Bidding-zone EIC codes (ENTSO-E Transparency Platform) of zones a trace may name.
EIC_BY_ZONE: dict[str, str] = {
    "AT": "10YAT-APG------L",
    "BE": "10YBE----------2",
    "CH": "10YCH-SWISSGRIDZ",
    "CZ": "10YCZ-CEPS-----N",
    "DE": "10Y1001A1001A82H",
    "DK1": "10YDK-1--------W",
    "DK2": "10YDK-2--------M",
    "ES": "10YES-REE------0",
    "FI": "10YFI-1--------U",
    "FR": "10YFR-RTE------C",
    "GB": "10YGB----------A",
    "NL": "10YNL----------L",
    "NO1": "10YNO-1--------2",
    "NO2": "10YNO-2--------T",
    "PL": "10YPL-AREA-----S",
    "PT": "10YPT-REN------W",
    "SE1": "10Y1001A1001A44P",
    "SE2": "10Y1001A1001A45N",
    "SE3": "10Y1001A1001A46L",
    "SE4": "10Y1001A1001A47J",
}
R = TypeVar("R", bound=SignalReplay)
_ZONE_ALIASES = {"DE-LU": "DE", "DE_LU": "DE", "DK-1": "DK1", "DK_1": "DK1", "NO_1": "NO1", "SE_1": "SE1"}


DEFAULT_CLEAN_WINDOW_FOR = timedelta(minutes=30)


class UnknownZoneError(SourceConfigError):
    """The simulator has no trace for the zone a request names."""


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulated grid is built from.

    :param traces: carbon-intensity traces (gCO2/kWh) as paths, ``FILE[:ZONE]`` or specs; empty means the
        bundled GB trace (zone ``GB``).
    :param price_trace: a real price CSV (EUR/MWh, any recognised layout); ``None`` derives a SYNTHETIC
        price from each carbon trace.
    :param anchor: ``now`` (traces shifted by whole days to the present, looping) or ``fixed``.
    :param speedup: simulated seconds per wall second.
    :param now: simulated time at start; default the real time (anchor ``now``) or the start of the
        first trace (anchor ``fixed``).
    :param forecast_error: forecast error at 24 h as a fraction of the zone's typical value (0 = perfect).
    :param seed: seed of the forecast error paths.
    :param token_ttl: seconds a WattTime login token stays valid (wall clock).
    :param watttime_username: the only user accepted at ``/watttime/login`` (``None``: any user).
    :param watttime_password: that user's password (``None``: any non-empty password).
    :param api_token: the only Electricity Maps ``auth-token`` and ENTSO-E ``securityToken`` accepted
        (``None``: any non-empty token).
    :param entsoe_resolution: ``auto`` (PT15M for delivery from 2025-10-01, when SDAC moved to 15-minute
        products, PT60M before), ``60`` or ``15``.
    :param faults: faults active from the start.
    :param clean_window_in: open a clean window this long after the simulated start (``None``: none);
        every carbon and price signal, actual and forecast, in every API, is lowered inside it.
    :param clean_window_for: how long the clean window lasts.
    :param clean_window_depth: how far below the lowest recorded value its opening lies (0.5 = half).
    """

    traces: Sequence[str | Path | TraceSpec] = ()
    price_trace: str | Path | None = None
    anchor: Anchor | str = Anchor.NOW
    speedup: float = 1.0
    now: datetime | None = None
    forecast_error: float = 0.05
    seed: int = 0
    token_ttl: float = 1800.0
    watttime_username: str | None = None
    watttime_password: str | None = None
    api_token: str | None = None
    entsoe_resolution: str = "auto"
    faults: Sequence[FaultSpec] = field(default_factory=tuple)
    clean_window_in: timedelta | None = None
    clean_window_for: timedelta = DEFAULT_CLEAN_WINDOW_FOR
    clean_window_depth: float = DEFAULT_CLEAN_WINDOW_DEPTH


class SimulatedGrid:
    """Carbon and price replays on one simulated clock, with forecasts, faults and request counts.

    :param config: what to replay and how.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        if str(config.entsoe_resolution) not in ("auto", "60", "15"):
            raise SourceConfigError(
                f"ENTSO-E resolution must be auto, 60 or 15, not {config.entsoe_resolution!r}", source=SOURCE
            )
        self.config = config
        self.anchor = Anchor.parse(config.anchor)
        traces = load_traces(config.traces)
        start = config.now
        if start is None and self.anchor is Anchor.FIXED:
            start = min(t.start for t in traces)
        self.clock = SimClock(now=start, speedup=config.speedup)
        self.clean_window = _clean_window(config, self.clock.now())
        window = self.clean_window
        self.carbon_zones: dict[str, ZoneReplay] = {t.zone: ZoneReplay(t, self.anchor, window) for t in traces}
        self.prices: dict[str, SignalReplay] = {}
        if config.price_trace is not None:
            for trace in load_trace_file(Path(config.price_trace)):
                self.prices[trace.zone] = ZoneReplay(trace, self.anchor, window)
        self.synthetic_formula = SyntheticPriceFormula()
        for zone, replay in self.carbon_zones.items():
            # Derived from the carbon replay, clean window included: the window is cheap as well as clean.
            self.prices.setdefault(zone, SyntheticPriceReplay(replay, self.synthetic_formula))
        self.noise = ForecastNoise(error_fraction=config.forecast_error, seed=config.seed)
        self.faults = FaultBook(tuple(config.faults))
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._requests_by_path: Counter[str] = Counter()
        self.tokens: dict[str, float] = {}  # WattTime bearer token -> monotonic expiry

    # -- zones ---------------------------------------------------------------------------------------------
    def carbon(self, zone: str) -> ZoneReplay:
        """The carbon replay of ``zone`` (exact name, then case-insensitive).

        :raises UnknownZoneError: naming the zones there are.
        """
        return _lookup(self.carbon_zones, zone, "carbon")

    def price(self, zone: str) -> SignalReplay:
        """The price replay of ``zone``: a real trace if given, else the synthetic price of its carbon trace."""
        return _lookup(self.prices, _ZONE_ALIASES.get(zone.upper(), zone), "price")

    def price_zone_for_domain(self, domain: str) -> str:
        """The price zone an ENTSO-E ``in_Domain`` names: by EIC code, or by zone name.

        :raises UnknownZoneError: neither a known EIC of a served zone nor a served zone name.
        """
        for zone, eic in EIC_BY_ZONE.items():
            if eic == domain and zone in self.prices:
                return zone
        return self.price(domain).zone

    @property
    def national_zone(self) -> str:
        """The zone the GB Carbon Intensity API serves: ``GB`` if there is a GB trace, else the first one."""
        return "GB" if "GB" in self.carbon_zones else next(iter(self.carbon_zones))

    # -- values ----------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock.now()

    def actual(
        self, replay: SignalReplay, start: datetime, end: datetime, step: timedelta, how: str = "mean"
    ) -> list[RawPoint]:
        """True values of ``replay`` resampled to ``step`` over ``[start, end)``.

        :param replay: the signal.
        :param start: presented time.
        :param end: presented time.
        :param step: slot length.
        :param how: ``mean`` or ``start`` (see :func:`~.timeline.resample`).
        """
        return resample(replay, start, end, step, how=how)

    def forecast(
        self,
        replay: SignalReplay,
        issued_at: datetime,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        how: str = "mean",
        price: bool = False,
    ) -> list[RawPoint]:
        """Forecast of ``replay`` issued at ``issued_at`` for ``[start, end)``, resampled to ``step``.

        :param replay: the signal.
        :param issued_at: the issue time (sets the lead of each point and the error path).
        :param start: presented time.
        :param end: presented time.
        :param step: slot length.
        :param how: ``mean`` or ``start``.
        :param price: prices may be negative, so they are not clipped at zero.
        """
        truth = resample(replay, start, end, step, how=how)
        key = f"{replay.zone}|{'price' if price else 'carbon'}"
        return self.noise.apply(truth, key=key, issued_at=issued_at, scale=replay.scale, lower=None if price else 0.0)

    # -- bookkeeping -----------------------------------------------------------------------------------------
    def count_request(self, target: str, path: str | None = None) -> None:
        """Count one request to API ``target``; with ``path``, also per path with its times as ``{time}``.

        Per path tells a forecast read from a history read (UKCI ``.../fw48h`` vs ``.../pt24h``), so a test
        can count the upstream requests per refresh of one kind.
        """
        with self._lock:
            self._requests[target] += 1
            if path is not None:
                self._requests_by_path[_TIME_SEGMENT.sub("{time}", path)] += 1

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests)

    def request_counts_by_path(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests_by_path)

    def state(self) -> dict[str, object]:
        """What ``GET /_sim/state`` reports: clock, zones, traces, faults, request counts."""
        synthetic = sorted(z for z, r in self.prices.items() if r.synthetic)
        return {
            "clock": {**self.clock.describe(), "anchor": self.anchor.value},
            "zones": {
                "carbon": sorted(self.carbon_zones),
                "price": sorted(self.prices),
                "national": self.national_zone,
                "entsoe_domains": {z: EIC_BY_ZONE[z] for z in sorted(self.prices) if z in EIC_BY_ZONE},
            },
            "traces": {
                "carbon": [r.describe() for r in self.carbon_zones.values()],
                "price": [r.describe() for r in self.prices.values()],
            },
            "prices": {
                "synthetic_zones": synthetic,
                "synthetic_formula": self.synthetic_formula.describe() if synthetic else None,
                "note": "SYNTHETIC prices are derived from the carbon trace, not real market data" if synthetic else "",
            },
            "forecast": {"error_fraction_at_24h": self.noise.error_fraction, "seed": self.noise.seed},
            "clean_window": None if self.clean_window is None else self.clean_window.describe(),
            "faults": self.faults.describe(),
            "requests": self.request_counts(),
            "requests_by_path": self.request_counts_by_path(),
        }


#: A path segment that is a date or time (``2026-12-04T10:00Z``), counted as one path whatever the time.
_TIME_SEGMENT = re.compile(r"(?<=/)\d{4}-\d{2}-\d{2}[^/]*")


def _clean_window(config: SimulatorConfig, now: datetime) -> CleanWindow | None:
    """The configured clean window, measured from the simulated start ``now``; bad settings are config errors."""
    if config.clean_window_in is None:
        return None
    try:
        return CleanWindow.ahead(
            now, opens_in=config.clean_window_in, lasts=config.clean_window_for, depth=config.clean_window_depth
        )
    except ValueError as exc:
        raise SourceConfigError(str(exc), source=SOURCE) from None


def _lookup(replays: Mapping[str, R], zone: str, what: str) -> R:
    if zone in replays:
        return replays[zone]
    folded = {z.casefold(): z for z in replays}
    if zone.casefold() in folded:
        return replays[folded[zone.casefold()]]
    known = ", ".join(sorted(replays)) or "none"
    raise UnknownZoneError(f"the simulator has no {what} trace for zone {zone!r}; known zones: {known}", source=SOURCE)
