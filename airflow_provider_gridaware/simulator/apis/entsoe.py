"""Simulated ENTSO-E Transparency Platform under ``/entsoe``: day-ahead prices (documentType A44) as XML.

One ``TimeSeries`` per delivery day (a day in Brussels time: 22:00Z or 23:00Z to the next), curveType
A03 (a point is omitted when its price equals the previous one, so readers must forward-fill). A day's
prices are published at 12:45 Brussels time the day before; later days are not served yet. Outside the
trace the answer is an ``Acknowledgement_MarketDocument`` "No matching data found" with HTTP 200, as
the real platform does. Prices are the time-weighted mean of the price trace over each position; with
no price trace they are the SYNTHETIC prices of :mod:`~airflow_provider_gridaware.simulator.prices`.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, time, timedelta, timezone
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response

from airflow_provider_gridaware.simulator.apis.common import (
    BadRequest,
    data_fault,
    grid_of,
    is_mode,
    stale_window,
)
from airflow_provider_gridaware.simulator.faults import FaultMode, FaultSpec
from airflow_provider_gridaware.simulator.grid import EIC_BY_ZONE, SimulatedGrid, UnknownZoneError
from airflow_provider_gridaware.traces.trace import RawPoint

PREFIX = "/entsoe"
UTC = timezone.utc
MARKET_TZ = ZoneInfo("Europe/Brussels")
PUBLICATION = time(12, 45)  # SDAC results are published around 12:45-13:00 CET for the next day
MTU_15_FROM = datetime(2025, 9, 30, 22, 0, tzinfo=UTC)  # delivery day 2025-10-01 CET: 15-minute products
MAX_RANGE = timedelta(days=366)
PUBLICATION_NS = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"
ACK_NS = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0"
PLATFORM_EIC = "10X1001A1001A450"

router = APIRouter(prefix=PREFIX)


def _xml(body: str, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/xml")


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def acknowledgement(reason: str, *, now: datetime, code: str = "999") -> str:
    """An ``Acknowledgement_MarketDocument``: how the platform says "no data" or "bad request".

    :param reason: the ``Reason/text``.
    :param now: the document's creation time.
    :param code: the ``Reason/code`` (999: error or no data).
    """
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Acknowledgement_MarketDocument xmlns="{ACK_NS}">\n'
        f"  <mRID>{uuid.uuid4().hex}</mRID>\n"
        f"  <createdDateTime>{created}</createdDateTime>\n"
        f'  <sender_MarketParticipant.mRID codingScheme="A01">{PLATFORM_EIC}</sender_MarketParticipant.mRID>\n'
        "  <sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>\n"
        f'  <receiver_MarketParticipant.mRID codingScheme="A01">{PLATFORM_EIC}</receiver_MarketParticipant.mRID>\n'
        "  <receiver_MarketParticipant.marketRole.type>A39</receiver_MarketParticipant.marketRole.type>\n"
        f"  <received_MarketDocument.createdDateTime>{created}</received_MarketDocument.createdDateTime>\n"
        f"  <Reason>\n    <code>{code}</code>\n    <text>{escape(reason)}</text>\n  </Reason>\n"
        "</Acknowledgement_MarketDocument>\n"
    )


def _parse_period(value: str | None, name: str) -> datetime:
    if not value:
        raise BadRequest(f"Mandatory parameter {name} is missing")
    try:
        return datetime.strptime(value, "%Y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not in the format yyyyMMddHHmm") from None


def resolution_for(grid: SimulatedGrid, day_start: datetime) -> timedelta:
    """PT15M or PT60M for the delivery day starting at ``day_start`` (see ``entsoe_resolution``)."""
    setting = str(grid.config.entsoe_resolution)
    if setting == "auto":
        return timedelta(minutes=15) if day_start >= MTU_15_FROM else timedelta(minutes=60)
    return timedelta(minutes=int(setting))


def delivery_days(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Delivery days (Brussels midnight to midnight, in UTC) overlapping ``[start, end)``."""
    day = start.astimezone(MARKET_TZ).date()
    days: list[tuple[datetime, datetime]] = []
    while True:
        begin = datetime.combine(day, time(0), MARKET_TZ).astimezone(UTC)
        if begin >= end:
            return days
        finish = datetime.combine(day + timedelta(days=1), time(0), MARKET_TZ).astimezone(UTC)
        if finish > start:
            days.append((begin, finish))
        day += timedelta(days=1)


def last_published_day_end(now: datetime) -> datetime:
    """End (UTC) of the last delivery day whose prices are published at ``now``."""
    local = now.astimezone(MARKET_TZ)
    last = local.date() + timedelta(days=1 if local.time() >= PUBLICATION else 0)
    return datetime.combine(last + timedelta(days=1), time(0), MARKET_TZ).astimezone(UTC)


