"""OpenADR3Hook against a local OpenADR 3 VTN serving the real 3.0.1 and 3.1 shapes behind OAuth2."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.openadr3 import OpenADR3Hook
from airflow_provider_gridaware.signals.errors import MalformedPayloadError, SourceAuthError
from airflow_provider_gridaware.signals.grid_event import EventSignalKind, EventStatus
from airflow_provider_gridaware.sources import openadr3, rest
from airflow_provider_gridaware.sources.openadr3 import parse_openadr3_notification
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from tests.support.openadr3_vtn import OpenADR3VTN

UTC = timezone.utc
CLIENT_ID, CLIENT_SECRET = "ven-7", "s3cr+t/ven=7"


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    # Tokens, discovered token URLs and program names are process-wide: tests must not share them.
    rest.reset_token_cache()
    openadr3.reset_discovery()
    yield
    rest.reset_token_cache()
    openadr3.reset_discovery()


@pytest.fixture
def vtn() -> Iterator[OpenADR3VTN]:
    with OpenADR3VTN(CLIENT_ID, CLIENT_SECRET) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'events.db'}") as events:
        yield events


@pytest.fixture
def hook(vtn: OpenADR3VTN, make_connection) -> Callable[..., OpenADR3Hook]:
    def _make(conn_id: str = "vtn3", *, url: str | None = None, secret: str = CLIENT_SECRET, **extra: Any):
        fields = {"host": url or vtn.url, "login": CLIENT_ID, "password": secret, "extra": extra}
        return OpenADR3Hook(make_connection(conn_id, "gridaware_openadr3", **fields))

    return _make


def soon(minutes: float = 30) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)


def set_level(level: int) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        for interval in event["intervals"]:
            for payload in interval["payloads"]:
                if payload["type"] == "SIMPLE":
                    payload["values"] = [level]

    return change


def test_events_of_the_followed_program_by_name_every_page(vtn, hook, store):
    dr, other = vtn.add_program("dr-peak"), vtn.add_program("tariff")
    ids = [vtn.add_event(dr, start=soon(30 + i)) for i in range(5)]
    vtn.add_event(other, start=soon())

    received = hook(programs="dr-peak", page_size=2).receive(store)

    assert sorted(r.event.event_id for r in received) == sorted(ids)
    assert {r.recorded.outcome for r in received} == {RecordOutcome.NEW}
    event = received[0].event
    assert event.source == "openadr3:vtn3" and event.protocol == "openadr3"
    assert event.program == "dr-peak"  # the programID resolved to the program's name
    assert event.status is EventStatus.NEAR
    price = event.signal(EventSignalKind.PRICE)
    assert price is not None and price.unit == "EUR/MWh" and price.intervals[0].value == pytest.approx(310.0)
    pages = [q.get("skip") for m, p, q in vtn.requests if p.endswith("/events")]
    assert pages == [["0"], ["2"], ["4"]]  # 2 + 2 + 1: the short page ends the listing
    assert all(q["programID"] == [dr] for m, p, q in vtn.requests if p.endswith("/events"))


def test_modification_then_deletion_are_recorded_in_order(vtn, hook, store):
    program = vtn.add_program("dr-peak")
    event_id = vtn.add_event(program, start=soon())
    source = hook()

    first = source.receive(store)
    vtn.modify_event(event_id, set_level(3))  # within the same second as its creation: numbers must still rise
    modified = source.receive(store)
    again = source.receive(store)
    vtn.delete_event(event_id)
    deleted = source.receive(store)

    assert [r.recorded.outcome for r in first] == [RecordOutcome.NEW]
    assert [r.recorded.outcome for r in modified] == [RecordOutcome.MODIFIED]
    assert modified[0].event.modification_number > first[0].event.modification_number
    assert modified[0].event.level_at(modified[0].event.start) == 3
    assert [r.recorded.outcome for r in again] == [RecordOutcome.DUPLICATE]
    assert [r.recorded.outcome for r in deleted] == [RecordOutcome.STATUS]
    latest = store.latest("openadr3:vtn3", event_id)
    assert latest is not None and latest.status is EventStatus.CANCELLED
    assert latest.modification_number == modified[0].event.modification_number


def test_expired_token_is_refreshed_once(vtn, hook, store):
    vtn.add_event(vtn.add_program("dr-peak"), start=soon())
    source = hook()
    source.receive(store)
    assert vtn.token_grants == 1
    source.receive(store)
    assert vtn.token_grants == 1  # cached until shortly before it expires

    vtn.expire_tokens()  # the VTN forgets it early: a 401, one new token, the same request again
    assert len(source.receive(store)) == 1
    assert vtn.token_grants == 2
    assert vtn.paths("POST").count("/openadr3/3.1/auth/token") == 2
    assert [m for m, p, _ in vtn.requests if p.endswith("/programs")].count("GET") == 4  # 3 polls, 1 retried


def test_token_past_its_lifetime_is_renewed_before_use(make_connection, monkeypatch):
    from airflow_provider_gridaware.sources import rest

    now = [1000.0]  # the token cache's clock, moved by hand: no waiting, no dependence on the machine's load
    monkeypatch.setattr(rest.TOKEN_CACHE, "clock", lambda: now[0])
    with OpenADR3VTN(CLIENT_ID, CLIENT_SECRET, token_seconds=60) as short:
        short.add_event(short.add_program("dr-peak"), start=soon())
        conn = make_connection(
            "vtn_short", "gridaware_openadr3", host=short.url, login=CLIENT_ID, password=CLIENT_SECRET
        )
        source = OpenADR3Hook(conn)
        source.poll_events()
        now[0] += 55  # past the lifetime less the cache's safety margin
        source.poll_events()
        assert short.token_grants == 2
        assert len([r for r in short.requests if r[1].endswith("/events")]) == 2  # no 401 on the way


def test_wrong_credentials_are_a_clear_auth_error_and_record_nothing(vtn, hook, store):
    vtn.add_event(vtn.add_program("dr-peak"), start=soon())
    wrong = "not-the-secret-123"
    with pytest.raises(SourceAuthError) as caught:
        hook(secret=wrong).receive(store)
    message = str(caught.value)
    assert "refused the client credentials" in message and "invalid_client" in message
    assert wrong not in message
    assert store.last_seq() == 0


def test_malformed_event_is_named_and_the_others_are_still_recorded(vtn, hook, store):
    program = vtn.add_program("dr-peak")
    good = vtn.add_event(program, start=soon())
    bad = vtn.add_event(program, start=soon(40))
    vtn.modify_event(bad, lambda e: e["payloadDescriptors"][0].update(currency=None))

    with pytest.raises(MalformedPayloadError) as caught:
        hook().receive(store)

    message = str(caught.value)
    assert f"event {bad!r}" in message and "currency" in message
    assert store.latest("openadr3:vtn3", good) is not None
    assert store.latest("openadr3:vtn3", bad) is None
    assert store.last_seq() == 1  # the malformed event is not taken for a deleted one either


def test_receive_has_committed_before_it_returns(vtn, hook, store):
    event_id = vtn.add_event(vtn.add_program("dr-peak"), start=soon())
    received = hook().receive(store)
    with EventStore(store.url) as other:  # another connection sees it: committed, not pending
        stored = other.since(0)
    assert [s.event.event_id for s in stored] == [event_id]
    assert stored[0].seq == received[0].recorded.seq


def test_3_0_1_vtn_without_discovery_and_its_target_shape(make_connection, store):
    with OpenADR3VTN(CLIENT_ID, CLIENT_SECRET, version="3.0.1", discovery=False) as old:
        old.add_event(old.add_program("dr-peak"), start=soon())
        conn = make_connection("vtn301", "gridaware_openadr3", host=old.url, login=CLIENT_ID, password=CLIENT_SECRET)
        received = OpenADR3Hook(conn).receive(store)
    assert [(t.kind, t.value) for t in received[0].event.targets] == [("group", "group-airflow")]
    assert ("GET", "/openadr3/3.0.1/auth/server") in [(m, p) for m, p, _ in old.requests]


def test_subscription_is_created_once_reused_and_updated(vtn, hook):
    vtn.add_program("dr-peak")
    source = hook(programs="dr-peak", client_name="fleet-a")
    callback = "http://127.0.0.1:9/openadr3/vtn3"

    first = source.subscribe(callback, bearer_token="relay-token-1")
    second = source.subscribe(callback, bearer_token="relay-token-1")
    assert len(vtn.subscriptions) == 1 and first[0]["id"] == second[0]["id"]
    assert vtn.paths("POST").count("/openadr3/3.1/subscriptions") == 1
    assert vtn.paths("PUT") == []
    body = vtn.subscriptions[first[0]["id"]]
    assert body["clientName"] == "fleet-a" and body["objectOperations"][0]["callbackUrl"] == callback

    third = source.subscribe(callback, bearer_token="relay-token-2")
    assert third[0]["id"] == first[0]["id"] and len(vtn.subscriptions) == 1
    assert vtn.subscriptions[first[0]["id"]]["objectOperations"][0]["bearerToken"] == "relay-token-2"

    assert source.unsubscribe(callback) == [first[0]["id"]]
    assert vtn.subscriptions == {}


class _Relay:
    """A stand-in for the relay's ``/openadr3/<conn_id>`` route: checks the bearer token, parses, stores."""

    def __init__(self, store: EventStore, token: str) -> None:
        relay = self
        self.errors: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                try:
                    for event in parse_openadr3_notification(
                        body, source="openadr3:vtn3", received_at=datetime.now(UTC)
                    ):
                        store.record(openadr3.sequence_modification(event, store.latest(event.source, event.event_id)))
                except Exception as exc:  # the test reads it: a relay answers 4xx
                    relay.errors.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/openadr3/vtn3"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_notifications_from_the_vtn_reach_the_store(vtn, hook, store):
    program = vtn.add_program("dr-peak")
    relay = _Relay(store, token="relay-token-1")
    try:
        hook().subscribe(relay.url, bearer_token="relay-token-1")
        event_id = vtn.add_event(program, start=soon())
        vtn.modify_event(event_id, set_level(3))
        vtn.delete_event(event_id)
    finally:
        relay.close()
    assert relay.errors == []
    assert [status for _, status in vtn.notifications_sent] == [204, 204, 204]
    states = [s.event for s in store.since(0)]
    assert [(e.status, e.level_at(e.start) if e.start else None) for e in states][-1][0] is EventStatus.CANCELLED
    assert len({e.modification_number for e in states}) == 2  # created, modified (cancelled keeps the last)
    assert states[1].modification_number > states[0].modification_number
    # subscribe() listed the programs in this process, so the notifications name the program as polls do.
    assert json.loads(states[0].to_json())["program"] == "dr-peak"


def test_zones_of_the_connection_tag_events_and_an_unchanged_event_stays_a_duplicate(vtn, hook, store):
    vtn.add_event(vtn.add_program("dr-peak"), start=soon())
    source = hook(zones="DE,NL")
    [first] = source.receive(store)
    [again] = source.receive(store)
    assert {(t.kind, t.value) for t in first.event.targets} >= {("zone", "DE"), ("zone", "NL")}
    assert (first.recorded.outcome, again.recorded.outcome) == (RecordOutcome.NEW, RecordOutcome.DUPLICATE)
