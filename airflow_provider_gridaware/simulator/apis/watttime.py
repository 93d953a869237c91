"""Simulated WattTime v3 under ``/watttime``: login with Basic auth, then Bearer-token endpoints.

Values are served in lbs CO2/MWh in 5-minute points, stepping through the trace (a half-hourly trace
gives six equal 5-minute points). The simulator replays the trace's numbers as the MOER; it does not
model marginal emissions, so use it to exercise the plumbing, not to compare metrics.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response

from airflow_provider_gridaware.signals.units import LBS_PER_MWH_TO_G_PER_KWH
from airflow_provider_gridaware.simulator.apis.common import (
    BadRequest,
    data_fault,
    floor_to,
    grid_of,
    is_mode,
    json_response,
    parse_float_param,
    parse_time_param,
    round_value,
    shape_values,
    stale_window,
)
from airflow_provider_gridaware.simulator.faults import FaultMode
from airflow_provider_gridaware.simulator.grid import SimulatedGrid, UnknownZoneError
from airflow_provider_gridaware.traces.timeline import ZoneReplay
from airflow_provider_gridaware.traces.trace import RawPoint

PREFIX = "/watttime"
FIVE_MINUTES = timedelta(minutes=5)
SIGNAL_TYPES = ("co2_moer", "co2_aoer")
MAX_HISTORICAL = timedelta(days=32)  # the official client chunks /v3/historical into ~32-day requests
MAX_FORECAST_HISTORICAL = timedelta(days=7)
MAX_HORIZON_HOURS = 72.0
# Rough centroids, for /v3/region-from-loc: (latitude, longitude, full name).
CENTROIDS: dict[str, tuple[float, float, str]] = {
    "GB": (54.0, -2.0, "Great Britain"),
    "DE": (51.2, 10.4, "Germany"),
    "FR": (46.6, 2.4, "France"),
    "ES": (40.2, -3.6, "Spain"),
    "NL": (52.2, 5.3, "Netherlands"),
    "CAISO_NORTH": (38.5, -121.5, "California ISO Northern"),
}

router = APIRouter(prefix=PREFIX)


def _error(exc: BadRequest) -> Response:
    return json_response({"error": exc.message}, exc.status)


def _iso(value: datetime) -> str:
    return value.isoformat()  # WattTime writes "2023-06-08T00:05:00+00:00"


def _lbs(points: list[RawPoint]) -> list[dict[str, object]]:
    return [{"point_time": _iso(s), "value": round_value(v / LBS_PER_MWH_TO_G_PER_KWH, 3)} for s, _, v in points]


def _authorised(request: Request, grid: SimulatedGrid) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    expiry = grid.tokens.get(token.strip())
    return expiry is not None and expiry > time.monotonic()


def _query(request: Request) -> tuple[SimulatedGrid, ZoneReplay, str]:
    grid = grid_of(request)
    if not _authorised(request, grid):
        raise BadRequest("missing, invalid or expired bearer token: GET /login first", 401)
    region = request.query_params.get("region")
    if not region:
        raise BadRequest("missing required parameter 'region'")
    signal_type = request.query_params.get("signal_type", "co2_moer")
    if signal_type not in SIGNAL_TYPES:
        raise BadRequest(f"signal_type {signal_type!r} is not served; use one of {', '.join(SIGNAL_TYPES)}")
    try:
        replay = grid.carbon(region)
    except UnknownZoneError as exc:
        raise BadRequest(f"region {region!r} is not available: {exc}", 400) from None
    return grid, replay, signal_type


def _meta(grid: SimulatedGrid, region: str, signal_type: str, units: str = "lbs_co2_per_mwh") -> dict[str, object]:
    return {
        "data_point_period_seconds": 300,
        "region": region,
        "signal_type": signal_type,
        "units": units,
        "model": {"date": grid.carbon(region).trace.start.date().isoformat()},
    }


@router.get("/login")
def login(request: Request) -> Response:
    """``GET /login`` with HTTP Basic auth -> ``{"token": ...}`` valid for the configured TTL."""
    grid = grid_of(request)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, password = "", "", ""
    config = grid.config
    if scheme.lower() != "basic" or not sep or not user or not password:
        return json_response({"error": "HTTP Basic authentication required"}, 401)
    if (config.watttime_username is not None and user != config.watttime_username) or (
        config.watttime_password is not None and password != config.watttime_password
    ):
        return json_response({"error": "invalid username or password"}, 403)
    token = secrets.token_urlsafe(32)
    grid.tokens[token] = time.monotonic() + config.token_ttl
    return json_response({"token": token})


@router.get("/v3/forecast")
def forecast(request: Request) -> Response:
    """``/v3/forecast?region=&signal_type=&horizon_hours=`` -> 5-minute points from the current interval."""
    try:
        grid, replay, signal_type = _query(request)
        horizon = parse_float_param(request.query_params.get("horizon_hours"), "horizon_hours", 24.0)
        if not 0 <= horizon <= MAX_HORIZON_HOURS:
            raise BadRequest(f"horizon_hours must be between 0 and {MAX_HORIZON_HOURS:g}")
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    generated = floor_to(now, FIVE_MINUTES)
    end = generated + max(timedelta(hours=horizon), FIVE_MINUTES)
    start, end, shift = stale_window(generated, end, now, fault)
    generated -= shift
    points = grid.forecast(replay, generated, start, end, FIVE_MINUTES, how="start")
    meta = _meta(grid, replay.zone, signal_type)
    meta.update(generated_at_period_seconds=300, generated_at=_iso(generated))
    return json_response({"data": _lbs(shape_values(points, fault)), "meta": meta})


@router.get("/v3/historical")
def historical(request: Request) -> Response:
    """``/v3/historical?region=&signal_type=&start=&end=`` -> past 5-minute points (at most 32 days)."""
    try:
        grid, replay, signal_type = _query(request)
        start = parse_time_param(request.query_params.get("start"), "start")
        end = parse_time_param(request.query_params.get("end"), "end")
        if end <= start:
            raise BadRequest("end must be after start")
        if end - start > MAX_HISTORICAL:
            raise BadRequest("the requested range is longer than 32 days; split it into smaller requests")
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    newest = now - timedelta(hours=fault.stale_hours) if is_mode(fault, FaultMode.STALE) and fault else now
    # Only whole 5-minute intervals that have already happened are history.
    end = min(end, floor_to(newest, FIVE_MINUTES))
    # Points stamped from ``start`` on, as the API filters by point_time.
    points = [p for p in grid.actual(replay, start, end, FIVE_MINUTES, how="start") if p[0] >= start]
    return json_response({"data": _lbs(shape_values(points, fault)), "meta": _meta(grid, replay.zone, signal_type)})


@router.get("/v3/signal-index")
def signal_index(request: Request) -> Response:
    """``/v3/signal-index?region=`` -> the current 5-minute value's percentile (0-100) within the trace."""
    try:
        grid, replay, signal_type = _query(request)
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    current = floor_to(now, FIVE_MINUTES)
    start, end, _ = stale_window(current, current + FIVE_MINUTES, now, fault)
    truth = grid.actual(replay, start, end, FIVE_MINUTES, "start")
    points = shape_values([(s, e, float(round(replay.trace.percentile_of(v)))) for s, e, v in truth], fault)
    meta = _meta(grid, replay.zone, signal_type, units="percentile")
    meta.update(generated_at_period_seconds=300, generated_at=_iso(start))
    data = [{"point_time": _iso(s), "value": v} for s, _, v in points]
    return json_response({"data": data, "meta": meta})


