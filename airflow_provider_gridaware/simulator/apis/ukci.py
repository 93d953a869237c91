"""Simulated GB Carbon Intensity API under ``/ukci``: half-hourly national forecasts and actuals, and regions.

National data come from the ``GB`` trace (or the first carbon trace). ``actual`` is filled for periods
that have started; ``forecast`` is the latest forecast (issued at the current half-hour) for periods
ahead, and the half-hour-ahead forecast for periods already begun. Regional data (forecast only) come
from a ``GB-<id>`` trace when one is loaded, else from the national trace scaled by a fixed SYNTHETIC
factor per region, with a synthetic generation mix.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response

from airflow_provider_gridaware.simulator.apis.common import (
    BadRequest,
    data_fault,
    floor_to,
    grid_of,
    int_value,
    is_mode,
    json_response,
    parse_time_param,
    stale_window,
)
from airflow_provider_gridaware.simulator.faults import FaultMode, FaultSpec
from airflow_provider_gridaware.simulator.grid import SimulatedGrid, UnknownZoneError
from airflow_provider_gridaware.traces.timeline import SignalReplay
from airflow_provider_gridaware.traces.trace import RawPoint

PREFIX = "/ukci"
HALF_HOUR = timedelta(minutes=30)
MAX_RANGE = timedelta(days=14)
# Index bands in gCO2/kWh (approximately the API's 2023 national bands): upper bounds, exclusive.
INDEX_BANDS = ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high"))
# (dnoregion, shortname, SYNTHETIC factor on the national intensity) by region id.
REGIONS: dict[int, tuple[str, str, float]] = {
    1: ("Scottish Hydro Electric Power Distribution", "North Scotland", 0.05),
    2: ("SP Distribution", "South Scotland", 0.3),
    3: ("Electricity North West", "North West England", 0.8),
    4: ("NPG North East", "North East England", 0.6),
    5: ("NPG Yorkshire", "Yorkshire", 1.3),
    6: ("SP Manweb", "North Wales & Merseyside", 0.9),
    7: ("WPD South Wales", "South Wales", 1.4),
    8: ("WPD West Midlands", "West Midlands", 1.2),
    9: ("WPD East Midlands", "East Midlands", 1.3),
    10: ("UKPN East", "East England", 1.0),
    11: ("WPD South West", "South West England", 0.9),
    12: ("SSE South", "South England", 1.1),
    13: ("UKPN London", "London", 1.2),
    14: ("UKPN South East", "South East England", 1.1),
    15: ("England", "England", 1.1),
    16: ("Scotland", "Scotland", 0.2),
    17: ("Wales", "Wales", 1.2),
}
GAS_G_PER_KWH = 394.0  # a CCGT's intensity: the synthetic mix burns as much gas as the intensity implies
# How the rest (everything but gas) splits in the synthetic mix; the shares add up to 1.
_LOW_CARBON_SHARES = {
    "biomass": 0.08,
    "coal": 0.0,
    "imports": 0.12,
    "nuclear": 0.2,
    "other": 0.0,
    "hydro": 0.03,
    "solar": 0.1,
    "wind": 0.47,
}

router = APIRouter(prefix=PREFIX)


def _error(exc: BadRequest) -> Response:
    return json_response({"error": {"code": f"{exc.status} Bad Request", "message": exc.message}}, exc.status)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ")


def first_period_start(asked: datetime) -> datetime:
    """Where the API's answer for ``from`` = ``asked`` begins: the half-hour that ends at or after ``asked``.

    The real API treats a period as ``(from, to]``: asked from 12:00 it starts with 11:30-12:00, the period
    that ended at 12:00; asked from 12:01, with 12:00-12:30.

    :param asked: the ``from`` of the request.
    """
    start = floor_to(asked, HALF_HOUR)
    return start - HALF_HOUR if start == asked else start


def index_of(value: float) -> str:
    """The API's word for an intensity (``very low`` .. ``very high``)."""
    for upper, name in INDEX_BANDS:
        if value < upper:
            return name
    return "very high"


class _ScaledReplay:
    """A region's SYNTHETIC replay: the national replay times a fixed factor."""

    def __init__(self, national: SignalReplay, factor: float, zone: str) -> None:
        self.national, self.factor, self.zone = national, factor, zone
        self.step, self.scale, self.synthetic = national.step, national.scale * factor, True

    def points(self, start: datetime, end: datetime) -> list[RawPoint]:
        return [(s, e, v * self.factor) for s, e, v in self.national.points(start, end)]

    def describe(self) -> dict[str, object]:
        return {**self.national.describe(), "zone": self.zone, "synthetic": True, "factor": self.factor}


def _periods(
    grid: SimulatedGrid,
    replay: SignalReplay,
    start: datetime,
    end: datetime,
    fault: FaultSpec | None,
    *,
    with_actual: bool = True,
) -> list[tuple[datetime, datetime, float, float | None]]:
    """``(from, to, forecast, actual)`` per half-hour in ``[start, end)``; actual is ``None`` until it begins."""
    now = grid.now()
    start, end, _ = stale_window(start, end, now, fault)
    issued = floor_to(now, HALF_HOUR)
    truth = grid.actual(replay, start, end, HALF_HOUR)
    ahead = {s: v for s, _, v in grid.forecast(replay, issued, max(start, issued), end, HALF_HOUR)}
    key = f"{replay.zone}|carbon"
    rows: list[tuple[datetime, datetime, float, float | None]] = []
    for s, e, v in truth:
        if s in ahead:
            forecast = ahead[s]
        else:  # a period already begun keeps the forecast made half an hour before it
            forecast = max(0.0, v + grid.noise.error_at(key, s - HALF_HOUR, HALF_HOUR) * replay.scale)
        rows.append((s, e, forecast, v if with_actual and s <= now else None))
    if is_mode(fault, FaultMode.EMPTY):
        return []
    if is_mode(fault, FaultMode.NAN):
        return [(s, e, math.nan, None if a is None else math.nan) for s, e, _, a in rows]
    return rows


