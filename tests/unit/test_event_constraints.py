"""Grid-event prices reach the planner as an ordinary price series: a window avoids a called peak."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot, overlay_event_prices
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.planner import ZoneSignals, plan_job, prepare
from airflow_provider_gridaware.signals.grid_event import EventStatus, EventTarget
from airflow_provider_gridaware.signals.models import SignalSeries, build_series
from airflow_provider_gridaware.signals.units import SeriesType, SignalKind
from tests.support.grid_events import T0, make_event, price_signal

HOUR = timedelta(hours=1)
DE = (EventTarget(kind="zone", value="DE"),)


def day_ahead(values: list[float], zone: str = "DE", currency: str = "EUR") -> SignalSeries:
    return build_series(
        kind=SignalKind.PRICE,
        zone=zone,
        source="entsoe",
        series_type=SeriesType.FORECAST,
        unit=f"{currency}/MWh",
        currency=currency,
        issued_at=T0 - 12 * HOUR,
        points=[(T0 + i * HOUR, T0 + (i + 1) * HOUR, v) for i, v in enumerate(values)],
    )


def peak_event(**overrides):
    fields = {
        "signals": (price_signal(start=T0 + 2 * HOUR + timedelta(minutes=30), prices=(400.0, 500.0)),),
        "targets": DE,
    }
    return make_event(**{**fields, **overrides})


def test_the_event_price_replaces_the_market_price_over_its_intervals_only():
    base = day_ahead([50.0] * 6)
    overlaid = overlay_event_prices(base, [peak_event()])
    assert [(p.start - T0, p.value) for p in overlaid.points] == [
        (0 * HOUR, 50.0),
        (1 * HOUR, 50.0),
        (2 * HOUR, 50.0),  # cut at the event's start
        (2.5 * HOUR, 400.0),
        (3.5 * HOUR, 500.0),
        (4.5 * HOUR, 50.0),  # the rest of the hour the event ends in
        (5 * HOUR, 50.0),
    ]
    assert overlaid.points[2].end == T0 + 2.5 * HOUR
    assert overlaid.source == "entsoe+events" and overlaid.issued_at == base.issued_at


def test_other_zones_cancelled_events_and_other_currencies_leave_the_series_alone(caplog):
    base = day_ahead([50.0] * 6)
    assert overlay_event_prices(base, [peak_event(targets=(EventTarget(kind="zone", value="NL"),))]) is base
    assert overlay_event_prices(base, [peak_event(status=EventStatus.CANCELLED)]) is base
    assert overlay_event_prices(base, [peak_event(targets=())]) is base  # a party that named no zone
    with caplog.at_level(logging.WARNING):
        pounds = peak_event(signals=(price_signal(start=T0, prices=(900.0,), currency="GBP"),))
        assert overlay_event_prices(base, [pounds]) is base
    assert "it is in GBP/MWh, the zone's prices are in EUR/MWh" in caplog.text


def test_where_events_overlap_the_one_received_last_wins():
    first = peak_event(event_id="a", signals=(price_signal(start=T0, prices=(100.0, 100.0)),))
    later = peak_event(
        event_id="b", received_at=first.received_at + HOUR, signals=(price_signal(start=T0 + HOUR, prices=(300.0,)),)
    )
    overlaid = overlay_event_prices(day_ahead([50.0] * 3), [later, first])
    assert [p.value for p in overlaid.points] == [100.0, 300.0, 50.0]


def test_a_snapshot_builds_each_overlay_once_and_passes_unaffected_zones_through():
    snapshot = GridEventSnapshot([peak_event()])
    de, nl = day_ahead([50.0] * 6), day_ahead([50.0] * 6, zone="NL")
    first = snapshot.apply({"DE": de, "NL": nl})
    assert first["NL"] is nl and first["DE"] is not de
    assert snapshot.apply({"DE": de})["DE"] is first["DE"]  # the planner's grid cache keys on identity


def test_a_price_job_plans_around_a_called_peak_before_it_starts():
    # The market is cheapest at hours 2-4; the utility calls a peak there. Without the event the job would
    # wait for it; with it, the job runs in the next-cheapest hours instead.
    base = day_ahead([60.0, 60.0, 40.0, 40.0, 40.0, 55.0, 55.0, 60.0])
    event = peak_event(signals=(price_signal(start=T0 + 2 * HOUR, prices=(400.0, 400.0, 400.0)),))
    job = Job(
        duration=2 * HOUR,
        earliest_start=T0,
        deadline=T0 + 8 * HOUR,
        zones=("DE",),
        carbon_weight=0.0,
        price_weight=1.0,
        job_id="train",
    )

    def planned_start(price: SignalSeries):
        grid = prepare([ZoneSignals(zone="DE", price=price)], now=T0, until=job.deadline)
        return plan_job(job, grid, now=T0).chunks[0].start

    assert planned_start(base) == T0 + 2 * HOUR
    assert planned_start(GridEventSnapshot([event]).overlay(base)) == T0 + 5 * HOUR


async def _read_shared():
    from airflow_provider_gridaware.triggers.shared_events import shared_grid_events

    return await shared_grid_events().get()


def test_the_triggerer_reads_the_stores_events_once_and_goes_on_without_a_store(tmp_path, monkeypatch, caplog):
    import asyncio

    from airflow_provider_gridaware.hooks.store import close_shared_archives
    from airflow_provider_gridaware.store.events import EventStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(url, clock=lambda: T0) as store:
        store.record(peak_event(signals=(price_signal(start=T0 + 3650 * 24 * HOUR),)))
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    try:
        snapshot = asyncio.run(_read_shared())
        assert snapshot is not None and [e.event_id for e in snapshot.events] == ["event-1"]
        close_shared_archives()
        monkeypatch.setenv("GRIDAWARE_STORE_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
        with caplog.at_level(logging.WARNING):
            assert asyncio.run(_read_shared()) is None
        assert "planning on the last ones read" in caplog.text
    finally:
        close_shared_archives()


# -- called events are blocked out for flexible and batch work -------------------------------------------------
def carbon(values: list[float], zone: str = "DE") -> SignalSeries:
    from airflow_provider_gridaware.signals.units import CarbonMetric

    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone=zone,
        source="t",
        series_type=SeriesType.FORECAST,
        unit="gCO2eq/kWh",
        issued_at=T0,
        points=[(T0 + i * HOUR, T0 + (i + 1) * HOUR, v) for i, v in enumerate(values)],
    )


def shed_event(levels=(2, 2, 2), start=T0 + 2 * HOUR, **overrides):
    from tests.support.grid_events import simple_signal

    return make_event(**{"signals": (simple_signal(start=start, levels=levels),), "targets": DE, **overrides})


def _decide(job: Job, events: list, values: list[float]):
    from airflow_provider_gridaware.planning.decision import decide

    grid = prepare([ZoneSignals(zone="DE", carbon=carbon(values))], now=T0, until=job.deadline)
    grid = GridEventSnapshot([*events]).block(grid, job) if events else grid
    return decide(job, grid, T0, None, refresh=timedelta(minutes=30), problems=[])


def _job(**overrides) -> Job:
    fields = {"duration": 2 * HOUR, "earliest_start": T0, "deadline": T0 + 10 * HOUR, "zones": ("DE",)}
    return Job(**{**fields, **overrides})


CLEANEST_IN_THE_EVENT = [300.0, 300.0, 50.0, 50.0, 50.0, 200.0, 200.0, 250.0, 300.0, 300.0]


def test_flexible_work_is_not_placed_inside_a_called_event():
    assert _decide(_job(), [], CLEANEST_IN_THE_EVENT).plan.chunks[0].start == T0 + 2 * HOUR
    decision = _decide(_job(), [shed_event()], CLEANEST_IN_THE_EVENT)
    assert decision.action == "wait"
    assert decision.plan.chunks[0].start >= T0 + 5 * HOUR  # after the event, in the next-cleanest hours


def test_level_0_test_cancelled_and_other_zone_events_block_nothing():
    for event in (
        shed_event(levels=(0, 0, 0)),
        shed_event(test_event=True),
        shed_event(status=EventStatus.CANCELLED),
        shed_event(targets=(EventTarget(kind="zone", value="NL"),)),
    ):
        assert _decide(_job(), [event], CLEANEST_IN_THE_EVENT).plan.chunks[0].start == T0 + 2 * HOUR, event


def test_critical_work_is_never_held_by_an_event():
    from airflow_provider_gridaware.planning.job import PriorityClass

    decision = _decide(_job(priority_class=PriorityClass.CRITICAL), [shed_event(start=T0)], CLEANEST_IN_THE_EVENT)
    assert decision.action == "release"


def test_an_event_covering_everything_still_keeps_the_deadline():
    job = _job()
    decision = _decide(job, [shed_event(start=T0, levels=(3,) * 10)], CLEANEST_IN_THE_EVENT)
    assert decision.action == "wait" and decision.wake_at is not None and decision.wake_at <= job.latest_start
    at_latest = decision_at(job, shed_event(start=T0, levels=(3,) * 10), job.latest_start)
    assert at_latest.action == "release"


def decision_at(job: Job, event, now):
    from airflow_provider_gridaware.planning.decision import decide

    grid = prepare([ZoneSignals(zone="DE", carbon=carbon(CLEANEST_IN_THE_EVENT))], now=now, until=job.deadline)
    return decide(
        job, GridEventSnapshot([event]).block(grid, job), now, None, refresh=timedelta(minutes=30), problems=[]
    )


def test_the_configured_response_policy_reaches_waiting_and_running_work(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_gridaware.hooks.grid_event_base import configured_response_policy
    from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY, ResponsePolicy

    monkeypatch.setenv("AIRFLOW__GRIDAWARE__RESPONSE_POLICY", '{"simple_min_level": {"flexible": 2}}')
    assert configured_response_policy() == ResponsePolicy.from_config({"simple_min_level": {"flexible": 2}})
    assert configured_response_policy() != DEFAULT_POLICY
    # A policy that does not parse: said once, naming the key, and the defaults keep waiting work out of events.
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__RESPONSE_POLICY", '{"simple_min_level": {"flexible": 7}}')
    with caplog.at_level("ERROR"):
        assert configured_response_policy() == DEFAULT_POLICY
        assert configured_response_policy() == DEFAULT_POLICY
    assert [r.getMessage() for r in caplog.records].count(
        "[gridaware] response_policy is not valid, the defaults apply: "
        "simple_min_level.flexible: 7 is not 1-3 (or 4 = never)"
    ) == 1


def test_the_spans_a_plan_was_made_around_are_freed_by_a_cancellation_or_a_shorter_event_only():
    from airflow_provider_gridaware.planning.event_constraints import frees_slots, spans_in

    called = GridEventSnapshot([shed_event()])
    around = spans_in(called, ("DE", "GB"))
    assert set(around) == {"DE"} and around["DE"]  # only the zones with a span
    assert spans_in(None, ("DE",)) == {}
    start, end = around["DE"][0][0], around["DE"][-1][1]
    assert not frees_slots(around, called, ("DE",), after_s=start)  # unchanged
    assert not frees_slots(around, GridEventSnapshot([shed_event(), shed_event(event_id="e2")]), ("DE",), after_s=start)
    assert frees_slots(around, GridEventSnapshot([shed_event(status=EventStatus.CANCELLED)]), ("DE",), after_s=start)
    assert frees_slots(around, GridEventSnapshot([shed_event(levels=(2,))]), ("DE",), after_s=start)  # shortened
    assert frees_slots(around, None, ("DE",), after_s=start)  # the store not read any more: nothing known blocked
    assert not frees_slots(around, GridEventSnapshot([]), ("DE",), after_s=end)  # over: nothing ahead is freed
    assert not frees_slots(around, GridEventSnapshot([]), ("GB",), after_s=start)  # another zone's plan
