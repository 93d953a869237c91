"""Grid events as constraints on planning: event prices over a zone's prices, called events blocked out.

* **Prices.** An OpenADR price signal or a 2030.5 tariff interval is the price the site will pay over its
  intervals: there it replaces the market price (day-ahead or REST) the planner would otherwise use, before
  the event starts as well as during it. Outside them the series is unchanged.
* **Called events.** Flexible and batch work is not placed inside an event that asks the site to shed, by
  the response policy (``planning/response_policy.py``; default: a SIMPLE level of 1 or more, or an import
  capacity limit; a price above a configured threshold). Those slots of the event's zones are unusable
  for planning; the latest start is still kept (the deadline is a promise), and critical work never waits.

An event applies to the zones it targets (``zone`` targets: the DR connection's ``zones`` field adds them).
Test events and cancelled or finished events are left out. Pure: no Airflow.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY, SHED_ORDER, ResponsePolicy
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus, GridEvent
from airflow_provider_gridaware.signals.models import SignalPoint, SignalSeries

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.planning.planner import PlanningGrid

log = logging.getLogger(__name__)

#: signals that may ask the site to shed load (the response policy decides which intervals do).
SHEDDING_KINDS = (EventSignalKind.SIMPLE, EventSignalKind.PRICE, EventSignalKind.IMPORT_CAPACITY_LIMIT)


def _zones(event: GridEvent) -> set[str]:
    return {t.value for t in event.targets if t.kind == "zone"}


def shedding_spans(
    events: Iterable[GridEvent],
    *,
    policy: ResponsePolicy | None = None,
    priority_class: PriorityClass | None = None,
) -> dict[str, list[tuple[int, int]]]:
    """Per zone, the ``(start_s, end_s)`` epoch-second spans in which work may not start because of an event.

    The response policy decides (``planning/response_policy.py``, the same rule the grid-event response
    applies to running work): by default a SIMPLE interval from level 1 and an import capacity limit
    whatever its value (a waiting task cannot know the fleet's share of the limit). Test, cancelled and
    completed events do not count.

    :param events: the current events.
    :param policy: the response rule (default: the defaults).
    :param priority_class: the spans for this class; ``None``: where any non-critical class is shed.
    """
    rule = policy or DEFAULT_POLICY
    classes = [priority_class] if priority_class is not None else [c for c in PriorityClass if c in SHED_ORDER]
    spans: dict[str, list[tuple[int, int]]] = {}
    for event in events:
        if event.status in (EventStatus.CANCELLED, EventStatus.COMPLETED):
            continue
        if event.test_event and not rule.include_test_events:
            continue
        for signal in event.signals:
            for interval in signal.intervals:
                if not any(rule.sheds_waiting(signal, interval, cls) for cls in classes):
                    continue
                span = (math.floor(interval.start.timestamp()), math.ceil(interval.end.timestamp()))
                for zone in _zones(event):
                    spans.setdefault(zone, []).append(span)
    return spans


def zone_price_events(events: Iterable[GridEvent], zone: str) -> list[GridEvent]:
    """Events with a price for ``zone`` (a ``zone`` target), not cancelled; later arrivals last."""
    found = [
        e
        for e in events
        if e.status is not EventStatus.CANCELLED
        and e.signal(EventSignalKind.PRICE) is not None
        and any(t.kind == "zone" and t.value == zone for t in e.targets)
    ]
    return sorted(found, key=lambda e: (e.received_at, e.modification_number))


def overlay_event_prices(base: SignalSeries, events: Iterable[GridEvent]) -> SignalSeries:
    """``base`` with each event price replacing it over the event's intervals (``base`` itself if none apply).

    An event in another currency than ``base`` is left out with a warning: prices are never mixed. Where
    events overlap, the one received last wins.

    :param base: the zone's price series (its ``zone`` selects the events).
    :param events: current grid events, any zones.
    """
    overrides: list[SignalPoint] = []
    for event in zone_price_events(events, base.zone):
        price = event.signal(EventSignalKind.PRICE)
        assert price is not None
        if price.unit != base.unit:
            log.warning(
                "Not using the price of %s for %s: it is in %s, the zone's prices are in %s",
                event.describe(),
                base.zone,
                price.unit,
                base.unit,
            )
            continue
        for interval in price.intervals:
            overrides = _cut(overrides, interval.start, interval.end)
            overrides.append(SignalPoint(start=interval.start, end=interval.end, value=interval.value))
    if not overrides:
        return base
    points = list(base.points)
    for override in overrides:
        points = _cut(points, override.start, override.end)
    points.extend(overrides)
    points.sort(key=lambda p: p.start)
    return base.model_copy(update={"points": tuple(points), "source": f"{base.source}+events"})


def _cut(points: list[SignalPoint], start: datetime, end: datetime) -> list[SignalPoint]:
    """``points`` without ``[start, end)``: a point across an edge keeps the part outside."""
    kept: list[SignalPoint] = []
    for point in points:
        if point.end <= start or point.start >= end:
            kept.append(point)
            continue
        if point.start < start:
            kept.append(SignalPoint(start=point.start, end=start, value=point.value))
        if point.end > end:
            kept.append(SignalPoint(start=end, end=point.end, value=point.value))
    return kept


class GridEventSnapshot:
    """The grid events known at one moment, and what planning makes of them (each made once, then shared).

    Thousands of waiting triggers plan on a few zones: each overlaid series and each blocked grid is built
    once per snapshot and base object, so the planner's grid cache (keyed on the objects) keeps working.

    :param events: the current events (``EventStore.current()``).
    :param policy: the response rule deciding which intervals block which class (default: the defaults).
    """

    def __init__(self, events: Iterable[GridEvent], policy: ResponsePolicy | None = None) -> None:
        self.events = tuple(events)
        self.policy = policy or DEFAULT_POLICY
        self.shedding = shedding_spans(self.events, policy=self.policy)
        # Per class, only where a policy treats flexible and batch differently (the default does not).
        self._class_shedding: dict[PriorityClass, dict[str, list[tuple[int, int]]]] = {}
        self._blocked: dict[tuple[int, PriorityClass], tuple[weakref.ref[PlanningGrid], PlanningGrid]] = {}
        self._zones_with_prices = {
            t.value
            for e in self.events
            if e.signal(EventSignalKind.PRICE) is not None
            for t in e.targets
            if t.kind == "zone"
        }
        # By identity, not by value: hashing a frozen series hashes every point.
        self._made: dict[int, tuple[weakref.ref[SignalSeries], SignalSeries]] = {}

    def apply(self, prices: Mapping[str, SignalSeries]) -> dict[str, SignalSeries]:
        """``prices`` (per zone) with the event prices laid over them."""
        return {zone: self.overlay(series) for zone, series in prices.items()}

    def overlay(self, base: SignalSeries) -> SignalSeries:
        if base.zone not in self._zones_with_prices:
            return base
        held = self._made.get(id(base))
        if held is not None and held[0]() is base:
            return held[1]
        made = overlay_event_prices(base, self.events)
        self._made[id(base)] = (weakref.ref(base), made)
        return made

    def block(self, grid: PlanningGrid, job: Job) -> PlanningGrid:
        """``grid`` with the called events of ``job``'s zones blocked out, unless the job is critical."""
        cls = job.priority_class
        if cls is PriorityClass.CRITICAL or not any(z in self.shedding for z in grid.zones):
            return grid
        shedding = self._spans_for(cls)
        if not any(z in shedding for z in grid.zones):
            return grid
        held = self._blocked.get((id(grid), cls))
        if held is not None and held[0]() is grid:
            return held[1]
        made = grid.blocked(shedding)
        self._blocked[(id(grid), cls)] = (weakref.ref(grid), made)
        return made

    def _spans_for(self, cls: PriorityClass) -> dict[str, list[tuple[int, int]]]:
        shedding = self._class_shedding.get(cls)
        if shedding is None:
            shedding = shedding_spans(self.events, policy=self.policy, priority_class=cls)
            self._class_shedding[cls] = shedding
        return shedding

    def shedding_until(self, zone: str, at: datetime, priority_class: str) -> datetime | None:
        """When the called events pausing work of ``priority_class`` in ``zone`` at ``at`` end (overlapping and
        back-to-back spans joined); ``None`` if none pauses it now. Critical work is never paused.

        The same spans as :meth:`block` (``shedding_spans``): a running interruptible task pauses exactly
        where a waiting one would not be placed.

        :param zone: the zone the work runs in.
        :param at: the moment asked about (aware).
        :param priority_class: ``critical``, ``flexible`` or ``batch``.
        """
        cls = PriorityClass(priority_class)
        if cls is PriorityClass.CRITICAL or zone not in self.shedding:
            return None
        at_s = at.timestamp()
        end_s: float | None = None
        for start_s, span_end_s in sorted(self._spans_for(cls).get(zone, ())):
            if end_s is None:
                if start_s <= at_s < span_end_s:
                    end_s = span_end_s
            elif start_s <= end_s:
                end_s = max(end_s, span_end_s)
        return None if end_s is None else datetime.fromtimestamp(end_s, tz=at.tzinfo)


#: Per zone, the spans (epoch seconds) in which called events shed flexible work.
Spans = Mapping[str, Sequence[tuple[int, int]]]


def spans_in(
    snapshot: GridEventSnapshot | None, zones: frozenset[str] | Sequence[str]
) -> dict[str, tuple[tuple[int, int], ...]]:
    """The shedding spans of ``snapshot`` in ``zones`` (only the zones with any): what a plan was made around."""
    if snapshot is None:
        return {}
    return {zone: tuple(snapshot.shedding[zone]) for zone in zones if snapshot.shedding.get(zone)}


def frees_slots(
    old: Spans, new: GridEventSnapshot | None, zones: frozenset[str] | Sequence[str], *, after_s: float
) -> bool:
    """Whether ``new`` leaves unblocked, in one of ``zones``, some time after ``after_s`` (epoch seconds) that
    the spans ``old`` blocked: an event was cancelled, shortened or moved, so a window planned around it may
    be free."""
    for zone in zones:
        spans = [(max(s, after_s), e) for s, e in old.get(zone, ()) if e > after_s]
        if spans and not _covered(spans, () if new is None else new.shedding.get(zone, ())):
            return True
    return False


def _covered(spans: Sequence[tuple[float, float]], by: Sequence[tuple[int, int]]) -> bool:
    """Whether every span of ``spans`` lies inside the union of ``by``."""
    merged: list[list[float]] = []
    for s, e in sorted(by):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return all(any(m_s <= s and e <= m_e for m_s, m_e in merged) for s, e in spans)
