"""OpenADR 3 parsing on the real 3.0.1 and 3.1 shapes, and the edges: infinite durations, units, bad fields."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_gridaware.signals.errors import InvalidSignalError, MalformedPayloadError
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus
from airflow_provider_gridaware.sources.openadr3 import (
    MODIFICATION_EPOCH,
    OPEN_END,
    format_duration_iso,
    parse_duration,
    parse_event,
    parse_openadr3_notification,
    reset_discovery,
    sequence_modification,
)

UTC = timezone.utc
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openadr3"
SOURCE = "openadr3:vtn"
START = datetime(2026, 11, 26, 7, 8, 21, tzinfo=UTC)  # the fixtures' first interval


def shape(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def parse(event: dict[str, Any], at: datetime = START - timedelta(minutes=30), **kwargs: Any):
    return parse_event(event, source=SOURCE, received_at=at, **kwargs)


@pytest.mark.parametrize("name", ["example_event_3.0.1.json", "example_event_3.1.json"])
def test_real_shapes_normalise_the_same_way(name):
    event = parse(shape(name), programs={"program-1": "dr-peak"})
    assert event.event_id == "event-32" and event.program == "dr-peak" and event.priority == 1
    assert event.protocol == "openadr3" and event.status is EventStatus.NEAR
    assert event.start == START and event.end == START + timedelta(minutes=45)
    price = event.signal(EventSignalKind.PRICE)
    assert price is not None and price.unit == "EUR/MWh" and price.currency == "EUR"
    assert [i.value for i in price.intervals] == pytest.approx([310.0, 450.0, 280.0])  # EUR/kWh x 1000
    simple = event.signal(EventSignalKind.SIMPLE)
    assert simple is not None and [i.value for i in simple.intervals] == [1, 2, 1]
    limit = event.signal(EventSignalKind.IMPORT_CAPACITY_LIMIT)
    assert limit is not None and limit.unit == "kW" and [i.value for i in limit.intervals] == [11.0, 7.4, 11.0]
    # Neither shape has a modificationNumber: it is derived from modificationDateTime.
    modified = datetime(2026, 11, 26, 6, 53, 21, 428555, tzinfo=UTC)
    assert event.modification_number == int((modified - MODIFICATION_EPOCH).total_seconds())
    assert event.created_at == modified
    assert event.modification_number < 2**31  # fits the store's column


def test_targets_of_each_version():
    old = parse(shape("example_event_3.0.1.json"))
    new = parse(shape("example_event_3.1.json"))
    assert [(t.kind, t.value) for t in old.targets] == [("group", "group-airflow")]
    assert [(t.kind, t.value) for t in new.targets] == [("target", "group-airflow")]


def test_program_name_falls_back_to_the_id():
    # Names learned in this process (another test's VTN listed program-1 as "dr-peak") would win over the id.
    reset_discovery()
    assert parse(shape("example_event_3.1.json")).program == "program-1"


def test_an_explicit_modification_number_wins():
    event = shape("example_event_3.1.json")
    event["modificationNumber"] = 4
    assert parse(event).modification_number == 4
    event["modificationNumber"] = -1
    with pytest.raises(MalformedPayloadError, match=r"event 'event-32'\.modificationNumber"):
        parse(event)


def test_no_modification_time_at_all_is_number_zero():
    event = shape("example_event_3.1.json")
    del event["modificationDateTime"], event["createdDateTime"]
    assert parse(event).modification_number == 0


@pytest.mark.parametrize(
    ("at", "status"),
    [
        (START - timedelta(hours=3), EventStatus.FAR),
        (START - timedelta(minutes=59), EventStatus.NEAR),
        (START + timedelta(minutes=20), EventStatus.ACTIVE),
        (START + timedelta(minutes=45), EventStatus.COMPLETED),
    ],
)
def test_status_follows_the_intervals(at, status):
    assert parse(shape("example_event_3.1.json"), at).status is status


def test_open_ended_last_interval_p9999y():
    event = shape("example_event_3.1.json")
    event["intervals"][-1]["intervalPeriod"]["duration"] = "P9999Y"
    parsed = parse(event, START + timedelta(days=400))
    assert parsed.end == OPEN_END and parsed.status is EventStatus.ACTIVE


def test_do_it_now_event_starts_when_received():
    event = shape("example_event_3.1.json")
    event["intervalPeriod"] = {"start": "0001-01-01", "duration": "P9999Y"}
    event["intervals"] = [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [3]}]}]
    at = datetime(2026, 12, 1, tzinfo=UTC)
    parsed = parse(event, at)
    assert parsed.start == at and parsed.end == OPEN_END and parsed.status is EventStatus.ACTIVE


def test_open_ended_interval_before_another_is_refused_naming_it():
    event = shape("example_event_3.1.json")
    event["intervals"][0]["intervalPeriod"]["duration"] = "P9999Y"
    for interval in event["intervals"][1:]:
        del interval["intervalPeriod"]
    with pytest.raises(MalformedPayloadError, match=r"intervals\[0\]: an open-ended interval"):
        parse(event)


def test_event_default_period_lays_intervals_end_to_end():
    event = shape("example_event_3.1.json")
    event["intervalPeriod"] = {"start": "2026-11-26T07:00:00Z", "duration": "PT1H"}
    for interval in event["intervals"]:
        del interval["intervalPeriod"]
    event["intervals"][1]["intervalPeriod"] = {"duration": "PT30M"}  # a per-interval override
    simple = parse(event).signal(EventSignalKind.SIMPLE)
    assert simple is not None
    spans = [(i.start.strftime("%H:%M"), i.end.strftime("%H:%M")) for i in simple.intervals]
    assert spans == [("07:00", "08:00"), ("08:00", "08:30"), ("08:30", "09:30")]


def test_multi_valued_price_is_sub_intervals():
    event = shape("example_event_3.1.json")
    event["intervals"] = [
        {
            "id": 0,
            "intervalPeriod": {"start": "2026-11-26T00:00:00Z", "duration": "PT3H"},
            "payloads": [{"type": "PRICE", "values": [0.17, 0.03, 0.11]}],
        }
    ]
    price = parse(event, datetime(2026, 11, 25, tzinfo=UTC)).signal(EventSignalKind.PRICE)
    assert price is not None
    assert [(i.start.hour, i.end.hour, round(i.value, 6)) for i in price.intervals] == [
        (0, 1, 170.0),
        (1, 2, 30.0),
        (2, 3, 110.0),
    ]


def test_event_duration_clips_and_loops_intervals():
    event = shape("example_event_3.1.json")
    event["duration"] = "PT20M"
    clipped = parse(event)
    assert clipped.end == START + timedelta(minutes=20)
    event["duration"] = "PT2H"
    looped = parse(event).signal(EventSignalKind.SIMPLE)
    assert looped is not None and len(looped.intervals) == 8 and looped.intervals[-1].end == START + timedelta(hours=2)
    assert [i.value for i in looped.intervals[:6]] == [1, 2, 1, 1, 2, 1]
    event["duration"] = "P9999Y"  # for ever: spelled out a week past receipt
    forever = parse(event)
    assert forever.end is not None and forever.end >= START + timedelta(days=6)


def test_cancellation_by_convention():
    event = shape("example_event_3.1.json")
    event["intervalPeriod"] = {"start": "0001-01-01", "duration": "PT0S"}
    parsed = parse(event)
    assert parsed.status is EventStatus.CANCELLED and parsed.signals == ()


@pytest.mark.parametrize(
    ("units", "currency", "factor"), [("KWH", "EUR", 1000.0), ("MWH", "USD", 1.0), ("WH", "GBP", 1e6)]
)
def test_price_units(units, currency, factor):
    event = shape("example_event_3.1.json")
    event["payloadDescriptors"][0].update(units=units, currency=currency)
    price = parse(event).signal(EventSignalKind.PRICE)
    assert price is not None and price.unit == f"{currency}/MWh"
    assert price.intervals[0].value == pytest.approx(0.31 * factor)


@pytest.mark.parametrize(("units", "factor"), [("KW", 1.0), ("W", 0.001), ("MW", 1000.0), ("kw", 1.0)])
def test_capacity_units_become_kw(units, factor):
    event = shape("example_event_3.1.json")
    event["payloadDescriptors"][2]["units"] = units
    limit = parse(event).signal(EventSignalKind.IMPORT_CAPACITY_LIMIT)
    assert limit is not None and limit.intervals[0].value == pytest.approx(11.0 * factor)


def test_export_limit_and_other_payloads():
    event = shape("example_event_3.1.json")
    event["payloadDescriptors"].append({"payloadType": "EXPORT_CAPACITY_LIMIT", "units": "W"})
    event["payloadDescriptors"].append({"payloadType": "GHG", "units": "GHG"})
    event["intervals"][0]["payloads"] += [
        {"type": "EXPORT_CAPACITY_LIMIT", "values": [5000]},
        {"type": "GHG", "values": [210.5]},
        {"type": "ALERT_GRID_EMERGENCY", "values": ["call the operator"]},
    ]
    parsed = parse(event)
    export = parsed.signal(EventSignalKind.EXPORT_CAPACITY_LIMIT)
    assert export is not None and export.intervals[0].value == 5.0
    other = parsed.signal(EventSignalKind.OTHER)
    assert other is not None and other.name == "GHG" and other.unit == "GHG"
    assert "ALERT_GRID_EMERGENCY" not in {s.name for s in parsed.signals}  # text: no numeric signal to carry


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda e: e["payloadDescriptors"][0].update(currency=None), r"payloadType=PRICE\]\.currency"),
        (lambda e: e["payloadDescriptors"][0].update(units="THERMS"), r"payloadType=PRICE\]\.units"),
        (lambda e: e["payloadDescriptors"][2].update(units="AMPS"), r"payloadType=IMPORT_CAPACITY_LIMIT\]\.units"),
        (lambda e: e["intervals"][1]["payloads"][0].update(values="0.4"), r"intervals\[1\]\.payloads\[0\]\.values"),
        (
            lambda e: e["intervals"][2]["payloads"][2].update(values=["high"]),
            r"intervals\[2\]\.payloads\[2\]\.values\[0\]",
        ),
        (
            lambda e: e["intervals"][0]["intervalPeriod"].update(duration="15 minutes"),
            r"intervals\[0\]\.intervalPeriod\.duration",
        ),
        (
            lambda e: e["intervals"][0]["intervalPeriod"].update(start="yesterday"),
            r"intervals\[0\]\.intervalPeriod\.start",
        ),
        (lambda e: e.pop("intervals"), r"field 'intervals'"),
        (lambda e: e.pop("programID"), r"field 'programID'"),
        (lambda e: e.update(targets=[{"values": ["x"]}]), r"targets\[0\]"),
        (lambda e: e.update(priority="high"), r"\.priority"),
    ],
)
def test_malformed_fields_are_named(change, named):
    event = shape("example_event_3.1.json")
    change(event)
    with pytest.raises(MalformedPayloadError, match=named) as caught:
        parse(event)
    assert "event 'event-32'" in str(caught.value)


def test_simple_level_out_of_range_is_an_invalid_signal():
    event = shape("example_event_3.1.json")
    event["intervals"][0]["payloads"][1]["values"] = [7]
    with pytest.raises(InvalidSignalError, match="level 7"):
        parse(event)


# -- durations ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("P2W", timedelta(days=14)),
        ("PT0.5S", timedelta(seconds=0.5)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text, source=SOURCE, where="d").after(START) == START + expected


def test_calendar_durations_and_infinity():
    jan31 = datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_duration("P1M", source=SOURCE, where="d").after(jan31) == datetime(2027, 2, 28, tzinfo=UTC)
    assert parse_duration("P1Y", source=SOURCE, where="d").after(jan31) == datetime(2028, 1, 31, tzinfo=UTC)
    assert parse_duration("P9999Y", source=SOURCE, where="d").infinite
    assert parse_duration("P8000Y", source=SOURCE, where="d").after(jan31) == OPEN_END  # past year 9999
    with pytest.raises(MalformedPayloadError, match="negative"):
        parse_duration("-PT1H", source=SOURCE, where="d")


@given(
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650)).map(
        lambda d: timedelta(seconds=int(d.total_seconds()))
    )
)
def test_duration_text_round_trips(value):
    assert parse_duration(format_duration_iso(value), source=SOURCE, where="d").after(START) == START + value


# -- notifications -----------------------------------------------------------------------------------
def test_notification_of_the_3_1_shape():
    body = (FIXTURES / "example_notification_3.1.json").read_bytes()
    events = parse_openadr3_notification(body, source=SOURCE, received_at=datetime(2026, 11, 26, 7, 10, tzinfo=UTC))
    assert [(e.event_id, e.status) for e in events] == [("event-3", EventStatus.ACTIVE)]
    assert events[0].signal(EventSignalKind.PRICE) is not None


def test_delete_notification_is_a_cancellation_of_the_same_modification():
    note = shape("example_notification_3.1.json")
    at = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    live = parse_openadr3_notification(note, source=SOURCE, received_at=at)[0]
    note["operation"] = "DELETE"
    (gone,) = parse_openadr3_notification(note, source=SOURCE, received_at=at)
    assert gone.status is EventStatus.CANCELLED and gone.modification_number == live.modification_number


def test_crud_operations_of_the_3_1_schema_and_other_objects():
    note = shape("example_notification_3.1.json")
    note["operation"] = "UPDATE"
    assert len(parse_openadr3_notification(note, source=SOURCE, received_at=START)) == 1
    program = {"objectType": "PROGRAM", "operation": "POST", "object": {"id": "program-1", "programName": "x"}}
    assert parse_openadr3_notification(program, source=SOURCE, received_at=START) == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not JSON"),
        ({"operation": "POST", "object": {}}, "objectType"),
        ({"objectType": "EVENT", "operation": "PATCH", "object": {}}, "operation"),
        ({"objectType": "EVENT", "operation": "POST"}, "'object'"),
    ],
)
def test_malformed_notifications_are_named(body, named):
    with pytest.raises(MalformedPayloadError, match=named):
        parse_openadr3_notification(body, source=SOURCE, received_at=START)


# -- sequencing modifications within one second ------------------------------------------------------------
def test_same_second_modification_gets_the_next_number():
    original = parse(shape("example_event_3.1.json"))
    changed = copy.deepcopy(shape("example_event_3.1.json"))
    changed["intervals"][0]["payloads"][1]["values"] = [3]
    changed["modificationDateTime"] = "2026-11-26T06:53:21.900000Z"  # same second, later
    later = parse(changed)
    assert later.modification_number == original.modification_number
    placed = sequence_modification(later, original)
    assert placed.modification_number == original.modification_number + 1
    # Seen again (its derived number is lower than the stored one now): same content keeps the stored number.
    assert sequence_modification(later, placed).modification_number == placed.modification_number
    # An older modification stays older (the store calls it stale).
    assert sequence_modification(original, placed).modification_number == original.modification_number
