"""The walk of an IEEE 2030.5 server's resource tree, honouring ``pollRate`` and paging lists.

DeviceCapability -> (EndDeviceList -> EndDevice -> FunctionSetAssignmentsList ->) DERProgramList ->
DERProgram -> DERControlList (+ DefaultDERControl); DemandResponseProgramList -> EndDeviceControlList;
TariffProfileList -> RateComponentList -> (ReadingType,) TimeTariffIntervalList ->
(ConsumptionTariffIntervalList unless the CSIP-AUS summary carries the prices).

I/O is a ``fetch(href) -> bytes`` given by the caller (the hook: requests over mutual TLS). A resource
is fetched again only once its ``pollRate`` has passed: its own attribute, else the one of the resource
it was reached from, else 900 s (the standard's default). Lists are read page by page (``?s=&l=``) until
``all`` items are in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_gridaware.signals.errors import SourceRequestError
from airflow_provider_gridaware.sources import ieee2030_5 as sep
from airflow_provider_gridaware.sources.ieee2030_5 import EventContext, WalkResult

log = logging.getLogger(__name__)

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class Fetched:
    """A resource as read: its items' XML roots (one for a plain resource), when, and its pollRate."""

    roots: tuple[Any, ...]
    fetched_at: float
    poll_rate: int


