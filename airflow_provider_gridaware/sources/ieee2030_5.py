"""IEEE 2030.5 resources -> :class:`GridEvent`: DER controls, end-device (load) controls and tariff prices.

Pure: takes XML bytes and returns events; no I/O, no Airflow. Parsing uses envoy-schema's pydantic-xml
models (the ``[ieee2030_5]`` extra), imported on first use. List items are parsed one by one, so one
malformed item is reported by its href while its siblings still become events.

Mapping (see docs/events/ieee2030_5.md):

- identity: ``event_id`` is the mRID; ``modification_number`` is ``creationTime + version`` (a server
  that changes an event re-creates it or bumps its version; the sum grows if either does and fits the
  store's 32-bit column until 2038);
- status: EventStatus 0 scheduled -> far, 1 active, 2 cancelled and 3 cancelled-with-randomisation ->
  cancelled, 4 superseded -> cancelled (the server replaced it by another event);
- DERControlBase: ``csipaus:opModImpLimW``/``opModExpLimW`` -> import/export capacity limits in kW;
  ``opModTargetW``, ``opModGenLimW``, ``opModLoadLimW``, ``opModStorageTargetW`` -> DER setpoints in kW;
  ``opModMaxLimW`` and ``opModFixedW`` (hundredths of a percent) -> DER setpoints in percent; anything
  else (connect, energize, curves) -> OTHER;
- EndDeviceControl -> SIMPLE level 1 (2 if ``drProgramMandatory``), ``TargetReduction`` carried as OTHER;
- TimeTariffInterval -> PRICE in currency/MWh: ``price x 10^pricePowerOfTenMultiplier`` per
  ``10^powerOfTenMultiplier`` Wh of the RateComponent's ReadingType.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.signals.errors import GridSignalError, MalformedPayloadError
from airflow_provider_gridaware.signals.grid_event import (
    EventInterval,
    EventSignal,
    EventSignalKind,
    EventStatus,
    EventTarget,
    GridEvent,
    build_event,
)
from airflow_provider_gridaware.times import UTC

if TYPE_CHECKING:
    from lxml import etree

PROTOCOL = "ieee2030_5"
NS = "urn:ieee:std:2030.5:ns"
CSIPAUS_NS = "https://csipaus.org/ns/v1.3"
#: seconds; the standard's default when a server gives no ``pollRate``.
DEFAULT_POLL_RATE = 900

_STATUS = {
    0: EventStatus.FAR,
    1: EventStatus.ACTIVE,
    2: EventStatus.CANCELLED,
    3: EventStatus.CANCELLED,
    4: EventStatus.CANCELLED,
}

#: ISO 4217 numeric -> alphabetic, for the currencies a 2030.5 tariff is likely to carry.
CURRENCIES = {
    36: "AUD",
    124: "CAD",
    156: "CNY",
    208: "DKK",
    356: "INR",
    392: "JPY",
    554: "NZD",
    578: "NOK",
    710: "ZAR",
    752: "SEK",
    756: "CHF",
    826: "GBP",
    840: "USD",
    978: "EUR",
    985: "PLN",
    986: "BRL",
}

_UOM_WH = 72  # ReadingType uom for watt-hours (IEC 61968-9)
_FLOW_REVERSE = 19  # ReadingType flowDirection: energy sent to the grid (export)

# DERControlBase fields that are powers (ActivePower: value x 10^multiplier W) and what they ask for.
_POWER_FIELDS: dict[str, EventSignalKind] = {
    "opModImpLimW": EventSignalKind.IMPORT_CAPACITY_LIMIT,
    "opModExpLimW": EventSignalKind.EXPORT_CAPACITY_LIMIT,
    "opModTargetW": EventSignalKind.DER_SETPOINT,
    "opModGenLimW": EventSignalKind.DER_SETPOINT,
    "opModLoadLimW": EventSignalKind.DER_SETPOINT,
    "opModStorageTargetW": EventSignalKind.DER_SETPOINT,
}
# DERControlBase fields in hundredths of a percent of the DER's rated power.
_PERCENT_FIELDS = ("opModMaxLimW", "opModFixedW")
# Parameters of a control, not controls themselves.
_PARAMETERS = frozenset({"rampTms"})


def qname(tag: str, ns: str = NS) -> str:
    return f"{{{ns}}}{tag}"


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# -- parsing ----------------------------------------------------------------------------------------------
def parse_xml(body: bytes, href: str, expected: str, *, source: str) -> etree._Element:
    """The root element of ``body``; a clear error naming ``href`` if it is not well-formed ``expected`` XML."""
    from lxml import etree

    # No entities, no network: a 2030.5 body is plain XML.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise MalformedPayloadError(
            f"GET {href}: not well-formed XML ({exc}); first bytes: {body[:80]!r}", source=source
        ) from None
    if root.tag != qname(expected):
        raise MalformedPayloadError(f"GET {href}: expected a {expected}, got <{local_name(root.tag)}>", source=source)
    return root


def poll_rate_of(root: etree._Element) -> int | None:
    """The ``pollRate`` attribute (seconds) of a resource, if it has a usable one."""
    value = root.get("pollRate")
    if value is None:
        return None
    try:
        rate = int(value)
    except ValueError:
        return None
    return rate if rate > 0 else None


def model_of(root: etree._Element, model: type[Any], href: str, *, source: str) -> Any:
    """``root`` validated into the envoy-schema ``model``; errors name the resource and the field."""
    from pydantic import ValidationError

    try:
        return model.from_xml_tree(root)
    except (ValidationError, ValueError) as exc:
        detail = str(exc).replace("\n", " ")[:300]
        raise MalformedPayloadError(f"GET {href}: invalid {local_name(root.tag)}: {detail}", source=source) from None


def list_items(root: etree._Element, item: str) -> Iterator[tuple[int, etree._Element]]:
    """The ``item`` children of a list page, with their index."""
    yield from enumerate(root.findall(qname(item)))


def list_counts(root: etree._Element, href: str, *, source: str) -> tuple[int, int]:
    """``(all, results)`` of a list page: how many the list has, how many this page carries."""
    try:
        return int(root.get("all", "0")), int(root.get("results", "0"))
    except ValueError:
        raise MalformedPayloadError(
            f"GET {href}: list attributes all/results are not integers", source=source
        ) from None


# -- the models, with CSIP-AUS extensions optional --------------------------------------------------------
@dataclass(frozen=True)
class Models:
    """The envoy-schema models the walk needs (built once; envoy-schema is imported only here)."""

    device_capability: type[Any]
    end_device: type[Any]
    function_set_assignments: type[Any]
    der_program: type[Any]
    der_control: type[Any]
    default_der_control: type[Any]
    dr_program: type[Any]
    end_device_control: type[Any]
    tariff_profile: type[Any]
    rate_component: type[Any]
    time_tariff_interval: type[Any]
    consumption_tariff_interval: type[Any]
    reading_type: type[Any]


_MODELS: Models | None = None


def models() -> Models:
    """envoy-schema's models; TariffProfile and TimeTariffInterval relaxed so plain 2030.5 servers parse too."""
    global _MODELS
    if _MODELS is not None:
        return _MODELS
    from airflow_provider_gridaware.optional_providers import requires_extra

    with requires_extra("ieee2030_5", "IEEE 2030.5 events"):
        from envoy_schema.server.schema.sep2 import der, device_capability, end_device, metering, pricing
        from envoy_schema.server.schema.sep2.function_set_assignments import FunctionSetAssignmentsResponse
        from envoy_schema.server.schema.sep2.identification import ListLink
        from pydantic_xml import element

    # envoy-schema serves CSIP-AUS, where these extensions are mandatory; in IEEE 2030.5 they do not exist.
    class TariffProfile(pricing.TariffProfileResponse, tag="TariffProfile"):
        serviceCategoryKind: int | None = element(default=None)  # type: ignore[assignment]
        CombinedTimeTariffIntervalListLink: ListLink | None = element(ns="csipaus", default=None)  # type: ignore[assignment]

    class TimeTariffInterval(pricing.TimeTariffIntervalResponse, tag="TimeTariffInterval"):
        ConsumptionTariffIntervalListLink: ListLink | None = element(default=None)  # type: ignore[assignment]
        ConsumptionTariffIntervalListSummary: pricing.ConsumptionTariffIntervalListSummaryResponse | None = element(  # type: ignore[assignment]
            ns="csipaus", default=None
        )

    # Annotations are strings here (postponed evaluation): resolve them against this function's imports.
    names = {"ListLink": ListLink, "pricing": pricing}
    TariffProfile.model_rebuild(_types_namespace=names)
    TimeTariffInterval.model_rebuild(_types_namespace=names)
    _MODELS = Models(
        device_capability=device_capability.DeviceCapabilityResponse,
        end_device=end_device.EndDeviceResponse,
        function_set_assignments=FunctionSetAssignmentsResponse,
        der_program=der.DERProgramResponse,
        der_control=der.DERControlResponse,
        default_der_control=der.DefaultDERControl,
        dr_program=der.DemandResponseProgramResponse,
        end_device_control=der.EndDeviceControlResponse,
        tariff_profile=TariffProfile,
        rate_component=pricing.RateComponentResponse,
        time_tariff_interval=TimeTariffInterval,
        consumption_tariff_interval=pricing.ConsumptionTariffIntervalResponse,
        reading_type=metering.ReadingType,
    )
    return _MODELS


