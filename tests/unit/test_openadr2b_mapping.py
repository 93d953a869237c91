"""OpenADR 2.0b -> GridEvent: the captured openleadr messages and every signal, status and field mapping."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.signals.errors import MalformedPayloadError, SourceConfigError, SourceRequestError
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus
from airflow_provider_gridaware.sources.openadr2b import (
    OptPolicy,
    event_from_openleadr,
    events_from_distribution,
    normalise_fingerprint,
    parse_distribute_event,
)
from airflow_provider_gridaware.times import UTC
from tests.support.grid_events import make_event

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openadr2b"
SOURCE = "openadr2b:vtn"
T0 = datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_installed_openleadr_is_at_least_0_5_36():
    # A bare `openleadr` resolves to an empty 0.0.1 placeholder (uv) or a 2020 release (pip).
    assert _version(version("openleadr")) >= (0, 5, 36)


def test_xmltodict_is_the_0_13_openleadr_needs():
    # xmltodict 1.x adds "@xmlns" keys to every parsed element and breaks openleadr's parser.
    assert _version(version("xmltodict")) < (1, 0, 0)


def test_pip_check_is_clean_with_the_openadr_extra():
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["none", "rsa", "ec"])
def test_captured_distributions(name: str):
    xml = (FIXTURES / f"example_oadrDistributeEvent_{name}.xml").read_bytes()
    received = datetime(2026, 11, 26, 6, 50, tzinfo=UTC)
    distribution = parse_distribute_event(xml, source=SOURCE, received_at=received, expected_vtn_id="DRPROTO_VTN")
    assert distribution.vtn_id == "DRPROTO_VTN" and not distribution.rejected
    (event,) = distribution.events
    assert event.protocol == "openadr2b" and event.source == SOURCE
    assert event.program == "http://drproto.local/programs/dr-price"
    assert event.status is EventStatus.FAR and event.modification_number == 0 and event.priority == 1
    assert event.response_required and not event.test_event
    assert [(t.kind, t.value) for t in event.targets] == [("ven_id", "ven-airflow-1")]
    assert event.created_at is not None and event.created_at.tzinfo is not None
    simple = event.signal(EventSignalKind.SIMPLE)
    assert simple is not None and [i.value for i in simple.intervals] == [1, 2, 1]
    assert all(i.duration == timedelta(minutes=15) for i in simple.intervals)
    price = event.signal(EventSignalKind.PRICE)
    assert price is not None and price.currency == "EUR" and price.unit == "EUR/MWh"
    assert [i.value for i in price.intervals] == [310.0, 450.0, 280.0]  # 0.31 EUR/kWh = 310 EUR/MWh
    series = event.price_series(zone="DE")
    assert series is not None and series.unit == "EUR/MWh" and len(series.points) == 3


def test_a_message_from_another_vtn_is_refused():
    xml = (FIXTURES / "example_oadrDistributeEvent_none.xml").read_bytes()
    with pytest.raises(SourceConfigError, match="vtnID 'DRPROTO_VTN', the connection expects 'MY_VTN'"):
        parse_distribute_event(xml, source=SOURCE, expected_vtn_id="MY_VTN")


def test_a_message_failing_the_schema_is_malformed():
    xml = (
        (FIXTURES / "example_oadrDistributeEvent_none.xml")
        .read_text()
        .replace("<ei:eventStatus>far", "<ei:eventStatus>soon")
    )
    with pytest.raises(MalformedPayloadError, match=r"OpenADR 2\.0b schema"):
        parse_distribute_event(xml, source=SOURCE)


def _interval(start: datetime, minutes: int, value: float, uid: int) -> dict[str, Any]:
    return {"dtstart": start, "duration": timedelta(minutes=minutes), "signal_payload": value, "uid": uid}


def _raw(signals: list[dict[str, Any]], **descriptor: Any) -> dict[str, Any]:
    return {
        "event_descriptor": {
            "event_id": "e1",
            "modification_number": 3,
            "event_status": "near",
            "market_context": "oadr://program",
            "priority": 0,
            "test_event": False,
            "created_date_time": T0 - timedelta(hours=1),
            **descriptor,
        },
        "active_period": {"dtstart": T0, "duration": timedelta(hours=1)},
        "event_signals": signals,
        "targets": [{"ven_id": "v1"}, {"resource_id": "r1"}, {"group_id": "g1"}, {"party_id": "p1"}],
        "response_required": "never",
    }


def _signal(name: str, signal_type: str, values: list[float], **item: Any) -> dict[str, Any]:
    return {
        "signal_name": name,
        "signal_type": signal_type,
        "signal_id": "s",
        "intervals": [_interval(T0 + timedelta(minutes=30 * i), 30, v, i) for i, v in enumerate(values)],
        **item,
    }


def test_fields_targets_priority_and_flags():
    event = event_from_openleadr(_raw([_signal("SIMPLE", "level", [3])]), source=SOURCE, received_at=T0)
    assert event.status is EventStatus.NEAR and event.modification_number == 3
    assert event.priority is None  # OpenADR priority 0 = no priority
    assert not event.response_required
    assert [(t.kind, t.value) for t in event.targets] == [
        ("ven_id", "v1"),
        ("resource_id", "r1"),
        ("group_id", "g1"),
        ("party_id", "p1"),
    ]
    tested = event_from_openleadr(
        _raw([_signal("SIMPLE", "level", [1])], test_event="testParams=a", priority=4), source=SOURCE, received_at=T0
    )
    assert tested.test_event and tested.priority == 4


@pytest.mark.parametrize(
    ("now", "status"),
    [
        (T0 - timedelta(minutes=1), EventStatus.FAR),
        (T0 + timedelta(minutes=40), EventStatus.ACTIVE),
        (T0 + timedelta(hours=2), EventStatus.COMPLETED),
    ],
)
def test_status_none_is_read_from_the_intervals(now: datetime, status: EventStatus):
    raw = _raw([_signal("SIMPLE", "level", [1, 2])], event_status="none")
    assert event_from_openleadr(raw, source=SOURCE, received_at=now).status is status


@pytest.mark.parametrize("status", ["far", "near", "active", "completed", "cancelled"])
def test_every_openadr_status(status: str):
    raw = _raw([_signal("SIMPLE", "level", [1])], event_status=status)
    assert event_from_openleadr(raw, source=SOURCE, received_at=T0).status.value == status


def test_intervals_without_their_own_start_follow_the_active_period():
    signal = _signal("SIMPLE", "level", [1, 2])
    for interval in signal["intervals"]:
        interval.pop("dtstart")
    event = event_from_openleadr(_raw([signal]), source=SOURCE, received_at=T0)
    assert [(i.start, i.end) for i in event.signals[0].intervals] == [
        (T0, T0 + timedelta(minutes=30)),
        (T0 + timedelta(minutes=30), T0 + timedelta(hours=1)),
    ]


@pytest.mark.parametrize(
    ("signal", "kind", "unit", "values"),
    [
        (
            _signal(
                "ELECTRICITY_PRICE",
                "price",
                [12.5],
                currency={"item_description": "currencyPerKWh", "item_units": "USD", "si_scale_code": "c"},
            ),
            EventSignalKind.PRICE,
            "USD/MWh",
            [125.0],  # 12.5 US cents per kWh
        ),
        (
            _signal(
                "ENERGY_PRICE",
                "price",
                [80],
                currency={"item_description": "currencyPerMWh", "item_units": "gbp", "si_scale_code": "none"},
            ),
            EventSignalKind.PRICE,
            "GBP/MWh",
            [80.0],
        ),
        (_signal("LOAD_CONTROL", "x-loadControlCapacity", [0.25]), EventSignalKind.DER_SETPOINT, "percent", [25.0]),
        (
            _signal(
                "LOAD_DISPATCH",
                "setpoint",
                [50000],
                measurement={"name": "powerReal", "description": "RealPower", "unit": "W", "scale": "none"},
            ),
            EventSignalKind.DER_SETPOINT,
            "kW",
            [50.0],
        ),
        (
            _signal(
                "x-IMPORT_CAPACITY_LIMIT",
                "setpoint",
                [2],
                measurement={"name": "powerReal", "description": "RealPower", "unit": "W", "scale": "M"},
            ),
            EventSignalKind.IMPORT_CAPACITY_LIMIT,
            "kW",
            [2000.0],
        ),
        (
            _signal(
                "x-EXPORT_CAPACITY_LIMIT",
                "setpoint",
                [1.5],
                measurement={"name": "powerReal", "description": "RealPower", "unit": "MW", "scale": "none"},
            ),
            EventSignalKind.EXPORT_CAPACITY_LIMIT,
            "kW",
            [1500.0],
        ),
        (_signal("BID_LOAD", "setpoint", [7]), EventSignalKind.OTHER, None, [7.0]),
    ],
    ids=[
        "price-cents-per-kwh",
        "price-per-mwh",
        "load-control",
        "load-dispatch-w",
        "import-limit",
        "export-limit",
        "other",
    ],
)
def test_signal_kinds_and_units(signal: dict[str, Any], kind: EventSignalKind, unit: str | None, values: list[float]):
    (mapped,) = event_from_openleadr(_raw([signal]), source=SOURCE, received_at=T0).signals
    assert (mapped.kind, mapped.unit, [i.value for i in mapped.intervals]) == (kind, unit, values)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({}, "price item None is not an energy price"),
        (
            {"currency": {"item_description": "currencyPerKW", "item_units": "EUR"}},
            "'currencyPerKW' is not an energy price",
        ),
        (
            {"currency": {"item_description": "currencyPerKWh", "item_units": "euro"}},
            "currency 'euro' is not an ISO 4217",
        ),
        (
            {"currency": {"item_description": "currencyPerKWh", "item_units": "EUR", "si_scale_code": "x"}},
            "siScaleCode 'x'",
        ),
    ],
)
def test_a_bad_price_rejects_that_event_only(item: dict[str, Any], reason: str):
    good = _raw([_signal("SIMPLE", "level", [1])], event_id="good")
    bad = _raw([_signal("ELECTRICITY_PRICE", "price", [0.3], **item)], event_id="bad")
    bad["response_required"] = "always"
    payload = {"vtn_id": "VTN", "request_id": "r1", "response": {"response_code": 200}, "events": [good, bad]}
    distribution = events_from_distribution(payload, source=SOURCE, received_at=T0)
    assert [e.event_id for e in distribution.events] == ["good"]
    (rejected,) = distribution.rejected
    assert rejected.event_id == "bad" and rejected.modification_number == 3 and rejected.response_required
    assert reason in rejected.reason


def test_a_simple_level_out_of_range_is_rejected():
    payload = {"vtn_id": "VTN", "events": [_raw([_signal("SIMPLE", "level", [5])])]}
    (rejected,) = events_from_distribution(payload, source=SOURCE, received_at=T0).rejected
    assert "level 5.0" in rejected.reason and "not 0-3" in rejected.reason


def test_an_openadr_error_code_is_a_request_error():
    payload = {"vtn_id": "VTN", "response": {"response_code": 463, "response_description": "signal not supported"}}
    with pytest.raises(SourceRequestError, match="OpenADR code 463: signal not supported"):
        events_from_distribution(payload, source=SOURCE, received_at=T0)


@pytest.mark.parametrize(
    "text",
    [
        "ab:cd:ef:01:23:45:67:89:0a:bc",
        "ABCDEF01234567890ABC",
        "00" * 22 + "ABCDEF01234567890ABC",  # a full SHA-256: OpenADR uses its last 10 bytes
    ],
)
def test_fingerprints_are_normalised(text: str):
    assert normalise_fingerprint(text) == "AB:CD:EF:01:23:45:67:89:0A:BC"


def test_a_malformed_fingerprint_is_a_config_error():
    with pytest.raises(SourceConfigError, match="neither 10 colon-separated bytes"):
        normalise_fingerprint("AB:CD")


def test_opt_policies():
    real, test = make_event(), make_event(test_event=True)
    assert [OptPolicy.OPT_IN.decide(e) for e in (real, test)] == ["optIn", "optIn"]
    assert [OptPolicy.OPT_OUT_TEST_EVENTS.decide(e) for e in (real, test)] == ["optIn", "optOut"]
    assert [OptPolicy.OPT_OUT.decide(e) for e in (real, test)] == ["optOut", "optOut"]
    assert OptPolicy.parse(None) is OptPolicy.OPT_IN
    with pytest.raises(SourceConfigError, match="opt_policy 'maybe' is not one of"):
        OptPolicy.parse("maybe")
