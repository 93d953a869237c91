"""IEEE 2030.5 hook against a local mutual-TLS server serving the fixtures as a resource tree.

The server pages every list (3 items a page here) and gives pollRates; a throwaway CA made by the test
signs the server and client certificates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from airflow_provider_gridaware.hooks.ieee2030_5 import IEEE20305Hook
from airflow_provider_gridaware.signals.errors import MalformedPayloadError, SourceAuthError
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from tests.support.pki import ThrowawayCA
from tests.support.sep2_server import NSDECL, ListResource, Sep2Server

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ieee2030_5"
CONTROL_MRID = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def items_of(name: str) -> list[str]:
    root = etree.fromstring((FIXTURES / name).read_bytes())
    return [etree.tostring(child).decode() for child in root if isinstance(child.tag, str) and child.get("href")]


def tree() -> dict[str, bytes | ListResource]:
    """DeviceCapability -> EndDevice -> FSA -> DER program; DR program and tariff straight from the dcap."""
    return {
        "/dcap": (
            f'<DeviceCapability {NSDECL} href="/dcap" pollRate="300">'
            '<DemandResponseProgramListLink href="/dr" all="1"/><TariffProfileListLink href="/tp" all="1"/>'
            '<EndDeviceListLink href="/edev" all="1"/></DeviceCapability>'
        ).encode(),
        "/edev": ListResource(
            "EndDeviceList",
            [
                '<EndDevice href="/edev/1"><sFDI>16726121139</sFDI><changedTime>1795676000</changedTime>'
                '<FunctionSetAssignmentsListLink href="/edev/1/fsa" all="1"/></EndDevice>'
            ],
            poll_rate=300,
        ),
        "/edev/1/fsa": ListResource(
            "FunctionSetAssignmentsList",
            [
                '<FunctionSetAssignments href="/edev/1/fsa/1"><mRID>0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A</mRID>'
                '<DERProgramListLink href="/edev/1/derp" all="1"/></FunctionSetAssignments>'
            ],
        ),
        "/edev/1/derp": ListResource("DERProgramList", [fixture("DERProgram.xml")], poll_rate=60),
        "/edev/1/derp/1/derc": ListResource(
            "DERControlList", [fixture("DERControl.xml"), *items_of("pnnl_DERControlList.xml")]
        ),
        "/edev/1/derp/1/dderc": (
            f'<DefaultDERControl {NSDECL} href="/edev/1/derp/1/dderc"><mRID>D0D0D0D0D0D0D0D0D0D0D0D0D0D0D0D0</mRID>'
            "<DERControlBase><opModMaxLimW>10000</opModMaxLimW></DERControlBase><setGradW>250</setGradW>"
            "</DefaultDERControl>"
        ).encode(),
        "/dr": ListResource("DemandResponseProgramList", [fixture("DemandResponseProgram.xml")], poll_rate=120),
        "/dr/1/edc": ListResource("EndDeviceControlList", [fixture("EndDeviceControl.xml")]),
        "/tp": ListResource("TariffProfileList", [fixture("TariffProfile.xml")], poll_rate=120),
        "/tp/1/rc": ListResource("RateComponentList", [fixture("RateComponent.xml")]),
        "/rt/import-wh": (
            f'<ReadingType {NSDECL} href="/rt/import-wh"><flowDirection>1</flowDirection>'
            "<powerOfTenMultiplier>3</powerOfTenMultiplier><uom>72</uom></ReadingType>"
        ).encode(),
        "/tp/1/rc/1/tti": ListResource("TimeTariffIntervalList", items_of("TimeTariffIntervalList.xml"), poll_rate=60),
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = ThrowawayCA(folder, "sep2-ca", key_kind="ec")
    foreign = ThrowawayCA(folder, "foreign-ca", key_kind="ec")
    return {
        "ca": ca,
        "server": ca.issue("sep2-server", server=True),
        "client": ca.issue("der-client", server=False),
        "foreign_client": foreign.issue("der-client", server=False),
        "other_server": ca.issue("other-server", server=True),
    }


@pytest.fixture
def server(pki: dict[str, Any]) -> Iterator[Sep2Server]:
    issued = pki["server"]
    with Sep2Server(issued.cert_path, issued.key_path, pki["ca"].cert_path, resources=tree()) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as events:
        yield events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hook(server: Sep2Server, pki: dict[str, Any], make_connection) -> Callable[..., IEEE20305Hook]:
    def _make(client: str | None = "client", **extra: Any) -> IEEE20305Hook:
        fields: dict[str, Any] = {"ca_file": str(pki["ca"].cert_path), "page_size": 3, "zones": "DE", **extra}
        if client:
            fields.update(cert_file=str(pki[client].cert_path), key_file=str(pki[client].key_path))
        made = IEEE20305Hook(make_connection("sep2", "gridaware_ieee2030_5", host=server.url, extra=fields))
        made.clock = Clock()
        return made

    return _make


def by_id(received: list[Any]) -> dict[str, Any]:
    return {r.event.event_id: r for r in received}


def test_walks_the_tree_pages_every_list_and_maps_controls_loads_and_prices(server, hook, store):
    walker = hook()
    received = by_id(walker.receive(store))
    # 16 DER controls (paged 3 at a time: 6 pages), 1 load control, 3 tariff intervals.
    assert len(received) == 20
    assert server.fetched("/edev/1/derp/1/derc") == 6
    assert all(r.recorded.outcome is RecordOutcome.NEW for r in received.values())

    control = received[CONTROL_MRID].event
    assert control.protocol == "ieee2030_5" and control.source == "ieee2030_5:sep2"
    assert control.status is EventStatus.FAR and control.program == "Export limit program"
    assert control.modification_number == 1795676089 and control.response_required
    limits = {s.name: (s.kind, s.unit, s.intervals[0].value) for s in control.signals}
    assert limits == {
        "opModMaxLimW": (EventSignalKind.DER_SETPOINT, "percent", 50.0),
        "opModImpLimW": (EventSignalKind.IMPORT_CAPACITY_LIMIT, "kW", 7.0),
        "opModExpLimW": (EventSignalKind.EXPORT_CAPACITY_LIMIT, "kW", 5.0),
    }
    assert (control.end - control.start).total_seconds() == 3600
    assert control.start.timestamp() == 1795676400
    pnnl = received["1CB6A7FDA968475796238241FCCDAA4B"].event
    assert pnnl.signal(EventSignalKind.DER_SETPOINT) is not None
    assert {s.name: s.intervals[0].value for s in pnnl.signals} == {"opModMaxLimW": 50.0, "opModTargetW": 4.0}

    shed = received["FFEEDDCCBBAA00998877665544332211"].event
    assert shed.program == "Residential load shed" and shed.signal(EventSignalKind.SIMPLE).intervals[0].value == 1

    defaults = walker.last_result.defaults
    assert [(d.mrid, d.values) for d in defaults] == [
        ("D0D0D0D0D0D0D0D0D0D0D0D0D0D0D0D0", (("opModMaxLimW", "percent", 100.0), ("setGradW", "percent/s", 2.5)))
    ]


def test_tariff_becomes_a_price_series_in_eur_per_mwh(hook, store):
    received = hook().receive(store)
    prices = sorted((r.event for r in received if r.event.signal(EventSignalKind.PRICE)), key=lambda e: e.start)
    assert len(prices) == 3
    assert all(e.program == "DYN-IMPORT" for e in prices)
    # 3100 x 10^-4 EUR per kWh (ReadingType: Wh x 10^3) = 0.31 EUR/kWh = 310 EUR/MWh
    series = [e.price_series(zone="DE") for e in prices]
    assert [s.points[0].value for s in series] == pytest.approx([310.0, 450.0, 280.0])
    assert {s.unit for s in series} == {"EUR/MWh"}
    assert series[0].points[0].start.timestamp() == 1795676400
    stored = store.current(now=prices[0].start)
    assert stored and all(any(t.kind == "zone" and t.value == "DE" for t in e.targets) for e in stored)


def test_poll_rate_is_honoured_and_reported(server, hook, store):
    walker = hook()
    assert walker.poll_interval() == 900  # nothing read yet: the standard's default
    walker.receive(store)
    assert walker.poll_interval() == 60
    gets = len(server.gets)
    again = walker.receive(store)
    assert len(server.gets) == gets  # nothing is due yet: no request at all
    assert {r.recorded.outcome for r in again} == {RecordOutcome.DUPLICATE}
    walker.clock.now += 61  # the 60 s lists are due, the DeviceCapability (300 s) and tariffs (120 s) are not
    walker.receive(store)
    assert server.fetched("/dcap") == 1 and server.fetched("/tp") == 1
    assert server.fetched("/edev/1/derp") == 2 and server.fetched("/edev/1/derp/1/derc") == 12
    assert server.fetched("/tp/1/rc/1/tti") == 2  # its own pollRate (60 s) beats its parent's


def edit_control(server: Sep2Server, change: Callable[[str], str]) -> None:
    listing = server.resources["/edev/1/derp/1/derc"]
    assert isinstance(listing, ListResource)
    listing.items[0] = change(listing.items[0])


def test_a_modified_control_and_a_cancelled_one(server, hook, store):
    walker = hook()
    walker.receive(store)
    edit_control(
        server,
        lambda x: x.replace("<creationTime>1795676089", "<creationTime>1795676200").replace(
            "<value>7</value>", "<value>9</value>"
        ),
    )
    walker.clock.now += 61
    modified = by_id(walker.receive(store))[CONTROL_MRID]
    assert modified.recorded.outcome is RecordOutcome.MODIFIED
    assert modified.event.modification_number == 1795676200
    assert modified.event.signal(EventSignalKind.IMPORT_CAPACITY_LIMIT).intervals[0].value == 9.0

    edit_control(server, lambda x: re.sub(r"<currentStatus>0</currentStatus>", "<currentStatus>2</currentStatus>", x))
    walker.clock.now += 61
    cancelled = by_id(walker.receive(store))[CONTROL_MRID]
    assert cancelled.recorded.outcome is RecordOutcome.STATUS
    assert cancelled.event.status is EventStatus.CANCELLED
    assert store.latest("ieee2030_5:sep2", CONTROL_MRID).status is EventStatus.CANCELLED


def test_malformed_resources_are_named_and_the_others_still_recorded(server, hook, store):
    server.resources["/tp/1/rc/1/tti"] = b"<TimeTariffIntervalList xmlns='urn:ieee:std:2030.5:ns'><broken"
    edit_control(server, lambda x: x.replace("<duration>3600</duration>", "<duration>soon</duration>"))
    with pytest.raises(MalformedPayloadError) as failure:
        hook().receive(store)
    message = str(failure.value)
    assert "/tp/1/rc/1/tti?s=0&l=3: not well-formed XML" in message
    assert "/edev/1/derp/1/derc/1: invalid DERControl" in message and "duration" in message
    recorded = {stored.event.event_id for stored in store.since(0)}
    assert len(recorded) == 16  # 15 good DER controls and the load control; no tariff
    assert CONTROL_MRID not in recorded


def test_client_without_a_certificate_is_refused_by_the_server(hook, store):
    with pytest.raises(SourceAuthError, match="TLS handshake failed"):
        hook(client=None).receive(store)
    assert store.last_seq() == 0


def test_client_certificate_from_a_foreign_ca_is_refused_by_the_server(hook, store):
    with pytest.raises(SourceAuthError, match="TLS handshake failed"):
        hook(client="foreign_client").receive(store)
    assert store.last_seq() == 0


def sha256_of(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def test_server_certificate_pin(pki, hook, store):
    wrong = sha256_of(pki["other_server"].cert_pem)
    with pytest.raises(SourceAuthError, match="does not match the pinned SHA-256") as failure:
        hook(server_fingerprint=wrong).receive(store)
    assert "GET /dcap" in str(failure.value)
    assert store.last_seq() == 0
    right = sha256_of(pki["server"].cert_pem)
    pinned = ":".join(right[i : i + 2] for i in range(0, 64, 2)).upper()  # as openssl prints it
    assert len(hook(server_fingerprint=pinned).receive(store)) == 20


def test_pem_in_the_password_and_extra(pki, server, make_connection, store):
    client = pki["client"]
    conn = make_connection(
        "sep2_pem",
        "gridaware_ieee2030_5",
        host=server.url,
        password=client.key_pem.decode(),
        extra={"cert_pem": client.cert_pem.decode(), "ca_pem": pki["ca"].cert_pem.decode(), "page_size": 50},
    )
    received = IEEE20305Hook(conn).receive(store)
    assert len(received) == 20
    assert server.fetched("/edev/1/derp/1/derc") == 1  # one page of 50