# -- mapping ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventContext:
    """Where an event was found: its program (name, primacy) and when we received it."""

    source: str
    program: str | None
    received_at: datetime
    primacy: int | None = None
    targets: tuple[EventTarget, ...] = ()


def _time(epoch: int) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def modification_number(event: Any) -> int:
    """``creationTime + version``: grows when a server re-creates an event or bumps its version."""
    return int(event.creationTime) + int(event.version or 0)


def event_status(event: Any, href: str, *, source: str) -> EventStatus:
    code = int(event.EventStatus_.currentStatus)
    if code not in _STATUS:
        raise MalformedPayloadError(f"{href}: EventStatus currentStatus {code} is not 0-4", source=source)
    return _STATUS[code]


def event_span(event: Any, href: str, *, source: str) -> tuple[datetime, datetime]:
    start = _time(event.interval.start)
    if int(event.interval.duration) <= 0:
        raise MalformedPayloadError(
            f"{href}: interval duration {event.interval.duration} s is not positive", source=source
        )
    return start, start + timedelta(seconds=int(event.interval.duration))


def _signal(
    kind: EventSignalKind, name: str, unit: str | None, span: tuple[datetime, datetime], value: float
) -> EventSignal:
    return EventSignal(
        kind=kind, name=name, unit=unit, intervals=(EventInterval(start=span[0], end=span[1], value=value),)
    )