def _time_series(
    index: int, eic: str, begin: datetime, finish: datetime, step: timedelta, points: list[RawPoint]
) -> str:
    minutes = int(step.total_seconds() // 60)
    lines = []
    previous: float | None = None
    for position, (_, _, value) in enumerate(points, start=1):
        price = value if math.isnan(value) else round(value, 2)
        if position > 1 and previous is not None and price == previous:
            continue  # curveType A03: an unchanged price is not repeated
        previous = price
        amount = "NaN" if math.isnan(price) else f"{price:.2f}"
        lines.append(f"      <Point><position>{position}</position><price.amount>{amount}</price.amount></Point>")
    body = "\n".join(lines)
    return (
        "  <TimeSeries>\n"
        f"    <mRID>{index}</mRID>\n"
        "    <auction.type>A01</auction.type>\n"
        "    <businessType>A62</businessType>\n"
        f'    <in_Domain.mRID codingScheme="A01">{escape(eic)}</in_Domain.mRID>\n'
        f'    <out_Domain.mRID codingScheme="A01">{escape(eic)}</out_Domain.mRID>\n'
        "    <contract_MarketAgreement.type>A01</contract_MarketAgreement.type>\n"
        "    <currency_Unit.name>EUR</currency_Unit.name>\n"
        "    <price_Measure_Unit.name>MWH</price_Measure_Unit.name>\n"
        "    <curveType>A03</curveType>\n"
        "    <Period>\n"
        "      <timeInterval>\n"
        f"        <start>{_stamp(begin)}</start>\n"
        f"        <end>{_stamp(finish)}</end>\n"
        "      </timeInterval>\n"
        f"      <resolution>PT{minutes}M</resolution>\n"
        f"{body}\n"
        "    </Period>\n"
        "  </TimeSeries>\n"
    )


def publication_document(
    grid: SimulatedGrid, zone: str, eic: str, start: datetime, end: datetime, fault: FaultSpec | None
) -> str | None:
    """The A44 document for ``zone`` over ``[start, end)``, or ``None`` when there is no data to send."""
    now = grid.now()
    replay = grid.price(zone)
    start, end, shift = stale_window(start, end, now, fault)
    newest = end if shift else last_published_day_end(now)
    series = []
    for begin, finish in delivery_days(start, end):
        if finish > newest:
            break
        step = resolution_for(grid, begin)
        points = grid.actual(replay, begin, finish, step)
        if len(points) * step < finish - begin:
            continue  # a day the trace does not cover completely is not published
        if is_mode(fault, FaultMode.NAN):
            points = [(s, e, math.nan) for s, e, _ in points]
        series.append((begin, finish, step, points))
    if not series or is_mode(fault, FaultMode.EMPTY):
        return None
    body = "".join(_time_series(i, eic, b, f, st, p) for i, (b, f, st, p) in enumerate(series, start=1))
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Publication_MarketDocument xmlns="{PUBLICATION_NS}">\n'
        f"  <mRID>{uuid.uuid4().hex}</mRID>\n"
        "  <revisionNumber>1</revisionNumber>\n"
        "  <type>A44</type>\n"
        f'  <sender_MarketParticipant.mRID codingScheme="A01">{PLATFORM_EIC}</sender_MarketParticipant.mRID>\n'
        "  <sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>\n"
        f'  <receiver_MarketParticipant.mRID codingScheme="A01">{PLATFORM_EIC}</receiver_MarketParticipant.mRID>\n'
        "  <receiver_MarketParticipant.marketRole.type>A33</receiver_MarketParticipant.marketRole.type>\n"
        f"  <createdDateTime>{created}</createdDateTime>\n"
        "  <period.timeInterval>\n"
        f"    <start>{_stamp(series[0][0])}</start>\n"
        f"    <end>{_stamp(series[-1][1])}</end>\n"
        "  </period.timeInterval>\n"
        f"{body}"
        "</Publication_MarketDocument>\n"
    )


@router.get("/api")
def api(request: Request) -> Response:
    """``/api?documentType=A44&in_Domain=&out_Domain=&periodStart=&periodEnd=&securityToken=``."""
    grid = grid_of(request)
    now = grid.now()
    params = request.query_params
    token = params.get("securityToken", "")
    expected = grid.config.api_token
    if not token or (expected is not None and token != expected):
        return _xml(acknowledgement("Unauthorized. Missing or invalid security token", now=now), 401)
    try:
        if params.get("documentType") != "A44":
            raise BadRequest(f"documentType {params.get('documentType')!r} is not served by the simulator (only A44)")
        domain, out_domain = params.get("in_Domain"), params.get("out_Domain")
        if not domain or not out_domain:
            raise BadRequest("Mandatory parameters in_Domain and out_Domain are missing")
        if domain != out_domain:
            raise BadRequest("For day-ahead prices in_Domain and out_Domain must be the same bidding zone")
        start = _parse_period(params.get("periodStart"), "periodStart")
        end = _parse_period(params.get("periodEnd"), "periodEnd")
        if end <= start:
            raise BadRequest("periodEnd must be after periodStart")
        if end - start > MAX_RANGE:
            raise BadRequest("The amount of requested data exceeds allowed limit (one year)")
    except BadRequest as exc:
        return _xml(acknowledgement(exc.message, now=now), exc.status)
    fault = data_fault(request)
    try:
        zone = grid.price_zone_for_domain(domain)
        document = publication_document(grid, zone, EIC_BY_ZONE.get(zone, domain), start, end, fault)
    except UnknownZoneError:
        document = None
    if document is None:
        interval = f"{start:%Y-%m-%dT%H:%M:%S.000Z}/{end:%Y-%m-%dT%H:%M:%S.000Z}"
        reason = f"No matching data found for Data item Day-ahead Prices [12.1.D] ({domain}, {out_domain}) and interval {interval}."
        return _xml(acknowledgement(reason, now=now))
    return _xml(document)
