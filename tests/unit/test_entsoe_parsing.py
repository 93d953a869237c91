"""Pure parsing rules of the ENTSO-E A44 adapter: durations, zones, safe XML, period merging."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.signals import MalformedPayloadError, SourceConfigError
from airflow_provider_gridaware.sources.entsoe import (
    BIDDING_ZONES,
    IsoDuration,
    PricePeriod,
    merge_points,
    parse_duration,
    parse_publication,
    parse_xml,
    select_periods,
    zone_eic,
)

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "months", "delta"),
    [
        ("PT15M", 0, timedelta(minutes=15)),
        ("PT30M", 0, timedelta(minutes=30)),
        ("PT60M", 0, timedelta(hours=1)),
        ("PT1H", 0, timedelta(hours=1)),
        ("pt1h30m", 0, timedelta(minutes=90)),
        ("P1D", 0, timedelta(days=1)),
        ("P1W", 0, timedelta(weeks=1)),
        ("P1DT12H", 0, timedelta(hours=36)),
        ("PT0.5S", 0, timedelta(milliseconds=500)),
        ("P1M", 1, timedelta(0)),
        ("P1Y", 12, timedelta(0)),
    ],
)
def test_iso_durations(text, months, delta):
    assert parse_duration(text) == IsoDuration(months, delta)


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "PT-15M", "15M", "PT0M", "P0D", "P1.5M", "PT15X"])
def test_bad_iso_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_monthly_steps_follow_the_calendar():
    step = parse_duration("P1M")
    start = datetime(2024, 1, 31, 23, tzinfo=UTC)
    assert step.after(start) == datetime(2024, 2, 29, 23, tzinfo=UTC)
    assert step.after(start, 2) == datetime(2024, 3, 31, 23, tzinfo=UTC)
    assert step.after(start, 12) == datetime(2025, 1, 31, 23, tzinfo=UTC)


def test_zone_table_holds_only_eic_codes():
    assert all(len(eic) == 16 and eic[2] == "Y" for eic in BIDDING_ZONES.values())
    assert zone_eic("DE") == zone_eic("DE-LU") == "10Y1001A1001A82H"
    assert zone_eic(" it_nord ") == zone_eic("IT-North") == "10Y1001A1001A73I"
    assert zone_eic("dk-1") == "10YDK-1--------W"
    assert zone_eic("10yfr-rte------c") == "10YFR-RTE------C"
    with pytest.raises(SourceConfigError, match="neither an EIC"):
        zone_eic("10YFR-RTE")


def test_billion_laughs_is_refused_not_expanded():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
    )
    with pytest.raises(MalformedPayloadError, match="refused"):
        parse_xml(bomb, where="GET test")


@pytest.mark.parametrize(
    "root",
    [
        '<Publication_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3">',
        '<ns2:Publication_MarketDocument xmlns:ns2="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:0">',
        "<Publication_MarketDocument>",
    ],
)
def test_namespaces_do_not_matter(root):
    close = root.split()[0].replace("<", "</").rstrip(">") + ">"
    prefix = "ns2:" if "ns2" in root else ""
    body = (
        f"{root}<{prefix}TimeSeries><{prefix}currency_Unit.name>EUR</{prefix}currency_Unit.name>"
        f"<{prefix}price_Measure_Unit.name>MWH</{prefix}price_Measure_Unit.name>"
        f"<{prefix}Period><{prefix}timeInterval><{prefix}start>2024-01-01T00:00Z</{prefix}start>"
        f"<{prefix}end>2024-01-01T02:00Z</{prefix}end></{prefix}timeInterval>"
        f"<{prefix}resolution>PT60M</{prefix}resolution>"
        f"<{prefix}Point><{prefix}position>2</{prefix}position><{prefix}price.amount>7</{prefix}price.amount></{prefix}Point>"
        f"</{prefix}Period></{prefix}TimeSeries>{close}"
    )
    document = parse_publication(parse_xml(body.encode(), where="GET test"))
    (period,) = document.periods
    # A01 by default: position 1 is missing and stays a gap.
    assert period.points == ((T0 + timedelta(hours=1), T0 + timedelta(hours=2), 7.0),)


def _period(start: datetime, hours: int, minutes: int, value: float, sequence: int | None = None) -> PricePeriod:
    step = timedelta(minutes=minutes)
    count = hours * 60 // minutes
    points = tuple((start + i * step, start + (i + 1) * step, value) for i in range(count))
    return PricePeriod(
        start, start + hours * timedelta(hours=1), IsoDuration(0, step), sequence, "EUR", "MWH", points, "x"
    )


def test_merge_prefers_finer_resolution_and_drops_repeats():
    hourly_day1 = _period(T0, 24, 60, 1.0)
    hourly_day1_again = _period(T0, 24, 60, 9.0)
    quarter_day1_morning = _period(T0, 6, 15, 2.0)
    merged = merge_points([hourly_day1, hourly_day1_again, quarter_day1_morning])
    assert [v for _, _, v in merged[:24]] == [2.0] * 24
    assert [v for _, _, v in merged[24:]] == [1.0] * 18
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(merged))


def test_sequence_selection_falls_back_to_the_lowest_position():
    two, three = _period(T0, 1, 60, 2.0, sequence=2), _period(T0, 1, 60, 3.0, sequence=3)
    assert select_periods([three, two]) == [two]
    main, plain = _period(T0, 1, 60, 1.0, sequence=1), _period(T0, 1, 60, 0.0)
    assert select_periods([two, main, plain]) == [main, plain]