def _national(grid: SimulatedGrid, start: datetime, end: datetime, fault: FaultSpec | None) -> Response:
    replay = grid.carbon(grid.national_zone)
    data = [
        {
            "from": _iso(s),
            "to": _iso(e),
            "intensity": {
                "forecast": int_value(forecast),
                "actual": None if actual is None else int_value(actual),
                "index": index_of(forecast if actual is None else actual),
            },
        }
        for s, e, forecast, actual in _periods(grid, replay, start, end, fault)
    ]
    return json_response({"data": data})


def _time(text: str, name: str) -> datetime:
    return parse_time_param(text, name)


@router.get("/intensity")
def current(request: Request) -> Response:
    """``/intensity`` -> the current half-hour."""
    grid = grid_of(request)
    start = floor_to(grid.now(), HALF_HOUR)
    return _national(grid, start, start + HALF_HOUR, data_fault(request))


@router.get("/intensity/{start}/{rest}")
def window(start: str, rest: str, request: Request) -> Response:
    """``/intensity/{from}/fw24h|fw48h|pt24h`` and ``/intensity/{from}/{to}`` (at most 14 days).

    Forward and ranged answers begin with the period that ends at or after ``from`` (see
    :func:`first_period_start`); ``pt24h`` is the 24 hours of periods that ended by ``from``.
    """
    grid = grid_of(request)
    try:
        asked = _time(start, "from")
        begin = first_period_start(asked)
        if rest == "fw24h":
            finish = begin + timedelta(hours=24)
        elif rest == "fw48h":
            finish = begin + timedelta(hours=48)
        elif rest == "pt24h":
            ended = floor_to(asked, HALF_HOUR)
            begin, finish = ended - timedelta(hours=24), ended
        else:
            finish = _time(rest, "to")
            if finish <= begin:
                raise BadRequest("'to' must be after 'from'")
            if finish - asked > MAX_RANGE:
                raise BadRequest("the date range is limited to 14 days")
    except BadRequest as exc:
        return _error(exc)
    return _national(grid, begin, finish, data_fault(request))


def _regional(grid: SimulatedGrid, region: int, start: datetime, end: datetime, fault: FaultSpec | None) -> Response:
    dno, short, factor = REGIONS[region]
    replay: SignalReplay
    try:
        replay = grid.carbon(f"GB-{region}")
    except UnknownZoneError:
        replay = _ScaledReplay(grid.carbon(grid.national_zone), factor, f"GB-{region}")
    periods = []
    for s, e, forecast, _ in _periods(grid, replay, start, end, fault, with_actual=False):
        periods.append(
            {
                "from": _iso(s),
                "to": _iso(e),
                "intensity": {"forecast": int_value(forecast), "index": index_of(forecast)},
                "generationmix": generation_mix(forecast),
            }
        )
    return json_response({"data": [{"regionid": region, "dnoregion": dno, "shortname": short, "data": periods}]})


def generation_mix(intensity: float) -> list[dict[str, object]]:
    """A SYNTHETIC generation mix consistent with ``intensity``: gas makes the carbon, the rest is fixed shares."""
    gas = 0.0 if math.isnan(intensity) else min(100.0, max(0.0, intensity / GAS_G_PER_KWH * 100))
    low_carbon = 100.0 - gas
    shares = {fuel: share * low_carbon for fuel, share in _LOW_CARBON_SHARES.items()}
    shares["gas"] = gas
    order = ("biomass", "coal", "imports", "gas", "nuclear", "other", "hydro", "solar", "wind")
    return [{"fuel": fuel, "perc": round(shares[fuel], 1)} for fuel in order]


def _region_id(text: str) -> int:
    if not text.isdigit() or int(text) not in REGIONS:
        raise BadRequest(f"region id {text!r} is not one of 1-17")
    return int(text)


@router.get("/regional/intensity/{start}/{rest}/regionid/{region}")
def regional_window(start: str, rest: str, region: str, request: Request) -> Response:
    """``/regional/intensity/{from}/fw24h|fw48h/regionid/{id}`` -> one region's forecast periods, from the one
    ending at or after ``from`` (as nationally)."""
    grid = grid_of(request)
    try:
        begin = first_period_start(_time(start, "from"))
        hours = {"fw24h": 24, "fw48h": 48}.get(rest)
        if hours is None:
            raise BadRequest(f"{rest!r} is not fw24h or fw48h")
        region_id = _region_id(region)
    except BadRequest as exc:
        return _error(exc)
    return _regional(grid, region_id, begin, begin + timedelta(hours=hours), data_fault(request))


@router.get("/regional/regionid/{region}")
def regional_current(region: str, request: Request) -> Response:
    """``/regional/regionid/{id}`` -> one region's current half-hour."""
    grid = grid_of(request)
    try:
        region_id = _region_id(region)
    except BadRequest as exc:
        return _error(exc)
    start = floor_to(grid.now(), HALF_HOUR)
    return _regional(grid, region_id, start, start + HALF_HOUR, data_fault(request))
