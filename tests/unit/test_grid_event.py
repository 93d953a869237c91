"""GridEvent: one validated record for every DR protocol, and the store's event log on SQLite."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from airflow_provider_gridaware.signals.errors import InvalidSignalError
from airflow_provider_gridaware.signals.grid_event import (
    EventInterval,
    EventSignal,
    EventSignalKind,
    EventStatus,
    GridEvent,
    latest_states,
)
from airflow_provider_gridaware.signals.units import SeriesType, SignalKind
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from tests.support.grid_events import T0, make_event, price_signal, simple_signal

HOUR = timedelta(hours=1)


# -- the model -------------------------------------------------------------------------------------------
def test_identity_span_and_json_round_trip():
    event = make_event(signals=(simple_signal(levels=(1, 3)), price_signal(prices=(90.0, 300.0))))
    assert event.identity == ("openadr2b:vtn", "event-1", 0)
    assert (event.start, event.end) == (T0, T0 + 2 * HOUR)
    assert GridEvent.from_json(event.to_json()) == event


def test_level_and_status_follow_the_intervals_not_a_lagging_party():
    event = make_event(status=EventStatus.FAR, signals=(simple_signal(levels=(1, 3)),))
    assert event.level_at(T0 - HOUR) == 0
    assert event.level_at(T0) == 1
    assert event.level_at(T0 + HOUR + timedelta(minutes=5)) == 3
    assert event.level_at(T0 + 2 * HOUR) == 0
    assert event.status_at(T0 - HOUR) is EventStatus.FAR
    assert event.status_at(T0 + HOUR) is EventStatus.ACTIVE
    assert event.status_at(T0 + 2 * HOUR) is EventStatus.COMPLETED
    cancelled = make_event(status=EventStatus.CANCELLED)
    assert cancelled.level_at(T0) == 0 and cancelled.status_at(T0) is EventStatus.CANCELLED


def test_price_signal_becomes_an_ordinary_price_forecast():
    event = make_event(signals=(simple_signal(), price_signal(prices=(90.0, 300.0))), created_at=T0 - 3 * HOUR)
    series = event.price_series(zone="DE")
    assert series is not None
    assert series.kind is SignalKind.PRICE and series.series_type is SeriesType.FORECAST
    assert (series.currency, series.unit, series.zone) == ("EUR", "EUR/MWh", "DE")
    assert series.issued_at == T0 - 3 * HOUR
    assert series.values == [90.0, 300.0]
    assert make_event().price_series(zone="DE") is None
    assert make_event(status=EventStatus.CANCELLED, signals=(price_signal(),)).price_series(zone="DE") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modification_number": -1}, "modification_number"),
        ({"event_id": ""}, "event_id"),
        ({"protocol": "smoke-signals"}, "protocol"),
        ({"signals": ()}, "no signal"),
        ({"received_at": T0.replace(tzinfo=None)}, "received_at"),
    ],
)
def test_bad_events_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(InvalidSignalError, match=message):
        make_event(**overrides)


def test_a_cancellation_may_carry_no_signal():
    assert make_event(status=EventStatus.CANCELLED, signals=()).start is None


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        ({"kind": EventSignalKind.SIMPLE, "name": "SIMPLE", "unit": "level", "value": 4}, "not 0-3"),
        ({"kind": EventSignalKind.PRICE, "name": "P", "unit": "EUR/kWh", "currency": "EUR", "value": 1}, "EUR/MWh"),
        ({"kind": EventSignalKind.PRICE, "name": "P", "unit": "/MWh", "currency": None, "value": 1}, "currency"),
        ({"kind": EventSignalKind.IMPORT_CAPACITY_LIMIT, "name": "L", "unit": "W", "value": 1}, "kW"),
    ],
)
def test_bad_signals_are_refused(signal, message):
    value = signal.pop("value")
    with pytest.raises(ValueError, match=message):
        EventSignal(**signal, intervals=(EventInterval(start=T0, end=T0 + HOUR, value=value),))


def test_overlapping_or_empty_intervals_are_refused():
    with pytest.raises(ValueError, match="ends at or before"):
        EventInterval(start=T0, end=T0, value=1)
    with pytest.raises(ValueError, match="overlaps"):
        EventSignal(
            kind=EventSignalKind.SIMPLE,
            name="SIMPLE",
            unit="level",
            intervals=(
                EventInterval(start=T0, end=T0 + HOUR, value=1),
                EventInterval(start=T0 + timedelta(minutes=30), end=T0 + 2 * HOUR, value=2),
            ),
        )


def test_latest_states_takes_the_highest_modification_then_the_latest_arrival():
    first = make_event()
    modified = make_event(modification_number=1, received_at=first.received_at + HOUR)
    active = make_event(modification_number=1, status=EventStatus.ACTIVE, received_at=T0)
    other = make_event(event_id="event-2")
    latest = latest_states([active, first, other, modified])
    assert latest[("openadr2b:vtn", "event-1")] == active
    assert latest[("openadr2b:vtn", "event-2")] == other


# -- the store's event log ---------------------------------------------------------------------------------
@pytest.fixture
def events(tmp_path):
    with EventStore(f"sqlite:///{tmp_path / 'store.db'}", clock=lambda: T0 - HOUR) as store:
        yield store


def test_record_tells_new_status_modified_duplicate_and_stale(events):
    first = make_event()
    assert events.record(first).outcome is RecordOutcome.NEW
    assert events.record(first).outcome is RecordOutcome.DUPLICATE
    near = make_event(status=EventStatus.NEAR)
    recorded = events.record(near)
    assert recorded.outcome is RecordOutcome.STATUS and recorded.previous == first
    modified = make_event(modification_number=2, signals=(simple_signal(levels=(3,)),))
    assert events.record(modified).outcome is RecordOutcome.MODIFIED
    assert events.record(make_event(modification_number=1)).outcome is RecordOutcome.STALE
    assert events.latest("openadr2b:vtn", "event-1") == modified
    assert [s.event for s in events.since(0)] == [first, near, modified]
    assert events.last_seq() == events.since(0)[-1].seq


def test_same_event_id_from_two_sources_are_two_events(events):
    events.record(make_event())
    assert events.record(make_event(source="webhook:utility", protocol="webhook")).outcome is RecordOutcome.NEW
    assert len(events.current(now=T0 - HOUR)) == 2


def test_since_tails_the_log_and_survives_reopening(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(url) as store:
        store.record(make_event())
        cursor = store.last_seq()
        store.record(make_event(event_id="event-2"))
    with EventStore(url) as reopened:
        assert [s.event.event_id for s in reopened.since(cursor)] == ["event-2"]
        assert reopened.since(reopened.last_seq()) == []


def test_current_leaves_out_finished_and_cancelled_events(events):
    events.record(make_event(event_id="over", signals=(simple_signal(start=T0 - 5 * HOUR),)))
    events.record(make_event(event_id="cancelled"))
    events.record(make_event(event_id="cancelled", modification_number=1, status=EventStatus.CANCELLED, signals=()))
    events.record(make_event(event_id="later", signals=(simple_signal(start=T0 + 5 * HOUR),)))
    events.record(make_event(event_id="soon"))
    assert [e.event_id for e in events.current(now=T0 - HOUR)] == ["soon", "later"]
    assert {e.event_id for e in events.current(now=T0 - HOUR, include_final=True)} == {
        "over",
        "cancelled",
        "later",
        "soon",
    }


def test_concurrent_writers_store_each_state_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    EventStore(url).close()
    outcomes: list[RecordOutcome] = []

    def write() -> None:
        with EventStore(url) as store:
            for modification in range(5):
                outcomes.append(store.record(make_event(modification_number=modification)).outcome)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with EventStore(url) as store:
        assert [s.event.modification_number for s in store.since(0)] == [0, 1, 2, 3, 4]
    assert sum(o.stored for o in outcomes) == 5