def control_values(base: Any) -> list[tuple[str, EventSignalKind, str | None, float]]:
    """``(name, kind, unit, value)`` for each control a DERControlBase sets, normalised to kW or percent."""
    values: list[tuple[str, EventSignalKind, str | None, float]] = []
    for name, value in base:
        if value is None or name in _PARAMETERS:
            continue
        if name in _POWER_FIELDS:
            watts = float(value.value) * 10 ** int(value.multiplier)
            values.append((name, _POWER_FIELDS[name], "kW", watts / 1000))
        elif name in _PERCENT_FIELDS:
            values.append((name, EventSignalKind.DER_SETPOINT, "percent", float(value) / 100))
        elif isinstance(value, bool):
            values.append((name, EventSignalKind.OTHER, None, 1.0 if value else 0.0))
        else:
            values.append((name, EventSignalKind.OTHER, None, 1.0))
    return values


def _response_required(event: Any) -> bool:
    flags = getattr(event, "responseRequired", None)
    return bool(flags) and int(str(flags), 16) != 0


def _build(
    event: Any, href: str, context: EventContext, signals: list[EventSignal], targets: tuple[EventTarget, ...]
) -> GridEvent:
    return build_event(
        source=context.source,
        protocol=PROTOCOL,
        event_id=str(event.mRID),
        modification_number=modification_number(event),
        program=context.program,
        status=event_status(event, href, source=context.source),
        signals=tuple(signals),
        targets=context.targets + targets,
        priority=context.primacy,
        created_at=_time(event.creationTime),
        received_at=context.received_at,
        response_required=_response_required(event),
    )


def _device_targets(event: Any) -> tuple[EventTarget, ...]:
    category = getattr(event, "deviceCategory", None)
    return (EventTarget(kind="device_category", value=str(category)),) if category else ()


def der_control_event(control: Any, href: str, context: EventContext) -> GridEvent:
    """A DERControl as a :class:`GridEvent` (one signal per control it sets)."""
    span = event_span(control, href, source=context.source)
    signals = [
        _signal(kind, name, unit, span, value) for name, kind, unit, value in control_values(control.DERControlBase_)
    ]
    if not signals:
        raise MalformedPayloadError(f"{href}: DERControl {control.mRID} sets no control", source=context.source)
    return _build(control, href, context, signals, _device_targets(control))


def end_device_control_event(control: Any, element: etree._Element, href: str, context: EventContext) -> GridEvent:
    """An EndDeviceControl (a load-shed call of a DR program) as a SIMPLE event; a target reduction rides along."""
    span = event_span(control, href, source=context.source)
    level = 2 if control.drProgramMandatory else 1
    signals = [_signal(EventSignalKind.SIMPLE, "EndDeviceControl", "level", span, level)]
    reduction = element.find(qname("TargetReduction"))
    if reduction is not None:
        # TargetReduction type is a UnitType: 0 kWh, 1 kW, 2 W, ...
        unit = {"0": "kWh", "1": "kW", "2": "W"}.get(reduction.findtext(qname("type"), ""))
        value = float(reduction.findtext(qname("value"), "0") or 0)
        signals.append(_signal(EventSignalKind.OTHER, "TargetReduction", unit, span, value))
    return _build(control, href, context, signals, _device_targets(control))


