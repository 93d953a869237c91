"""Simulated Electricity Maps v3 under ``/electricitymaps``: carbon intensity, hourly, ``auth-token`` header.

Each hour's value is the time-weighted mean of the trace over that hour, as a whole number of gCO2eq/kWh.
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
    parse_float_param,
    parse_time_param,
    shape_values,
    stale_window,
)
from airflow_provider_gridaware.simulator.apis.watttime import CENTROIDS
from airflow_provider_gridaware.simulator.faults import FaultMode
from airflow_provider_gridaware.simulator.grid import SimulatedGrid, UnknownZoneError
from airflow_provider_gridaware.traces.timeline import ZoneReplay
from airflow_provider_gridaware.traces.trace import RawPoint

PREFIX = "/electricitymaps"
HOUR = timedelta(hours=1)
HORIZONS = (6, 24, 48, 72)
MAX_PAST_RANGE = timedelta(days=10)  # the documented limit for hourly data

router = APIRouter(prefix=PREFIX)


def _error(exc: BadRequest) -> Response:
    return json_response({"status": "error", "message": exc.message}, exc.status)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")  # Electricity Maps writes milliseconds and Z


def _query(request: Request) -> tuple[SimulatedGrid, ZoneReplay, str]:
    grid = grid_of(request)
    token = request.headers.get("auth-token", "")
    expected = grid.config.api_token
    if not token or (expected is not None and token != expected):
        raise BadRequest("missing or invalid auth-token header", 401)
    zone = request.query_params.get("zone")
    if not zone:
        lat, lon = request.query_params.get("lat"), request.query_params.get("lon")
        if lat is None or lon is None:
            raise BadRequest("give zone, or lat and lon")
        point = (parse_float_param(lat, "lat"), parse_float_param(lon, "lon"))
        known = [z for z in grid.carbon_zones if z in CENTROIDS]
        zone = min(known, key=lambda z: math.dist(point, CENTROIDS[z][:2])) if known else grid.national_zone
    try:
        replay = grid.carbon(zone)
    except UnknownZoneError as exc:
        raise BadRequest(f"zone {zone!r} does not exist or is not covered: {exc}", 404) from None
    factor = request.query_params.get("emissionFactorType", "lifecycle")
    if factor not in ("lifecycle", "direct"):
        raise BadRequest(f"emissionFactorType must be lifecycle or direct, not {factor!r}")
    return grid, replay, factor


def _record(zone: str, point: RawPoint, now: datetime, factor: str) -> dict[str, object]:
    start, _, value = point
    return {
        "zone": zone,
        "carbonIntensity": int_value(value),
        "datetime": _iso(start),
        "updatedAt": _iso(now),
        "createdAt": _iso(start + HOUR),
        "emissionFactorType": factor,
        "isEstimated": False,
        "estimationMethod": None,
    }


@router.get("/v3/carbon-intensity/latest")
def latest(request: Request) -> Response:
    """``/v3/carbon-intensity/latest?zone=`` -> the current hour."""
    try:
        grid, replay, factor = _query(request)
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    hour = floor_to(now, HOUR)
    start, end, _ = stale_window(hour, hour + HOUR, now, fault)
    points = shape_values(grid.actual(replay, start, end, HOUR), fault)
    if not points:
        record = _record(replay.zone, (start, end, math.nan), now, factor)
        record["carbonIntensity"] = None  # the documented shape, with no value
        return json_response(record)
    return json_response(_record(replay.zone, points[0], now, factor))


@router.get("/v3/carbon-intensity/history")
def history(request: Request) -> Response:
    """``/v3/carbon-intensity/history?zone=`` -> the last 24 hours, hourly, the current hour last."""
    try:
        grid, replay, factor = _query(request)
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    hour = floor_to(now, HOUR)
    start, end, _ = stale_window(hour - 23 * HOUR, hour + HOUR, now, fault)
    points = shape_values(grid.actual(replay, start, end, HOUR), fault)
    return json_response({"zone": replay.zone, "history": [_record(replay.zone, p, now, factor) for p in points]})


@router.get("/v3/carbon-intensity/past-range")
def past_range(request: Request) -> Response:
    """``/v3/carbon-intensity/past-range?zone=&start=&end=`` -> hourly values in ``[start, end)``, past only."""
    try:
        grid, replay, factor = _query(request)
        start = parse_time_param(request.query_params.get("start"), "start")
        end = parse_time_param(request.query_params.get("end"), "end")
        if end <= start:
            raise BadRequest("end must be after start")
        if end - start > MAX_PAST_RANGE:
            raise BadRequest("past-range is limited to 10 days of hourly data per request")
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    newest = now - timedelta(hours=fault.stale_hours) if is_mode(fault, FaultMode.STALE) and fault else now
    end = min(end, floor_to(newest, HOUR) + HOUR)
    points = [p for p in grid.actual(replay, start, end, HOUR) if p[0] >= start]  # stamped from start on
    records = [_record(replay.zone, p, now, factor) for p in shape_values(points, fault)]
    return json_response({"zone": replay.zone, "data": records})


@router.get("/v3/carbon-intensity/forecast")
def forecast(request: Request) -> Response:
    """``/v3/carbon-intensity/forecast?zone=&horizonHours=`` -> hourly forecast from the next hour (default 24 h)."""
    try:
        grid, replay, _ = _query(request)
        horizon = parse_float_param(request.query_params.get("horizonHours"), "horizonHours", 24.0)
        if horizon not in HORIZONS:
            raise BadRequest(f"horizonHours must be one of {', '.join(map(str, HORIZONS))}")
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    issued = floor_to(now, HOUR)  # re-issued every hour
    start, end, shift = stale_window(issued + HOUR, issued + HOUR + timedelta(hours=horizon), now, fault)
    issued -= shift
    points = shape_values(grid.forecast(replay, issued, start, end, HOUR), fault)
    data = [{"carbonIntensity": int_value(v), "datetime": _iso(s)} for s, _, v in points]
    return json_response({"zone": replay.zone, "forecast": data, "updatedAt": _iso(issued)})


@router.get("/v3/zones")
def zones(request: Request) -> Response:
    """``/v3/zones`` -> every served zone and the paths it can be asked for."""
    grid = grid_of(request)
    access = [
        "carbon-intensity/latest",
        "carbon-intensity/history",
        "carbon-intensity/past-range",
        "carbon-intensity/forecast",
    ]
    names = {z: CENTROIDS.get(z, (0.0, 0.0, z))[2] for z in grid.carbon_zones}
    return json_response({z: {"zoneName": names[z], "access": access} for z in grid.carbon_zones})