class Walker:
    """Walks one server; keeps what it read so a resource is not fetched before its ``pollRate`` is up.

    :param fetch: GETs an href (path and query) and returns the body; raises a ``GridSignalError``.
    :param source: the events' ``source``.
    :param clock: monotonic seconds (the cache ages by it).
    :param page_size: items asked per list page (``l=``).
    :param end_device: the LFDI or SFDI of our EndDevice (others in the EndDeviceList are skipped).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        source: str,
        clock: Callable[[], float],
        page_size: int = 25,
        end_device: str | None = None,
    ) -> None:
        self.fetch = fetch
        self.source = source
        self.clock = clock
        self.page_size = page_size
        self.end_device = end_device.upper() if end_device else None
        self.cache: dict[str, Fetched] = {}
        self.fetches = 0  # GETs sent, for tests and benchmarks

    # -- reading, with the pollRate cache -----------------------------------------------------------
    def _get(self, href: str, expected: str, inherited: int, *, item: str | None = None) -> Fetched:
        cached = self.cache.get(href)
        now = self.clock()
        if cached is not None and now - cached.fetched_at < cached.poll_rate:
            return cached
        # Stamped with the walk's start, so the walk a pollRate after this one finds it due, not a moment early.
        stamp = getattr(self, "walk_started", now)
        if item is None:
            root = self._fetch_one(href, expected)
            rate = sep.poll_rate_of(root) or inherited
            fetched = Fetched((root,), stamp, rate)
        else:
            roots, rate = self._fetch_list(href, expected, item, inherited)
            fetched = Fetched(tuple(roots), stamp, rate)
        self.cache[href] = fetched
        return fetched

    def _fetch_one(self, href: str, expected: str) -> Any:
        self.fetches += 1
        return sep.parse_xml(self.fetch(href), href, expected, source=self.source)

    def _fetch_list(self, href: str, expected: str, item: str, inherited: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        rate: int | None = None
        start = 0
        joiner = "&" if "?" in href else "?"
        while True:
            page_href = f"{href}{joiner}s={start}&l={self.page_size}"
            try:
                root = self._fetch_one(page_href, expected)
            except SourceRequestError as exc:
                if exc.status in (204, 404) and start == 0:  # a list the server does not have yet is empty
                    return [], inherited
                raise
            rate = rate or sep.poll_rate_of(root)
            total, results = sep.list_counts(root, page_href, source=self.source)
            page = [element for _, element in sep.list_items(root, item)]
            items.extend(page)
            start += len(page)
            if start >= total or results == 0 or not page:
                break
        return items, rate or inherited

    def poll_rate(self) -> int:
        """The smallest pollRate among the resources read (the default until something was read)."""
        rates = [f.poll_rate for f in self.cache.values()]
        return min(rates) if rates else sep.DEFAULT_POLL_RATE

    # -- the walk -----------------------------------------------------------------------------------
    def walk(self, dcap_href: str, *, received_at: datetime) -> WalkResult:
        """One walk from the DeviceCapability; errors of single resources are kept in the result.

        :raises GridSignalError: when the DeviceCapability itself cannot be read.
        """
        result = WalkResult()
        self.walk_started = self.clock()
        self.seen: set[str] = set()
        self.received_at = received_at
        m = sep.models()
        dcap_fetched = self._get(dcap_href, "DeviceCapability", sep.DEFAULT_POLL_RATE)
        dcap = sep.model_of(dcap_fetched.roots[0], m.device_capability, dcap_href, source=self.source)
        rate = dcap_fetched.poll_rate
        self._function_sets(dcap, rate, result)
        if dcap.EndDeviceListLink is not None:
            result.attempt(self._end_devices, dcap.EndDeviceListLink.href, rate, result)
        result.poll_rates = sorted({f.poll_rate for f in self.cache.values()})
        return result

    def _function_sets(self, holder: Any, rate: int, result: WalkResult) -> None:
        """The function-set links of a DeviceCapability or FunctionSetAssignments."""
        for link, walk in (
            (holder.DERProgramListLink, self._der_programs),
            (holder.DemandResponseProgramListLink, self._dr_programs),
            (holder.TariffProfileListLink, self._tariffs),
        ):
            if link is not None and link.href not in self.seen:
                self.seen.add(link.href)
                result.attempt(walk, link.href, rate, result)

    def _items(
        self, href: str, expected: str, item: str, model: Any, rate: int, result: WalkResult
    ) -> Iterator[tuple[Any, Any, str, int]]:
        """Each item of a list as ``(model, element, href, pollRate)``; a malformed item is an error, not an end."""
        fetched = self._get(href, expected, rate, item=item)
        for index, element in enumerate(fetched.roots):
            where = element.get("href") or f"{href} item {index}"
            parsed = result.attempt(self._model, element, model, where)
            if parsed is not None:
                yield parsed, element, where, fetched.poll_rate

    def _model(self, element: Any, model: Any, where: str) -> Any:
        return sep.model_of(element, model, where, source=self.source)

    def _end_devices(self, href: str, rate: int, result: WalkResult) -> None:
        m = sep.models()
        for device, _, _, list_rate in self._items(href, "EndDeviceList", "EndDevice", m.end_device, rate, result):
            ids = {str(device.lFDI or "").upper(), str(device.sFDI)}
            if self.end_device and self.end_device not in ids:
                continue
            if device.FunctionSetAssignmentsListLink is None:
                continue
            fsa_href = device.FunctionSetAssignmentsListLink.href
            for fsa, _, _, fsa_rate in self._items(
                fsa_href,
                "FunctionSetAssignmentsList",
                "FunctionSetAssignments",
                m.function_set_assignments,
                list_rate,
                result,
            ):
                self._function_sets(fsa, fsa_rate, result)

    def _der_programs(self, href: str, rate: int, result: WalkResult) -> None:
        m = sep.models()
        for program, _, _where, list_rate in self._items(
            href, "DERProgramList", "DERProgram", m.der_program, rate, result
        ):
            context = EventContext(
                source=self.source,
                program=program.description or str(program.mRID),
                received_at=self.received_at,
                primacy=int(program.primacy),
            )
            if program.DERControlListLink is not None:
                controls_href = program.DERControlListLink.href
                result.attempt(self._der_controls, controls_href, context, list_rate, result)
            if program.DefaultDERControlLink is not None:
                default_href = program.DefaultDERControlLink.href
                result.attempt(self._default, default_href, context, list_rate, result)

    def _der_controls(self, href: str, context: EventContext, rate: int, result: WalkResult) -> None:
        m = sep.models()
        for control, _, where, _ in self._items(href, "DERControlList", "DERControl", m.der_control, rate, result):
            event = result.attempt(sep.der_control_event, control, where, context)
            if event is not None:
                result.events.append(event)

    def _default(self, href: str, context: EventContext, rate: int, result: WalkResult) -> None:
        fetched = self._get(href, "DefaultDERControl", rate)
        model = sep.model_of(fetched.roots[0], sep.models().default_der_control, href, source=self.source)
        result.defaults.append(sep.default_control(model, href, context.program))

    def _dr_programs(self, href: str, rate: int, result: WalkResult) -> None:
        m = sep.models()
        for program, _, _, list_rate in self._items(
            href, "DemandResponseProgramList", "DemandResponseProgram", m.dr_program, rate, result
        ):
            if program.EndDeviceControlListLink is None:
                continue
            context = EventContext(
                source=self.source,
                program=program.description or str(program.mRID),
                received_at=self.received_at,
                primacy=int(program.primacy),
            )
            for control, element, where, _ in self._items(
                program.EndDeviceControlListLink.href,
                "EndDeviceControlList",
                "EndDeviceControl",
                m.end_device_control,
                list_rate,
                result,
            ):
                event = result.attempt(sep.end_device_control_event, control, element, where, context)
                if event is not None:
                    result.events.append(event)

    def _tariffs(self, href: str, rate: int, result: WalkResult) -> None:
        m = sep.models()
        for tariff, _, tariff_href, list_rate in self._items(
            href, "TariffProfileList", "TariffProfile", m.tariff_profile, rate, result
        ):
            if tariff.RateComponentListLink is None:
                continue
            context = EventContext(
                source=self.source,
                program=tariff.rateCode or tariff.description or str(tariff.mRID),
                received_at=self.received_at,
                primacy=int(tariff.primacyType) if tariff.primacyType is not None else None,
            )
            for component, _, rc_href, rc_rate in self._items(
                tariff.RateComponentListLink.href,
                "RateComponentList",
                "RateComponent",
                m.rate_component,
                list_rate,
                result,
            ):
                result.attempt(self._rate_component, tariff, tariff_href, component, rc_href, context, rc_rate, result)

    def _reading_type(self, href: str, rate: int) -> Any | None:
        try:
            fetched = self._get(href, "ReadingType", rate)
        except SourceRequestError as exc:
            if exc.status != 404:
                raise
            log.warning("%s: ReadingType %s not found; its prices are taken as per kWh", self.source, href)
            return None
        return sep.model_of(fetched.roots[0], sep.models().reading_type, href, source=self.source)

    def _rate_component(
        self,
        tariff: Any,
        tariff_href: str,
        component: Any,
        href: str,
        context: EventContext,
        rate: int,
        result: WalkResult,
    ) -> None:
        m = sep.models()
        rt_href = component.ReadingTypeLink.href if component.ReadingTypeLink is not None else None
        reading_type = self._reading_type(rt_href, rate) if rt_href else None
        unit = sep.price_unit(tariff, reading_type, tariff_href, rt_href, source=self.source)
        for interval, _, where, tti_rate in self._items(
            component.TimeTariffIntervalListLink.href,
            "TimeTariffIntervalList",
            "TimeTariffInterval",
            m.time_tariff_interval,
            rate,
            result,
        ):
            result.attempt(self._interval, interval, where, unit, context, tti_rate, result)

    def _interval(
        self, interval: Any, href: str, unit: sep.PriceUnit, context: EventContext, rate: int, result: WalkResult
    ) -> None:
        m = sep.models()
        summary = interval.ConsumptionTariffIntervalListSummary
        if summary is not None and summary.ConsumptionTariffInterval:
            blocks = list(summary.ConsumptionTariffInterval)
        elif interval.ConsumptionTariffIntervalListLink is not None:
            blocks = [
                block
                for block, _, _, _ in self._items(
                    interval.ConsumptionTariffIntervalListLink.href,
                    "ConsumptionTariffIntervalList",
                    "ConsumptionTariffInterval",
                    m.consumption_tariff_interval,
                    rate,
                    result,
                )
            ]
        else:
            blocks = []
        price = sep.first_block_price(blocks)
        if price is None:
            from airflow_provider_gridaware.signals.errors import MalformedPayloadError

            raise MalformedPayloadError(
                f"{href}: TimeTariffInterval has no priced ConsumptionTariffInterval", source=self.source
            )
        result.events.append(sep.tariff_interval_event(interval, price, unit, href, context))