@dataclass(frozen=True)
class PriceUnit:
    """How a RateComponent's prices read: currency, and the energy one price is for."""

    currency: str
    price_power_of_ten: int
    wh_power_of_ten: int = 3  # kWh unless the ReadingType says otherwise
    export: bool = False

    def per_mwh(self, price: int) -> float:
        """``price`` (an integer of the tariff) in currency per MWh."""
        per_unit = price * 10.0**self.price_power_of_ten
        return per_unit * 1_000_000 / 10.0**self.wh_power_of_ten


def currency_code(numeric: int | None, href: str, *, source: str) -> str:
    """The ISO 4217 letters of a TariffProfile's numeric currency."""
    if numeric is None:
        raise MalformedPayloadError(f"{href}: TariffProfile has no currency", source=source)
    code = CURRENCIES.get(int(numeric))
    if code is None:
        raise MalformedPayloadError(f"{href}: currency {int(numeric)} is not an ISO 4217 code we know", source=source)
    return code


def price_unit(
    tariff: Any, reading_type: Any | None, tariff_href: str, rt_href: str | None, *, source: str
) -> PriceUnit:
    """The unit of a RateComponent's prices from its TariffProfile and ReadingType (``None``: assume kWh)."""
    currency = currency_code(tariff.currency, tariff_href, source=source)
    ten = int(tariff.pricePowerOfTenMultiplier or 0)
    if reading_type is None:
        return PriceUnit(currency, ten)
    uom = reading_type.uom
    if uom is not None and int(uom) != _UOM_WH:
        raise MalformedPayloadError(
            f"{rt_href}: ReadingType uom {int(uom)} is not energy in Wh (72): not an energy price", source=source
        )
    flow = reading_type.flowDirection
    return PriceUnit(
        currency,
        ten,
        wh_power_of_ten=int(reading_type.powerOfTenMultiplier or 0),
        export=flow is not None and int(flow) == _FLOW_REVERSE,
    )


def first_block_price(blocks: list[Any]) -> int | None:
    """The price of the lowest consumption block (the one a load starting from nothing pays)."""
    priced = [b for b in blocks if b.price is not None]
    return min(priced, key=lambda b: int(b.startValue)).price if priced else None


def tariff_interval_event(interval: Any, price: int, unit: PriceUnit, href: str, context: EventContext) -> GridEvent:
    """A TimeTariffInterval as a PRICE event in currency/MWh (an export price is carried as OTHER)."""
    span = event_span(interval, href, source=context.source)
    value = unit.per_mwh(price)
    if unit.export:
        signal = EventSignal(
            kind=EventSignalKind.OTHER,
            name="export price",
            unit=f"{unit.currency}/MWh",
            intervals=(EventInterval(start=span[0], end=span[1], value=value),),
        )
    else:
        signal = EventSignal(
            kind=EventSignalKind.PRICE,
            name="TimeTariffInterval",
            unit=f"{unit.currency}/MWh",
            currency=unit.currency,
            intervals=(EventInterval(start=span[0], end=span[1], value=value),),
        )
    return _build(interval, href, context, [signal], ())


@dataclass(frozen=True)
class DefaultControl:
    """A program's DefaultDERControl: what a DER does when no control is active (not an event: no time span)."""

    href: str
    mrid: str
    program: str | None
    values: tuple[tuple[str, str | None, float], ...]


def default_control(model: Any, href: str, program: str | None) -> DefaultControl:
    values = [(name, unit, value) for name, _kind, unit, value in control_values(model.DERControlBase_)]
    if model.setGradW is not None:
        values.append(("setGradW", "percent/s", float(model.setGradW) / 100))
    return DefaultControl(href=href, mrid=str(model.mRID), program=program, values=tuple(values))


@dataclass
class WalkResult:
    """One walk of a server: the events, the default controls, the errors of what could not be read."""

    events: list[GridEvent] = field(default_factory=list)
    defaults: list[DefaultControl] = field(default_factory=list)
    errors: list[GridSignalError] = field(default_factory=list)
    poll_rates: list[int] = field(default_factory=list)

    def attempt(self, action: Callable[..., Any], *args: Any) -> Any:
        """``action(*args)``; a protocol error is kept (the walk goes on with the other resources)."""
        try:
            return action(*args)
        except GridSignalError as exc:
            self.errors.append(exc)
            return None