@router.get("/v3/region-from-loc")
def region_from_loc(request: Request) -> Response:
    """``/v3/region-from-loc?latitude=&longitude=&signal_type=`` -> the nearest served region."""
    grid = grid_of(request)
    try:
        if not _authorised(request, grid):
            raise BadRequest("missing, invalid or expired bearer token: GET /login first", 401)
        latitude = parse_float_param(request.query_params.get("latitude"), "latitude")
        longitude = parse_float_param(request.query_params.get("longitude"), "longitude")
    except BadRequest as exc:
        return _error(exc)
    signal_type = request.query_params.get("signal_type", "co2_moer")
    known = [z for z in grid.carbon_zones if z in CENTROIDS]
    if known:
        region = min(known, key=lambda z: math.dist((latitude, longitude), CENTROIDS[z][:2]))
    else:
        region = next(iter(grid.carbon_zones))
    name = CENTROIDS.get(region, (0.0, 0.0, region))[2]
    return json_response({"region": region, "region_full_name": name, "signal_type": signal_type})


@router.get("/v3/forecast/historical")
def forecast_historical(request: Request) -> Response:
    """``/v3/forecast/historical?region=&start=&end=&horizon_hours=`` -> every 5-minute forecast vintage."""
    try:
        grid, replay, signal_type = _query(request)
        start = parse_time_param(request.query_params.get("start"), "start")
        end = parse_time_param(request.query_params.get("end"), "end")
        horizon = parse_float_param(request.query_params.get("horizon_hours"), "horizon_hours", 24.0)
        if end <= start:
            raise BadRequest("end must be after start")
        if end - start > MAX_FORECAST_HISTORICAL:
            raise BadRequest("the requested range is longer than 7 days; split it into smaller requests")
        if not 0 <= horizon <= MAX_HORIZON_HOURS:
            raise BadRequest(f"horizon_hours must be between 0 and {MAX_HORIZON_HOURS:g}")
    except BadRequest as exc:
        return _error(exc)
    fault = data_fault(request)
    now = grid.now()
    newest = now - timedelta(hours=fault.stale_hours) if is_mode(fault, FaultMode.STALE) and fault else now
    vintages = []
    issued = floor_to(start, FIVE_MINUTES)
    if issued < start:
        issued += FIVE_MINUTES
    while issued < end and issued <= newest:
        span = max(timedelta(hours=horizon), FIVE_MINUTES)
        points = grid.forecast(replay, issued, issued, issued + span, FIVE_MINUTES, how="start")
        vintages.append({"generated_at": _iso(issued), "forecast": _lbs(shape_values(points, fault))})
        issued += FIVE_MINUTES
    if is_mode(fault, FaultMode.EMPTY):
        vintages = []
    return json_response({"data": vintages, "meta": _meta(grid, replay.zone, signal_type)})
