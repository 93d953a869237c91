"""OpenADR 2.0b events (as openleadr parses an ``oadrDistributeEvent``) to :class:`GridEvent`.

Pure: plain dicts in, validated events out; no openleadr, no Airflow. The VEN client
(:mod:`~airflow_provider_gridaware.sources.openadr2b_ven`) parses the XML with openleadr and hands the
``events`` list here; :func:`parse_distribute_event` does the same for raw XML (tests, replay).

Signals, by OpenADR name and type:

- ``SIMPLE`` / ``simple`` (level 0-3) -> :attr:`EventSignalKind.SIMPLE`;
- ``ELECTRICITY_PRICE`` / ``ENERGY_PRICE`` of type ``price`` with a ``currencyPerKWh`` (or ``currencyPerMWh``)
  item -> :attr:`EventSignalKind.PRICE` in ``<currency>/MWh``;
- ``LOAD_CONTROL`` / ``x-loadControlCapacity`` (a fraction 0-1 of the load's capacity) -> DER setpoint in percent;
- ``LOAD_DISPATCH`` / ``setpoint`` with a real-power item -> DER setpoint in kW;
- ``x-IMPORT_CAPACITY_LIMIT`` / ``x-EXPORT_CAPACITY_LIMIT`` with a real-power item -> capacity limits in kW;
- anything else -> :attr:`EventSignalKind.OTHER`, carried with its name and unit, never acted on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from airflow_provider_gridaware.signals.errors import (
    GridSignalError,
    InvalidSignalError,
    MalformedPayloadError,
    SourceConfigError,
    UnknownUnitError,
)
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus, GridEvent, build_event
from airflow_provider_gridaware.times import UTC

log = logging.getLogger(__name__)

PROTOCOL = "openadr2b"

#: SI scale prefixes OpenADR allows on an item (``siScaleCode``), as powers of ten.
SI_SCALE = {
    "p": -12,
    "n": -9,
    "micro": -6,
    "m": -3,
    "c": -2,
    "d": -1,
    "none": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
}
#: real-power units to kW.
POWER_TO_KW = {"W": 0.001, "kW": 1.0, "MW": 1000.0}
#: price item descriptions that are energy prices, and the factor to currency per MWh.
ENERGY_PRICE_TO_PER_MWH = {"currencyPerKWh": 1000.0, "currencyPerMWh": 1.0}
_STATUS = {s.value: s for s in EventStatus}


class OptPolicy(str, Enum):
    """How the VEN answers an event that asks for a response (``oadrCreatedEvent``)."""

    OPT_IN = "opt_in"  # take part in every event (the default)
    OPT_OUT_TEST_EVENTS = "opt_out_test_events"  # take part in real events, decline test events
    OPT_OUT = "opt_out"  # decline every event (observe only)

    @classmethod
    def parse(cls, value: str | None, *, source: str | None = None) -> OptPolicy:
        text = (value or cls.OPT_IN.value).strip().lower()
        try:
            return cls(text)
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise SourceConfigError(f"opt_policy {value!r} is not one of {allowed}", source=source) from None

    def decide(self, event: GridEvent) -> str:
        """``optIn`` or ``optOut`` for ``event`` (OpenADR's ``optType``)."""
        if self is OptPolicy.OPT_OUT or (self is OptPolicy.OPT_OUT_TEST_EVENTS and event.test_event):
            return "optOut"
        return "optIn"


def normalise_fingerprint(value: str, *, source: str | None = None) -> str:
    """A certificate fingerprint as openleadr writes it: the last 10 bytes of the SHA-256, ``AB:CD:..``.

    Accepts that form in any case, without colons, or the full SHA-256 (64 hex digits, as ``openssl x509
    -fingerprint -sha256`` prints it), of which OpenADR uses the tail.
    """
    digits = "".join(ch for ch in value if ch not in ": \t\n").upper()
    if not all(ch in "0123456789ABCDEF" for ch in digits) or len(digits) not in (20, 64):
        raise SourceConfigError(
            f"VTN fingerprint {value!r} is neither 10 colon-separated bytes (AB:CD:...) nor a SHA-256 hex digest",
            source=source,
        )
    tail = digits[-20:]
    return ":".join(tail[i : i + 2] for i in range(0, 20, 2))


@dataclass(frozen=True)
class RejectedEvent:
    """An event in a distribution that could not be normalised: its id, modification and why."""

    event_id: str
    modification_number: int
    response_required: bool
    reason: str


@dataclass(frozen=True)
class Distribution:
    """One ``oadrDistributeEvent`` normalised: the events we understood and the ones we could not."""

    vtn_id: str | None
    request_id: str | None
    events: list[GridEvent]
    rejected: list[RejectedEvent]


def events_from_distribution(
    payload: Mapping[str, Any], *, source: str, received_at: datetime, expected_vtn_id: str | None = None
) -> Distribution:
    """Normalise a parsed ``oadrDistributeEvent`` (openleadr's payload dict).

    One bad event does not hide the others: it is returned in ``rejected`` with the reason.

    :param payload: what ``openleadr.messaging.parse_message`` returned for the message.
    :param source: ``openadr2b:<connection id>``.
    :param received_at: when the message arrived (UTC).
    :param expected_vtn_id: refuse a message from another VTN (``SourceConfigError``).
    """
    vtn_id = payload.get("vtn_id")
    # An openleadr VTN with nothing queued answers a bare oadrResponse, which carries no vtnID.
    if expected_vtn_id and payload.get("events") and vtn_id != expected_vtn_id:
        raise SourceConfigError(
            f"the VTN answered as vtnID {vtn_id!r}, the connection expects {expected_vtn_id!r}", source=source
        )
    _check_response(payload, source)
    raw_events = payload.get("events") or []
    if not isinstance(raw_events, list):
        raise MalformedPayloadError(f"oadrDistributeEvent 'events' is {type(raw_events).__name__}", source=source)
    events: list[GridEvent] = []
    rejected: list[RejectedEvent] = []
    for raw in raw_events:
        try:
            events.append(event_from_openleadr(raw, source=source, received_at=received_at))
        except (GridSignalError, KeyError, TypeError, ValueError) as exc:
            descriptor = raw.get("event_descriptor", {}) if isinstance(raw, Mapping) else {}
            reason = str(exc) if isinstance(exc, GridSignalError) else f"{type(exc).__name__}: {exc}"
            rejected.append(
                RejectedEvent(
                    event_id=str(descriptor.get("event_id") or "?"),
                    modification_number=_int(descriptor.get("modification_number"), 0),
                    response_required=isinstance(raw, Mapping) and raw.get("response_required") == "always",
                    reason=reason,
                )
            )
    return Distribution(vtn_id, _str_or_none(payload.get("request_id")), events, rejected)


def _check_response(payload: Mapping[str, Any], source: str) -> None:
    response = payload.get("response") or {}
    code = _int(response.get("response_code"), 200)
    if code != 200:
        from airflow_provider_gridaware.signals.errors import SourceRequestError

        description = response.get("response_description") or "no description"
        raise SourceRequestError(f"the VTN answered OpenADR code {code}: {description}", source=source, status=code)


def event_from_openleadr(raw: Mapping[str, Any], *, source: str, received_at: datetime) -> GridEvent:
    """One event of a distribution (an ``oadrEvent`` as openleadr parses it) as a :class:`GridEvent`.

    :param raw: ``{"event_descriptor": ..., "active_period": ..., "event_signals": [...], "targets": [...],
        "response_required": "always"|"never"}``.
    :param source: ``openadr2b:<connection id>``.
    :param received_at: when the message arrived.
    """
    descriptor = raw["event_descriptor"]
    event_id = str(descriptor["event_id"])
    where = f"event {event_id!r}"
    status_text = str(descriptor.get("event_status") or "none").lower()
    signals = [_signal(s, where=where, source=source, active_start=_active_start(raw)) for s in _signals(raw)]
    if status_text == "none":
        status = _status_from_intervals(signals, received_at)
    elif status_text in _STATUS:
        status = _STATUS[status_text]
    else:
        raise MalformedPayloadError(f"{where}: eventStatus {status_text!r} is not an OpenADR status", source=source)
    priority = _int(descriptor.get("priority"), 0)
    return build_event(
        source=source,
        protocol=PROTOCOL,
        event_id=event_id,
        modification_number=_int(descriptor.get("modification_number"), 0),
        program=_str_or_none(descriptor.get("market_context")),
        status=status,
        signals=signals,
        targets=_targets(raw.get("targets") or []),
        test_event=_test_event(descriptor.get("test_event")),
        # OpenADR: 0 means "no priority", 1 is the highest.
        priority=priority or None,
        created_at=descriptor.get("created_date_time"),
        received_at=received_at,
        response_required=raw.get("response_required", "always") == "always",
    )


def _signals(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    signals = raw.get("event_signals") or []
    # openleadr nests the list one level deeper when the event also carries baselines.
    if isinstance(signals, Mapping):
        signals = signals.get("event_signals") or []
    return list(signals)


def _active_start(raw: Mapping[str, Any]) -> datetime | None:
    period = raw.get("active_period") or {}
    start = period.get("dtstart")
    return start if isinstance(start, datetime) else None


def _status_from_intervals(signals: Sequence[dict[str, Any]], now: datetime) -> EventStatus:
    starts = [s["intervals"][0]["start"] for s in signals if s["intervals"]]
    ends = [s["intervals"][-1]["end"] for s in signals if s["intervals"]]
    if not starts:
        return EventStatus.FAR
    if now >= max(ends):
        return EventStatus.COMPLETED
    return EventStatus.ACTIVE if now >= min(starts) else EventStatus.FAR


def _intervals(
    raw_intervals: Sequence[Mapping[str, Any]], *, scale: float, where: str, source: str, active_start: datetime | None
) -> list[dict[str, Any]]:
    intervals: list[dict[str, Any]] = []
    previous_end = active_start
    # OpenADR orders intervals by uid; only the first needs a dtstart, the rest follow on.
    ordered = sorted(raw_intervals, key=lambda i: _int(i.get("uid"), 0))
    for interval in ordered:
        start = interval.get("dtstart") or previous_end
        duration = interval.get("duration")
        if not isinstance(start, datetime) or not isinstance(duration, timedelta):
            raise MalformedPayloadError(f"{where}: an interval has no start or no duration", source=source)
        value = interval.get("signal_payload")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise MalformedPayloadError(f"{where}: interval at {start} has payload {value!r}", source=source)
        end = start + duration
        # rounded: 0.45 EUR/kWh is 450 EUR/MWh, not 450.00000000000006
        intervals.append({"start": start, "end": end, "value": round(float(value) * scale, 9)})
        previous_end = end
    return intervals


def _item(signal: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """(description, units, scale) of a signal's item (``currency`` or ``measurement``), if any."""
    item = signal.get("currency") or signal.get("measurement") or {}
    description = item.get("item_description") or item.get("description") or item.get("name")
    units = item.get("item_units") or item.get("unit")
    scale = item.get("si_scale_code") or item.get("scale") or "none"
    return (
        str(description) if description else None,
        str(units) if units else None,
        str(scale),
    )


def _scale(code: str, where: str, source: str) -> float:
    if code not in SI_SCALE:
        raise UnknownUnitError(f"{where}: siScaleCode {code!r} is not an SI scale code", source=source)
    return float(10 ** SI_SCALE[code])


def _power_factor(units: str | None, scale: str, where: str, source: str) -> float:
    if units not in POWER_TO_KW:
        raise UnknownUnitError(f"{where}: power unit {units!r} is not W, kW or MW", source=source)
    return POWER_TO_KW[units] * _scale(scale, where, source)


def _signal(signal: Mapping[str, Any], *, where: str, source: str, active_start: datetime | None) -> dict[str, Any]:
    name = str(signal.get("signal_name") or "")
    signal_type = str(signal.get("signal_type") or "")
    where = f"{where} signal {name or '?'}/{signal_type or '?'}"
    description, units, scale = _item(signal)
    upper = name.upper()
    kind = EventSignalKind.OTHER
    unit: str | None = None
    currency: str | None = None
    factor = 1.0
    if upper == "SIMPLE":
        kind, unit = EventSignalKind.SIMPLE, "level"
    elif upper in ("ELECTRICITY_PRICE", "ENERGY_PRICE") and signal_type == "price":
        if description not in ENERGY_PRICE_TO_PER_MWH:
            raise UnknownUnitError(
                f"{where}: price item {description!r} is not an energy price (currencyPerKWh or currencyPerMWh)",
                source=source,
            )
        if not units or len(units) != 3 or not units.isalpha():
            raise UnknownUnitError(f"{where}: price currency {units!r} is not an ISO 4217 code", source=source)
        currency = units.upper()
        kind, unit = EventSignalKind.PRICE, f"{currency}/MWh"
        # a siScaleCode on a price scales the amount (e.g. "c": cents per kWh).
        factor = ENERGY_PRICE_TO_PER_MWH[description] * _scale(scale, where, source)
    elif upper == "LOAD_CONTROL" and signal_type == "x-loadControlCapacity":
        # a fraction of the load's capacity (0-1): the setpoint in percent.
        kind, unit, factor = EventSignalKind.DER_SETPOINT, "percent", 100.0
    elif upper == "LOAD_DISPATCH" and signal_type == "setpoint" and description in ("RealPower", "powerReal"):
        kind, unit = EventSignalKind.DER_SETPOINT, "kW"
        factor = _power_factor(units, scale, where, source)
    elif upper in ("X-IMPORT_CAPACITY_LIMIT", "X-EXPORT_CAPACITY_LIMIT"):
        kind = EventSignalKind.IMPORT_CAPACITY_LIMIT if "IMPORT" in upper else EventSignalKind.EXPORT_CAPACITY_LIMIT
        unit = "kW"
        factor = _power_factor(units, scale, where, source)
    else:
        unit = units
    intervals = _intervals(
        signal.get("intervals") or [], scale=factor, where=where, source=source, active_start=active_start
    )
    return {
        "kind": kind,
        "name": f"{name}/{signal_type}" if kind is EventSignalKind.OTHER else name,
        "unit": unit,
        "currency": currency,
        "intervals": intervals,
    }


def _targets(raw_targets: Sequence[Any]) -> list[dict[str, str]]:
    targets: list[dict[str, str]] = []
    for target in raw_targets:
        if not isinstance(target, Mapping):
            continue
        for kind, value in target.items():
            if value is None or value == "":
                continue
            if isinstance(value, Mapping):  # e.g. end_device_asset: {"mrid": ...}
                value = next(iter(value.values()), None)
            for item in value if isinstance(value, list) else [value]:
                if item not in (None, ""):
                    targets.append({"kind": str(kind), "value": str(item)})
    return targets


def _test_event(value: Any) -> bool:
    # OpenADR's testEvent is "false", "true", or test parameters (anything but "false" marks a test).
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    return str(value).strip().lower() not in ("", "false")


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidSignalError(f"{value!r} is not an integer") from None


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "", "None") else str(value)


def parse_distribute_event(
    xml: bytes | str, *, source: str, received_at: datetime | None = None, expected_vtn_id: str | None = None
) -> Distribution:
    """Parse a raw ``oadrDistributeEvent`` with openleadr (schema-validated) and normalise it.

    Signatures are not checked here; the VEN client does that before parsing.
    """
    from lxml.etree import XMLSyntaxError
    from openleadr.messaging import parse_message, validate_xml_schema

    try:
        validate_xml_schema(xml)
        message_type, payload = parse_message(xml)
    except XMLSyntaxError as exc:
        raise MalformedPayloadError(f"the message fails the OpenADR 2.0b schema: {exc}", source=source) from None
    if message_type != "oadrDistributeEvent":
        raise MalformedPayloadError(f"expected oadrDistributeEvent, got {message_type}", source=source)
    return events_from_distribution(
        payload, source=source, received_at=received_at or datetime.now(UTC), expected_vtn_id=expected_vtn_id
    )
