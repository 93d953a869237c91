"""EntsoePriceHook against a local server replaying the real ENTSO-E A44 shape and its failure modes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.hooks.entsoe import EntsoePriceHook
from airflow_provider_gridaware.signals import (
    InvalidSignalError,
    MalformedPayloadError,
    NoSignalDataError,
    SeriesType,
    SignalKind,
    SourceAuthError,
    SourceConfigError,
    SourceRequestError,
    UnknownUnitError,
)
from tests.conftest import api_shape
from tests.support.faults import FAULTS, check_connection_refused, check_fault, check_retry_after_honoured
from tests.support.scripted_server import Reply

UTC = timezone.utc
TOKEN = "entsoe-token-5f1c2a9e"
API = "/entsoe/api"
CZ = "10YCZ-CEPS-----N"
FIXTURE_START = datetime(2025, 8, 21, 22, 0, tzinfo=UTC)
FIXTURE_END = datetime(2025, 8, 23, 22, 0, tzinfo=UTC)
NS = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"
ACK_NS = "urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0"


def _z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%MZ")


def timeseries(
    start: datetime,
    end: datetime,
    points: dict[int, object],
    *,
    resolution: str = "PT60M",
    curve: str = "A03",
    sequence: int | None = None,
    currency: str = "EUR",
    unit: str = "MWH",
) -> str:
    """One A44 TimeSeries with one Period, as the platform writes it."""
    seq = (
        f"<classificationSequence_AttributeInstanceComponent.position>{sequence}"
        "</classificationSequence_AttributeInstanceComponent.position>"
        if sequence is not None
        else ""
    )
    body = "".join(
        f"<Point><position>{pos}</position><price.amount>{price}</price.amount></Point>"
        for pos, price in sorted(points.items())
    )
    return (
        f"<TimeSeries><mRID>1</mRID><auction.type>A01</auction.type><businessType>A62</businessType>"
        f'<in_Domain.mRID codingScheme="A01">{CZ}</in_Domain.mRID>'
        f'<out_Domain.mRID codingScheme="A01">{CZ}</out_Domain.mRID>'
        f"<contract_MarketAgreement.type>A01</contract_MarketAgreement.type>{seq}"
        f"<currency_Unit.name>{currency}</currency_Unit.name><price_Measure_Unit.name>{unit}</price_Measure_Unit.name>"
        f"<curveType>{curve}</curveType><Period><timeInterval><start>{_z(start)}</start><end>{_z(end)}</end>"
        f"</timeInterval><resolution>{resolution}</resolution>{body}</Period></TimeSeries>"
    )


def document(*series: str, created: str = "2025-08-23T16:09:32Z") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<Publication_MarketDocument xmlns="{NS}">'
        f"<mRID>x</mRID><revisionNumber>1</revisionNumber><type>A44</type>"
        f"<createdDateTime>{created}</createdDateTime>{''.join(series)}</Publication_MarketDocument>"
    )


def acknowledgement(text: str, code: str = "999") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Acknowledgement_MarketDocument xmlns="{ACK_NS}">'
        "<mRID>ack-1</mRID><createdDateTime>2025-08-23T16:09:32Z</createdDateTime>"
        '<sender_MarketParticipant.mRID codingScheme="A01">10X1001A1001A450</sender_MarketParticipant.mRID>'
        "<sender_MarketParticipant.marketRole.type>A32</sender_MarketParticipant.marketRole.type>"
        f"<Reason><code>{code}</code><text>{text}</text></Reason></Acknowledgement_MarketDocument>"
    )


NO_DATA = (
    "No matching data found for Data item Day-ahead Prices [12.1.D] (10YCZ-CEPS-----N, 10YCZ-CEPS-----N)"
    " and interval 2025-08-21T22:00:00.000Z/2025-08-23T22:00:00.000Z."
)


@pytest.fixture
def hook(scripted_server, make_connection) -> EntsoePriceHook:
    conn_id = make_connection("entsoe_test", "gridaware_entsoe", host=f"{scripted_server.url}/entsoe", password=TOKEN)
    return EntsoePriceHook(conn_id)


def fixture_forecast(hook: EntsoePriceHook):
    return hook.get_forecast("CZ", start=FIXTURE_START, end=FIXTURE_END)


# -- the real shape --------------------------------------------------------------------------------
def test_real_a44_shape_forward_fills_and_places_positions(hook, scripted_server):
    scripted_server.add(API, Reply(200, api_shape("entsoe_A44_dayahead_response.xml"), content_type="text/xml"))
    series = fixture_forecast(hook)
    assert series.kind is SignalKind.PRICE and series.metric is None
    assert series.unit == "EUR/MWh" and series.currency == "EUR"
    # Firm day-ahead prices: actual, but stamped with the document's createdDateTime.
    assert series.series_type is SeriesType.ACTUAL
    assert series.issued_at == datetime(2025, 8, 23, 16, 9, 32, tzinfo=UTC)
    assert len(series) == 48 and not series.gaps()
    assert series.values[:5] == [88.33, 80.75, 77.23, 75.91, 75.91]
    # A03: positions 5..24 are omitted because they repeat position 4.
    assert series.values[3:24] == [75.91] * 21
    assert series.values[24:28] == [95.33, 89.32, 87.61, 85.05]
    assert series.values[-1] == 85.05
    assert series.points[0].start == FIXTURE_START
    assert series.points[0].end == FIXTURE_START + timedelta(hours=1)
    assert series.points[24].start == datetime(2025, 8, 22, 22, 0, tzinfo=UTC)
    assert series.end == FIXTURE_END
    (request,) = scripted_server.requests_to(API)
    assert request.query == {
        "securityToken": [TOKEN],
        "documentType": ["A44"],
        "in_Domain": [CZ],
        "out_Domain": [CZ],
        "periodStart": ["202508212200"],
        "periodEnd": ["202508232200"],
    }


def test_async_side_gives_the_same_series(hook, scripted_server):
    scripted_server.add(API, api_shape("entsoe_A44_dayahead_response.xml"))
    sync = fixture_forecast(hook)
    async_ = asyncio.run(hook.aget_forecast("CZ", start=FIXTURE_START, end=FIXTURE_END))
    assert async_ == sync
    assert len(async_) == 48


@pytest.mark.parametrize(
    ("zone", "eic"),
    [
        ("CZ", CZ),
        (CZ, CZ),
        ("DE-LU", "10Y1001A1001A82H"),
        ("de_lu", "10Y1001A1001A82H"),
        ("IT-North", "10Y1001A1001A73I"),
        ("DK1", "10YDK-1--------W"),
        ("NO5", "10Y1001A1001A48H"),
        ("SE4", "10Y1001A1001A47J"),
        ("GB", "10YGB----------A"),
    ],
)
def test_zone_names_become_eic_codes(hook, scripted_server, zone, eic):
    scripted_server.add(API, api_shape("entsoe_A44_dayahead_response.xml"))
    series = hook.get_forecast(zone, start=FIXTURE_START, end=FIXTURE_END)
    assert series.zone == zone
    query = scripted_server.requests_to(API)[0].query
    assert query["in_Domain"] == [eic] and query["out_Domain"] == [eic]


def test_unknown_zone_is_refused_before_any_request(hook, scripted_server):
    with pytest.raises(SourceConfigError, match="neither an EIC code"):
        hook.get_forecast("Atlantis")
    assert scripted_server.requests == []


def test_missing_token_is_a_config_error_before_any_request(scripted_server, make_connection):
    hook = EntsoePriceHook(make_connection("entsoe_no_token", "gridaware_entsoe", host=f"{scripted_server.url}/entsoe"))
    with pytest.raises(SourceConfigError, match="security token"):
        hook.get_forecast("CZ")
    assert scripted_server.requests == []


def test_only_price_is_served(hook):
    with pytest.raises(SourceConfigError, match="price"):
        hook.get_forecast("CZ", kind=SignalKind.CARBON_INTENSITY)


# -- resolutions, curve types, duplicates ---------------------------------------------------------
DAY_START = datetime(2025, 10, 1, 22, 0, tzinfo=UTC)
DAY_END = DAY_START + timedelta(days=1)


@pytest.mark.parametrize(("resolution", "minutes"), [("PT15M", 15), ("PT30M", 30), ("PT60M", 60)])
def test_resolution_variants(hook, scripted_server, resolution, minutes):
    count = 24 * 60 // minutes
    prices = {pos: round(10 + pos * 0.5, 2) for pos in range(1, count + 1)}
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, prices, resolution=resolution, curve="A01")))
    series = hook.get_forecast("CZ", start=DAY_START, end=DAY_END)
    assert len(series) == count
    step = timedelta(minutes=minutes)
    assert all(p.end - p.start == step for p in series.points)
    assert series.points[5].start == DAY_START + 5 * step
    assert series.points[5].value == prices[6]
    assert series.values == [prices[pos] for pos in range(1, count + 1)]


def test_a03_fills_to_the_end_of_the_period_and_a01_keeps_gaps(hook, scripted_server):
    scripted_server.add(
        API,
        document(
            timeseries(DAY_START, DAY_END, {1: 50, 3: 60, 22: -5.5}, curve="A03"),
            timeseries(DAY_END, DAY_END + timedelta(days=1), {1: 70, 3: 80}, curve="A01"),
        ),
    )
    series = hook.get_forecast("CZ", start=DAY_START, end=DAY_END + timedelta(days=1))
    first_day = series.between(DAY_START, DAY_END)
    assert first_day.values == [50, 50, 60] + [60] * 18 + [-5.5, -5.5, -5.5]
    second_day = series.between(DAY_END, DAY_END + timedelta(days=1))
    assert second_day.values == [70, 80]
    assert series.gaps() == [(DAY_END + timedelta(hours=1), DAY_END + timedelta(hours=2))]
    assert second_day.end == DAY_END + timedelta(hours=3)


def test_duplicate_classification_sequence_keeps_position_1(hook, scripted_server):
    # Document order is not sequence order: the EXAA auction (position 2) comes first.
    exaa = timeseries(DAY_START, DAY_END, {1: 192.55}, resolution="PT15M", sequence=2)
    main = timeseries(DAY_START, DAY_END, {1: 196.99, 2: 184.40}, resolution="PT15M", sequence=1)
    scripted_server.add(API, document(exaa, main))
    series = hook.get_forecast("DE-LU", start=DAY_START, end=DAY_END)
    assert len(series) == 96
    assert series.values[:3] == [196.99, 184.40, 184.40]
    assert 192.55 not in series.values


def test_one_day_at_two_resolutions_keeps_the_finer(hook, scripted_server):
    hourly = timeseries(DAY_START, DAY_END, {1: 100}, resolution="PT60M")
    quarter = timeseries(DAY_START, DAY_END, {1: 90, 2: 95}, resolution="PT15M")
    scripted_server.add(API, document(hourly, quarter))
    series = hook.get_forecast("AT", start=DAY_START, end=DAY_END)
    assert len(series) == 96
    assert series.values[:3] == [90, 95, 95]


def test_negative_prices_are_kept(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: -0.01, 2: -135.45, 3: 0})))
    series = hook.get_forecast("NL", start=DAY_START, end=DAY_END)
    assert series.values[:4] == [-0.01, -135.45, 0, 0]


@pytest.mark.parametrize(
    ("start", "hours"),
    [
        (datetime(2023, 3, 25, 23, 0, tzinfo=UTC), 23),  # CET spring forward: 23-hour delivery day
        (datetime(2023, 10, 28, 22, 0, tzinfo=UTC), 25),  # CEST fall back: 25-hour delivery day
    ],
)
def test_dst_delivery_days(hook, scripted_server, start, hours):
    end = start + timedelta(hours=hours)
    prices = {pos: float(pos) for pos in range(1, hours + 1)}
    scripted_server.add(API, document(timeseries(start, end, prices, curve="A01")))
    series = hook.get_forecast("DE-LU", start=start, end=end)
    assert len(series) == hours
    assert series.values == [float(pos) for pos in range(1, hours + 1)]
    assert series.start == start and series.end == end and not series.gaps()
    assert series.points[-1].start == end - timedelta(hours=1)


# -- acknowledgements ------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 400])
def test_no_matching_data_acknowledgement(hook, scripted_server, status):
    scripted_server.add(API, Reply(status, acknowledgement(NO_DATA), content_type="text/xml"))
    with pytest.raises(NoSignalDataError, match=r"No matching data found for Data item Day-ahead Prices") as caught:
        fixture_forecast(hook)
    assert TOKEN not in str(caught.value)
    assert len(scripted_server.requests_to(API)) == 1


@pytest.mark.parametrize("status", [200, 400])
def test_other_acknowledgement_reasons_are_request_errors(hook, scripted_server, status):
    reason = "The amount of requested data exceeds allowed limit. Max allowed: 1 year, requested: 2 years."
    scripted_server.add(API, Reply(status, acknowledgement(reason), content_type="text/xml"))
    with pytest.raises(SourceRequestError, match="exceeds allowed limit") as caught:
        fixture_forecast(hook)
    assert caught.value.status == status
    assert "securityToken=" in str(caught.value) and TOKEN not in str(caught.value)
    assert len(scripted_server.requests_to(API)) == 1


def test_http_400_without_acknowledgement_is_a_request_error(hook, scripted_server):
    scripted_server.add(API, Reply(400, f"<html>bad request for securityToken={TOKEN}</html>"))
    with pytest.raises(SourceRequestError, match="HTTP 400") as caught:
        fixture_forecast(hook)
    assert TOKEN not in str(caught.value)


def test_http_401_is_an_auth_error(hook, scripted_server):
    scripted_server.add(API, Reply(401, "<html><body><h1>Unauthorized</h1></body></html>"))
    with pytest.raises(SourceAuthError, match="HTTP 401") as caught:
        fixture_forecast(hook)
    assert TOKEN not in str(caught.value)
    assert len(scripted_server.requests_to(API)) == 1


# -- faults ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_matrix(fault, hook, scripted_server):
    check_fault(fault, server=scripted_server, path=API, call=lambda: fixture_forecast(hook), secrets=(TOKEN,))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        # Cut inside the 3rd Point of the 2nd TimeSeries: the message names where parsing stopped.
        (
            api_shape("entsoe_A44_dayahead_response.xml")[:2600],
            "inside Publication_MarketDocument/TimeSeries[2]/Period[1]/Point[",
        ),
        ("<html><body>Maintenance<br></body></html>", "truncated or malformed"),
        ("<html><body>Maintenance</body></html>", "expected a Publication_MarketDocument, got <html>"),
        ("", "the body is empty"),
        (
            '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            f'<Publication_MarketDocument xmlns="{NS}">&e;</Publication_MarketDocument>',
            "DTD or entities, which are refused",
        ),
    ],
    ids=["truncated_xml", "html_broken", "html_wellformed", "empty_body", "external_entity"],
)
def test_xml_faults(hook, scripted_server, body, fragment):
    scripted_server.add(API, Reply(200, body, content_type="text/xml"))
    with pytest.raises(MalformedPayloadError) as caught:
        fixture_forecast(hook)
    message = str(caught.value)
    assert fragment in message, message
    assert TOKEN not in message
    assert len(scripted_server.requests_to(API)) == 1


def test_truncated_xml_names_line_and_element(hook, scripted_server):
    text = api_shape("entsoe_A44_dayahead_response.xml")
    cut = text.index("<price.amount>87.61") + len("<price.amount>8")
    scripted_server.add(API, Reply(200, text[:cut], content_type="text/xml"))
    with pytest.raises(MalformedPayloadError, match=r"TimeSeries\[2\]/Period\[1\]/Point\[3\]/price\.amount") as caught:
        fixture_forecast(hook)
    assert f"line {text[:cut].count(chr(10)) + 1}" in str(caught.value)


def test_retry_after_is_honoured(hook, scripted_server):
    series = check_retry_after_honoured(
        scripted_server, API, api_shape("entsoe_A44_dayahead_response.xml"), lambda: fixture_forecast(hook)
    )
    assert len(series) == 48


def test_connection_refused(make_connection):
    hook = EntsoePriceHook(
        make_connection(
            "entsoe_dead", "gridaware_entsoe", host="http://127.0.0.1:9", password=TOKEN, extra={"max_attempts": 2}
        )
    )
    check_connection_refused(lambda: hook.get_forecast("CZ"))


# -- units and values ------------------------------------------------------------------------------
def test_unknown_energy_unit(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10}, unit="MW h?")))
    with pytest.raises(UnknownUnitError, match=r"price_Measure_Unit\.name: 'MW H\?' is not an energy unit"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


def test_power_unit_is_not_an_energy_unit(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10}, unit="MAW")))
    with pytest.raises(UnknownUnitError, match="'MAW' is not an energy unit"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


def test_wrong_currency(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10}, currency="EURO")))
    with pytest.raises(UnknownUnitError, match=r"currency_Unit\.name 'EURO'.*ISO 4217"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


def test_other_currency_is_kept(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 1234.5}, currency="PLN")))
    series = hook.get_forecast("PL", start=DAY_START, end=DAY_END)
    assert series.unit == "PLN/MWh" and series.currency == "PLN" and series.values[0] == 1234.5


def test_price_per_kwh_is_converted(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 0.0812}, unit="KWH")))
    series = hook.get_forecast("CZ", start=DAY_START, end=DAY_END)
    assert series.unit == "EUR/MWh" and series.values[0] == pytest.approx(81.2)


def test_empty_publication_is_no_data(hook, scripted_server):
    scripted_server.add(API, document())
    with pytest.raises(NoSignalDataError, match="no day-ahead prices for CZ"):
        fixture_forecast(hook)


def test_nan_price_is_named_with_its_time(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10, 2: "NaN", 3: 12})))
    with pytest.raises(InvalidSignalError, match=r"points\[1\] \(2025-10-01T23:00:00Z\): value is nan"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


def test_garbled_price_is_named_with_its_point(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10, 2: "12,5"})))
    with pytest.raises(MalformedPayloadError, match=r"TimeSeries\[1\]/Period\[1\]/Point\[2\]/price\.amount"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


def test_position_outside_the_period_is_refused(hook, scripted_server):
    scripted_server.add(API, document(timeseries(DAY_START, DAY_END, {1: 10, 25: 12})))
    with pytest.raises(MalformedPayloadError, match=r"25 is outside 1\.\.24"):
        hook.get_forecast("CZ", start=DAY_START, end=DAY_END)


# -- ranges ----------------------------------------------------------------------------------------
def test_forecast_defaults_to_today_and_tomorrow_in_utc(hook, scripted_server):
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scripted_server.add(
        API,
        document(
            timeseries(today - timedelta(hours=2), today + timedelta(hours=22), {1: 1, 3: 3}),
            timeseries(today + timedelta(hours=22), today + timedelta(hours=46), {1: 4}),
        ),
    )
    series = hook.get_forecast("CZ")
    query = scripted_server.requests_to(API)[0].query
    assert query["periodStart"] == [today.strftime("%Y%m%d%H%M")]
    assert query["periodEnd"] == [(today + timedelta(days=2)).strftime("%Y%m%d%H%M")]
    # Points before the start of the UTC day are trimmed; the rest is forward-filled.
    assert series.start == today and series.end == today + timedelta(hours=46)
    assert series.values[0] == 3 and series.values[-1] == 4
    assert series.issued_at is not None


def test_actuals_are_chunked_to_one_year_and_merged(hook, scripted_server):
    start = datetime(2022, 12, 31, 23, 0, tzinfo=UTC)
    end = start + timedelta(days=400)
    boundary = start + timedelta(days=365)
    # Both chunks repeat the delivery day at the boundary; it must appear once.
    scripted_server.add(
        API,
        document(
            timeseries(start, start + timedelta(days=1), {1: 11}),
            timeseries(boundary - timedelta(days=1), boundary + timedelta(days=1), {1: 22, 30: 23}),
        ),
        document(
            timeseries(boundary - timedelta(days=1), boundary + timedelta(days=1), {1: 22, 30: 23}),
            timeseries(end - timedelta(days=1), end, {1: 33}),
        ),
    )
    series = hook.get_actuals("CZ", start, end)
    requests = scripted_server.requests_to(API)
    assert [(r.query["periodStart"][0], r.query["periodEnd"][0]) for r in requests] == [
        ("202212312300", boundary.strftime("%Y%m%d%H%M")),
        (boundary.strftime("%Y%m%d%H%M"), end.strftime("%Y%m%d%H%M")),
    ]
    assert series.series_type is SeriesType.ACTUAL and series.issued_at is None
    assert len(series) == 24 + 48 + 24
    assert series.value_at(boundary + timedelta(hours=10)) == 23
    assert series.values[0] == 11 and series.values[-1] == 33


def test_actuals_chunk_without_data_is_a_gap(hook, scripted_server):
    start = datetime(2022, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=366)
    boundary = start + timedelta(days=365)
    scripted_server.add(
        API,
        document(timeseries(start, start + timedelta(days=1), {1: 5})),
        Reply(200, acknowledgement(NO_DATA)),
    )
    series = hook.get_actuals("CZ", start, end)
    assert len(series) == 24 and series.end == start + timedelta(days=1)
    assert len(scripted_server.requests_to(API)) == 2
    assert scripted_server.requests_to(API)[1].query["periodStart"] == [boundary.strftime("%Y%m%d%H%M")]


def test_test_connection_reports_failure_without_the_token(hook, scripted_server):
    scripted_server.add(API, Reply(401, f"invalid token {TOKEN}"))
    ok, message = hook.test_connection()
    assert not ok and "HTTP 401" in message and TOKEN not in message


def test_naive_query_bounds_are_refused(hook, scripted_server):
    with pytest.raises(SourceConfigError, match="query end 2025-08-23T22:00:00 has no timezone"):
        hook.get_actuals("CZ", FIXTURE_START, FIXTURE_END.replace(tzinfo=None))
    assert scripted_server.requests == []
