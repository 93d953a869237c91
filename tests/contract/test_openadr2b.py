"""OpenADR 2.0b against a real openleadr VTN on loopback (a subprocess): plain, then mutual TLS and XML
signatures from a throwaway CA; a wrong fingerprint, a foreign CA and tampered XML are refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.openadr2b import OpenADR2bHook
from airflow_provider_gridaware.signals.errors import SourceAuthError, SourceConfigError, SourceUnavailableError
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from airflow_provider_gridaware.store.meta import close_meta_engines
from tests.support.openadr_vtn import VtnProcess
from tests.support.pki import Issued, ThrowawayCA

VTN_ID = "GRID_VTN"
VEN_NAME = "fleet1"
VEN_ID = f"ven-{VEN_NAME}"  # what the test VTN assigns


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("pki")
    ca = ThrowawayCA(folder, "grid-ca")
    foreign = ThrowawayCA(folder, "foreign-ca")
    return {
        "ca": ca,
        "vtn": ca.issue("vtn", server=True),
        "ven": ca.issue("ven", server=False),
        "foreign_vtn": foreign.issue("vtn", server=True),
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as events:
        yield events
    close_meta_engines()


@pytest.fixture
def vtn_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., OpenADR2bHook]:
    """A ``gridaware_openadr2b`` connection to ``vtn`` (``AIRFLOW_CONN_VTN``) and its hook."""

    def make(vtn: VtnProcess, **extra: Any) -> OpenADR2bHook:
        fields = {
            "conn_type": "gridaware_openadr2b",
            "host": vtn.url,
            "login": VEN_NAME,
            "extra": {"vtn_id": VTN_ID, "poll_interval": 1, "timeout": 5, "connect_timeout": 2, **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_VTN", json.dumps(fields))
        return OpenADR2bHook("vtn")

    return make


def _tls_extra(pki: dict[str, Any], ven: Issued | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    ven = ven or pki["ven"]
    return {
        "cert_file": str(ven.cert_path),
        "key_file": str(ven.key_path),
        "ca_file": str(pki["ca"].cert_path),
        "vtn_fingerprint": fingerprint or pki["vtn"].fingerprint,
    }


def _signed_vtn(vtn_cert: Issued, pki: dict[str, Any]) -> VtnProcess:
    tls = {
        "cert": str(vtn_cert.cert_path),
        "key": str(vtn_cert.key_path),
        "ca": str(pki["ca"].cert_path),
        "ven_fingerprint": pki["ven"].fingerprint,
    }
    return VtnProcess(VTN_ID, tls=tls)


def _lifecycle(vtn: VtnProcess, hook: OpenADR2bHook, store: EventStore) -> None:
    """Register, then events, a modification and a cancellation, each stored and answered."""
    registration = hook.register(store_url=store.url)
    assert (registration.ven_id, registration.registration_id) == (VEN_ID, f"reg-{VEN_NAME}")
    assert registration.poll_interval == 1.0
    assert hook.stored_registration(store.url) == (VEN_ID, f"reg-{VEN_NAME}")

    assert hook.receive(store) == []  # nothing queued yet: the VTN answers a bare oadrResponse
    vtn.command("add_event", ven_id=VEN_ID, event_id="ev-simple", values=[1, 2, 3], priority=2)
    vtn.command("add_event", ven_id=VEN_ID, event_id="ev-price", signal="PRICE", values=[0.31, 0.45])
    received = {r.event.event_id: r for r in hook.receive(store)}
    assert {k: r.recorded.outcome for k, r in received.items()} == {
        "ev-simple": RecordOutcome.NEW,
        "ev-price": RecordOutcome.NEW,
    }
    simple = received["ev-simple"].event
    assert simple.source == "openadr2b:vtn" and simple.program == "http://vtn.local/programs/dr"
    assert [i.value for i in simple.signal(EventSignalKind.SIMPLE).intervals] == [1, 2, 3]
    assert simple.priority == 2 and simple.response_required and simple.status is EventStatus.FAR
    assert [(t.kind, t.value) for t in simple.targets] == [("ven_id", VEN_ID)]
    price = received["ev-price"].event.signal(EventSignalKind.PRICE)
    assert price is not None and price.unit == "EUR/MWh" and [i.value for i in price.intervals] == [310.0, 450.0]

    # The same poll again: nothing new stored, no answer repeated.
    assert [r.recorded.outcome for r in hook.receive(store)] == [RecordOutcome.DUPLICATE] * 2

    vtn.command("modify_event", ven_id=VEN_ID, event_id="ev-simple", values=[0, 3, 3])
    vtn.command("cancel_event", ven_id=VEN_ID, event_id="ev-price")
    received = {r.event.event_id: r for r in hook.receive(store)}
    assert received["ev-simple"].recorded.outcome is RecordOutcome.MODIFIED
    assert received["ev-simple"].event.modification_number == 1
    assert [i.value for i in received["ev-simple"].event.signals[0].intervals] == [0, 3, 3]
    assert received["ev-price"].event.status is EventStatus.CANCELLED
    assert received["ev-price"].event.modification_number == 1

    log = [(s.event.event_id, s.event.modification_number, s.event.status.value) for s in store.since(0)]
    assert log == [
        ("ev-simple", 0, "far"),
        ("ev-price", 0, "far"),
        ("ev-simple", 1, "far"),
        ("ev-price", 1, "cancelled"),
    ]
    responses = sorted(tuple(r) for r in vtn.command("responses"))
    assert responses == [
        (VEN_ID, "ev-price", 0, "optIn"),
        (VEN_ID, "ev-price", 1, "optIn"),
        (VEN_ID, "ev-simple", 0, "optIn"),
        (VEN_ID, "ev-simple", 1, "optIn"),
    ]


def test_plain_http_events_modifications_cancellations(vtn_conn, store):
    with VtnProcess(VTN_ID) as vtn:
        _lifecycle(vtn, vtn_conn(vtn), store)


def test_mutual_tls_and_signed_messages(vtn_conn, store, pki):
    with _signed_vtn(pki["vtn"], pki) as vtn:
        assert vtn.url.startswith("https://")
        _lifecycle(vtn, vtn_conn(vtn, **_tls_extra(pki)), store)


def test_polling_before_registration_is_refused_with_the_command_to_run(vtn_conn, store, tmp_path):
    with VtnProcess(VTN_ID) as vtn:
        hook = vtn_conn(vtn)
        with pytest.raises(SourceConfigError, match=r"not registered.*gridaware openadr2b register --conn-id vtn"):
            hook.receive(store)
        # A venID the VTN does not know: it asks for re-registration, and so do we.
        with pytest.raises(SourceConfigError, match=r"does not know venID 'ven-unknown'.*register again"):
            vtn_conn(vtn, ven_id="ven-unknown").receive(store)
        # A venID the VTN assigned (here: to a registration kept in another store) is used as given.
        vtn_conn(vtn).register(store_url=f"sqlite:///{tmp_path / 'elsewhere.db'}")
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-1", values=[2])
        events = vtn_conn(vtn, ven_id=VEN_ID).receive(store)
        assert [r.event.event_id for r in events] == ["ev-1"]


def test_opt_out_of_test_events(vtn_conn, store):
    with VtnProcess(VTN_ID) as vtn:
        hook = vtn_conn(vtn, opt_policy="opt_out_test_events")
        hook.register(store_url=store.url)
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-real", values=[1])
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-test", values=[1], test_event=True)
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-quiet", values=[1], response_required="never")
        events = {r.event.event_id: r.event for r in hook.receive(store)}
        assert events["ev-test"].test_event and not events["ev-real"].test_event
        assert not events["ev-quiet"].response_required
        responses = sorted(tuple(r) for r in vtn.command("responses"))
        assert responses == [(VEN_ID, "ev-real", 0, "optIn"), (VEN_ID, "ev-test", 0, "optOut")]


def test_wrong_fingerprint_is_refused_and_nothing_is_lost(vtn_conn, store, pki):
    with _signed_vtn(pki["vtn"], pki) as vtn:
        good = vtn_conn(vtn, **_tls_extra(pki))
        good.register(store_url=store.url)
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-1", values=[1])
        good.receive(store)
        vtn.command("modify_event", ven_id=VEN_ID, event_id="ev-1", values=[3])
        wrong = "00:11:22:33:44:55:66:77:88:99"
        hook = vtn_conn(vtn, **_tls_extra(pki, fingerprint=wrong))
        with pytest.raises(
            SourceAuthError, match=rf"signed by certificate {pki['vtn'].fingerprint}, the connection expects {wrong}"
        ):
            hook.receive(store)
        assert [(s.event.event_id, s.event.modification_number) for s in store.since(0)] == [("ev-1", 0)]
        assert (VEN_ID, "ev-1", 1, "optIn") not in [tuple(r) for r in vtn.command("responses")]


def test_vtn_certificate_from_a_foreign_ca_is_refused(vtn_conn, store, pki):
    # The VTN's TLS and signing certificate come from a CA the VEN does not trust.
    with _signed_vtn(pki["foreign_vtn"], pki) as vtn:
        hook = vtn_conn(vtn, **_tls_extra(pki, fingerprint=pki["foreign_vtn"].fingerprint))
        with pytest.raises(SourceAuthError, match=r"TLS certificate .* was refused .*certificate verify failed"):
            hook.register(store_url=store.url)
        assert hook.stored_registration(store.url) == (None, None)


def test_tampered_xml_is_refused(vtn_conn, store, pki):
    with _signed_vtn(pki["vtn"], pki) as vtn:
        hook = vtn_conn(vtn, **_tls_extra(pki))
        hook.register(store_url=store.url)
        vtn.command("add_event", ven_id=VEN_ID, event_id="ev-1", values=[1])
        vtn.command("tamper", on=True)
        with pytest.raises(SourceAuthError, match=r"does not match its XML signature"):
            hook.receive(store)
        assert store.last_seq() == 0
        vtn.command("tamper", on=False)
        assert [r.event.event_id for r in hook.receive(store)] == ["ev-1"]


def test_unsigned_answers_are_refused_when_a_fingerprint_is_set(vtn_conn, store, pki):
    with VtnProcess(VTN_ID) as vtn:
        hook = vtn_conn(vtn, vtn_fingerprint=pki["vtn"].fingerprint)
        with pytest.raises(SourceAuthError, match=r"not signed, but the connection gives a VTN fingerprint"):
            hook.register(store_url=store.url)


def test_a_vtn_with_another_id_is_refused(vtn_conn, store):
    with VtnProcess("OTHER_VTN") as vtn:
        hook = vtn_conn(vtn)
        with pytest.raises(
            SourceConfigError, match=r"answered as vtnID 'OTHER_VTN', the connection expects 'GRID_VTN'"
        ):
            hook.register(store_url=store.url)
        assert hook.stored_registration(store.url) == (None, None)


def test_vtn_down_is_a_clear_outage(vtn_conn, store):
    vtn = VtnProcess(VTN_ID).start()
    vtn.stop()
    hook = vtn_conn(vtn, ven_id=VEN_ID)
    with pytest.raises(
        SourceUnavailableError, match=r"cannot reach the VTN at http://127.0.0.1:\d+/OpenADR2/Simple/2.0b/EiEvent"
    ):
        hook.receive(store)


def test_register_from_the_command_line(vtn_conn, store, monkeypatch, capsys):
    from airflow_provider_gridaware.cli import main

    monkeypatch.setenv("GRIDAWARE_STORE_URL", store.url)
    with VtnProcess(VTN_ID) as vtn:
        hook = vtn_conn(vtn)
        assert main(["openadr2b", "register", "--conn-id", "vtn"]) == 0
        assert f"venID {VEN_ID}" in capsys.readouterr().out
        assert hook.stored_registration(store.url) == (VEN_ID, f"reg-{VEN_NAME}")
