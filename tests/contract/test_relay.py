"""The signed webhook relay on loopback (uvicorn) with a real store: what it accepts, what it refuses, and that
it loses nothing: accepted events are stored before the 2xx, refused requests change nothing, a replay is
refused after a restart too, and a store outage is a 503 with nothing acknowledged."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from airflow_provider_gridaware.relay.app import RelayConfig, create_relay_app, relay_fastapi_app
from airflow_provider_gridaware.relay.auth import sign
from airflow_provider_gridaware.signals.grid_event import EventStatus
from airflow_provider_gridaware.store.events import EventStore, RecordOutcome
from tests.support.asgi_server import serve
from tests.support.http import LOOPBACK

SECRET = "s3cret-shared-with-the-utility"
TOKEN = "vtn-notification-token"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "openadr3"


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_UTILITY", json.dumps({"conn_type": "gridaware_webhook", "password": SECRET, "extra": {}})
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_VTN3_PUSH",
        json.dumps(
            {
                "conn_type": "gridaware_webhook",
                "password": TOKEN,
                "extra": {"auth_mode": "bearer", "openadr3_conn_id": "vtn3"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMALL",
        json.dumps({"conn_type": "gridaware_webhook", "password": SECRET, "extra": {"max_body_bytes": 2048}}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_NOT_A_WEBHOOK", json.dumps({"conn_type": "gridaware_ukci"}))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(f"sqlite:///{tmp_path / 'store.db'}") as events:
        yield events


@pytest.fixture
def relay(store: EventStore) -> Iterator[str]:
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        yield url


def event_json(event_id: str = "peak-1", **overrides: Any) -> dict[str, Any]:
    start = int(time.time()) + 3600
    return {
        "event_id": event_id,
        "modification_number": 0,
        "program": "summer-peak",
        "status": "far",
        "signals": [
            {
                "kind": "simple",
                "name": "SIMPLE",
                "unit": "level",
                "intervals": [
                    {"start": _iso(start), "end": _iso(start + 3600), "value": 2},
                ],
            }
        ],
        "targets": [{"kind": "zone", "value": "DE"}],
        **overrides,
    }


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None, delivery: str | None = None) -> dict:
    timestamp = str(int(at if at is not None else time.time()))
    delivery = delivery or uuid.uuid4().hex
    return {
        "X-Gridaware-Timestamp": timestamp,
        "X-Gridaware-Delivery": delivery,
        "X-Gridaware-Signature": sign(secret.encode(), timestamp, delivery, body),
        "Content-Type": "application/json",
    }


def post(url: str, body: bytes, headers: dict, conn_id: str = "utility") -> httpx.Response:
    return LOOPBACK.post(f"{url}/events/{conn_id}", content=body, headers=headers, timeout=10)


def test_a_signed_event_is_stored_before_the_answer(relay, store):
    body = json.dumps(event_json()).encode()
    response = post(relay, body, signed(body))
    assert response.status_code == 200, response.text
    [stored] = response.json()["stored"]
    assert (stored["event_id"], stored["outcome"]) == ("peak-1", "new")
    [row] = store.since(0)  # the store has it the moment the 200 arrived
    assert row.seq == stored["seq"]
    assert (row.event.source, row.event.protocol, row.event.status) == ("webhook:utility", "webhook", EventStatus.FAR)
    assert row.event.level_at(row.event.start) == 2


def test_a_list_of_events_and_a_modification_in_one_delivery(relay, store):
    body = json.dumps({"events": [event_json(), event_json(modification_number=1, status="near")]}).encode()
    response = post(relay, body, signed(body))
    assert [s["outcome"] for s in response.json()["stored"]] == ["new", "modified"]
    assert len(store.since(0)) == 2


def _refused(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert message in response.json()["error"], response.json()


@pytest.mark.parametrize(
    ("make_headers", "status", "message"),
    [
        (lambda body: {"Content-Type": "application/json"}, 401, "unsigned request"),
        (lambda body: signed(body, secret="not-the-secret-at-all"), 401, "signature does not match"),
        (lambda body: signed(body + b" "), 401, "signature does not match"),  # body changed after signing
        (lambda body: signed(body, at=time.time() - 3600), 401, "s old (tolerance 300 s)"),
        (lambda body: signed(body, at=time.time() + 3600), 401, "far in the future"),
        (lambda body: {**signed(body), "X-Gridaware-Delivery": "bad id!"}, 400, "x-gridaware-delivery must be"),
        (lambda body: {**signed(body), "X-Gridaware-Timestamp": "yesterday"}, 400, "is not unix seconds"),
    ],
    ids=["unsigned", "forged", "tampered", "stale", "future", "bad-delivery-id", "bad-timestamp"],
)
def test_bad_requests_are_refused_and_change_nothing(relay, store, make_headers, status, message, caplog):
    body = json.dumps(event_json()).encode()
    _refused(post(relay, body, make_headers(body)), status, message)
    assert store.since(0) == []
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("document", "status", "message"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        (b'{"event_id": ' + b"9" * 5000 + b"}", 400, "body is not JSON"),
        (json.dumps(event_json(modification=3)).encode(), 422, "unknown field(s) modification"),
        (json.dumps([]).encode(), 422, "a non-empty list"),
        (
            json.dumps(
                event_json(
                    signals=[
                        {
                            "kind": "price",
                            "name": "PRICE",
                            "unit": "EUR/kWh",
                            "currency": "EUR",
                            "intervals": [{"start": _iso(time.time()), "end": _iso(time.time() + 60), "value": 1}],
                        }
                    ]
                )
            ).encode(),
            422,
            "unit 'EUR/kWh' is not EUR/MWh",
        ),
        (json.dumps(event_json(status="maybe")).encode(), 422, "status"),
    ],
    ids=["malformed", "nested", "huge-number", "unknown-field", "empty", "wrong-unit", "bad-status"],
)
def test_invalid_events_are_refused_with_the_field_named(relay, store, document, status, message):
    _refused(post(relay, document, signed(document)), status, message)
    assert store.since(0) == []


def test_a_replay_is_refused_also_after_a_relay_restart(store):
    body = json.dumps(event_json()).encode()
    headers = signed(body)
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        assert post(url, body, headers).status_code == 200
        _refused(post(url, body, headers), 409, "replayed delivery")
    with serve(create_relay_app(RelayConfig(store=store))) as url:  # a new process: empty memory, same store
        _refused(post(url, body, headers), 409, "already in the store")
        # A new delivery of the same event is no replay: accepted, and the store says it is a duplicate.
        assert post(url, body, signed(body)).json()["stored"][0]["outcome"] == RecordOutcome.DUPLICATE.value
    assert len(store.since(0)) == 1


def test_oversized_bodies_are_refused_unread(relay, store):
    body = json.dumps(event_json(program="x" * 4096)).encode()
    _refused(post(relay, body, signed(body), conn_id="small"), 413, "over the limit of 2048")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(64):
            yield b"x" * 1024

    response = LOOPBACK.post(f"{relay}/events/small", content=chunks(), headers=signed(b""), timeout=10)
    _refused(response, 413, "body is over the limit of 2048 bytes")
    assert store.since(0) == []


def test_unknown_and_wrong_connections_are_404(relay):
    body = json.dumps(event_json()).encode()
    _refused(post(relay, body, signed(body), conn_id="nobody"), 404, "'nobody' does not exist")
    _refused(post(relay, body, signed(body), conn_id="not_a_webhook"), 404, "not gridaware_webhook")


def test_a_store_outage_is_a_503_and_nothing_is_acknowledged(store, monkeypatch):
    def down(*_args: Any, **_kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("could not connect to server"))

    monkeypatch.setattr(store, "record_deliveries", down)
    body = json.dumps(event_json()).encode()
    headers = signed(body)
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        response = post(url, body, headers)
        _refused(response, 503, "the store is unavailable")
        assert response.headers["Retry-After"] == "5"
        monkeypatch.undo()
        # The sender retries the same delivery: not a replay (nothing was acknowledged), now stored.
        assert post(url, body, headers).status_code == 200
    assert len(store.since(0)) == 1


def test_bearer_mode_and_openadr3_notifications(relay, store):
    pytest.importorskip("airflow_provider_gridaware.sources.openadr3")
    notification = (FIXTURES / "example_notification_3.1.json").read_bytes()
    url = f"{relay}/openadr3/vtn3_push"
    _refused(LOOPBACK.post(url, content=notification, timeout=10), 401, "missing bearer token")
    _refused(
        LOOPBACK.post(url, content=notification, headers={"Authorization": "Bearer nope"}, timeout=10), 401, "wrong"
    )
    response = LOOPBACK.post(url, content=notification, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    rows = store.since(0)
    assert rows and all(r.event.source == "openadr3:vtn3" and r.event.protocol == "openadr3" for r in rows)


def test_healthz_and_mounted_in_a_fastapi_app_at_a_prefix(store):
    from fastapi import FastAPI

    parent = FastAPI()
    parent.mount("/gridaware-relay", relay_fastapi_app(RelayConfig(store=store)))
    with serve(parent) as url:
        assert LOOPBACK.get(f"{url}/gridaware-relay/healthz", timeout=10).json()["status"] == "ok"
        body = json.dumps(event_json()).encode()
        response = LOOPBACK.post(
            f"{url}/gridaware-relay/events/utility", content=body, headers=signed(body), timeout=10
        )
        assert response.status_code == 200, response.text
    assert len(store.since(0)) == 1


def test_concurrent_deliveries_share_commits_and_every_acknowledged_one_is_stored(relay, store):
    bodies = [json.dumps(event_json(f"burst-{i}")).encode() for i in range(60)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda body: post(relay, body, signed(body)), bodies))
    assert [r.status_code for r in responses] == [200] * 60
    assert {s.event.event_id for s in store.since(0)} == {f"burst-{i}" for i in range(60)}


def test_header_names_come_from_the_connection(store, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RENAMED",
        json.dumps(
            {
                "conn_type": "gridaware_webhook",
                "password": SECRET,
                "extra": {"signature_header": "X-Utility-Signature", "timestamp_header": "X-Utility-Time"},
            }
        ),
    )
    body = json.dumps(event_json()).encode()
    ours = signed(body)
    theirs = {
        "X-Utility-Signature": ours["X-Gridaware-Signature"],
        "X-Utility-Time": ours["X-Gridaware-Timestamp"],
        "X-Gridaware-Delivery": ours["X-Gridaware-Delivery"],
    }
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        _refused(post(url, body, ours, conn_id="renamed"), 401, "missing x-utility-signature")
        assert post(url, body, theirs, conn_id="renamed").status_code == 200
    assert len(store.since(0)) == 1


def test_a_failed_connection_lookup_keeps_the_last_settings_or_is_a_503(store, monkeypatch):
    from airflow_provider_gridaware.relay.auth import RelayAuth

    lookups: list[str] = []

    def metadata_db_down_after_the_first(conn_id: str) -> RelayAuth:
        lookups.append(conn_id)
        if len(lookups) > 1:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return RelayAuth(conn_id=conn_id, secret=SECRET.encode())

    body = json.dumps(event_json()).encode()
    # settings_ttl_s=0: every request looks the connection up again.
    config = RelayConfig(store=store, auth_for=metadata_db_down_after_the_first, settings_ttl_s=0.0)
    with serve(create_relay_app(config)) as url:
        assert post(url, body, signed(body)).status_code == 200
        assert post(url, body, signed(body), conn_id="utility").status_code == 200  # looked up, failed, cached used
        response = post(url, body, signed(body), conn_id="other")  # never read: nothing to fall back on
        _refused(response, 503, "could not read connection 'other'")
        assert response.headers["Retry-After"] == "5"
    assert len(lookups) == 3


def test_openadr3_without_its_parser_is_a_501_and_stores_nothing(relay, store, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "airflow_provider_gridaware.sources.openadr3", None)  # import now fails
    notification = (FIXTURES / "example_notification_3.1.json").read_bytes()
    response = LOOPBACK.post(
        f"{relay}/openadr3/vtn3_push", content=notification, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    _refused(response, 501, "OpenADR 3 notifications are not supported")
    assert store.since(0) == []


def test_healthz_is_503_when_the_store_is_down(store, monkeypatch):
    def down() -> int:
        raise OperationalError("SELECT", {}, Exception("could not connect to server"))

    monkeypatch.setattr(store, "last_seq", down)
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        response = LOOPBACK.get(f"{url}/healthz", timeout=10)
    assert response.status_code == 503 and "could not connect" in response.json()["error"]


def test_on_the_loopback_postgresql(tmp_path):
    from tests.support.postgres import throwaway_database, unreachable_reason

    reason = unreachable_reason()
    if reason:
        pytest.skip(reason)
    with throwaway_database("gridaware_relay") as database:
        body = json.dumps(event_json()).encode()
        headers = signed(body)
        with EventStore(database) as store, serve(create_relay_app(RelayConfig(store=store))) as url:
            assert post(url, body, headers).status_code == 200
            bodies = [json.dumps(event_json(f"pg-{i}")).encode() for i in range(40)]
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = list(pool.map(lambda b: post(url, b, signed(b)).status_code, bodies))
            assert statuses == [200] * 40
        with EventStore(database) as store:  # a restarted relay on the same database
            with serve(create_relay_app(RelayConfig(store=store))) as url:
                _refused(post(url, body, headers), 409, "already in the store")
            assert len(store.since(0)) == 41


def test_zones_of_the_connection_tag_events_that_name_none(store, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ZONED",
        json.dumps({"conn_type": "gridaware_webhook", "password": SECRET, "extra": {"zones": "DE, NL"}}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_VTN3_PUSH",
        json.dumps(
            {
                "conn_type": "gridaware_webhook",
                "password": TOKEN,
                "extra": {"auth_mode": "bearer", "openadr3_conn_id": "vtn3", "zones": "IGNORED"},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_VTN3",
        json.dumps({"conn_type": "gridaware_openadr3", "host": "http://x", "extra": {"zones": "FR"}}),
    )
    named = json.dumps(event_json("named")).encode()  # names zone DE itself: kept as it is
    unnamed = json.dumps(event_json("unnamed", targets=[])).encode()
    with serve(create_relay_app(RelayConfig(store=store))) as url:
        assert post(url, named, signed(named), conn_id="zoned").status_code == 200
        assert post(url, unnamed, signed(unnamed), conn_id="zoned").status_code == 200
        if importlib.util.find_spec("airflow_provider_gridaware.sources.openadr3") is not None:
            notification = (FIXTURES / "example_notification_3.1.json").read_bytes()
            headers = {"Authorization": f"Bearer {TOKEN}"}
            response = LOOPBACK.post(f"{url}/openadr3/vtn3_push", content=notification, headers=headers, timeout=10)
            assert response.status_code == 200, response.text
    zones = {s.event.event_id: {t.value for t in s.event.targets if t.kind == "zone"} for s in store.since(0)}
    assert zones.pop("named") == {"DE"}
    assert zones.pop("unnamed") == {"DE", "NL"}
    if importlib.util.find_spec("airflow_provider_gridaware.sources.openadr3") is not None:
        assert zones and all(z == {"FR"} for z in zones.values())  # OpenADR 3: the polled connection's zones


def test_the_hook_and_gridaware_events_read_what_the_relay_stored(relay, store):
    from airflow_provider_gridaware.hooks.webhook import GridWebhookHook

    body = json.dumps([event_json("a"), event_json("b", status="cancelled")]).encode()
    assert post(relay, body, signed(body)).status_code == 200
    received = GridWebhookHook("utility").receive(store)
    assert [r.event.event_id for r in received] == ["a"]  # the cancelled one is not current
    assert {r.recorded.outcome for r in received} == {RecordOutcome.DUPLICATE}  # nothing stored twice
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gridaware"), "events", "--conn-id", "utility", "--json"],
        env={**os.environ, "GRIDAWARE_STORE_URL": str(store.url)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [p["event_id"] for p in printed] == ["a"]


def test_a_connection_gone_after_it_was_read_keeps_its_settings_for_the_grace_then_503(store, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FLEETING", json.dumps({"conn_type": "gridaware_webhook", "password": SECRET}))
    body = json.dumps(event_json()).encode()
    config = RelayConfig(store=store, settings_ttl_s=0.0, stale_grace_s=3600.0)
    with serve(create_relay_app(config)) as url:
        assert post(url, body, signed(body), conn_id="fleeting").status_code == 200
        # Airflow's secrets chain says "not defined" both for a deleted connection and an unreachable metastore.
        monkeypatch.delenv("AIRFLOW_CONN_FLEETING")
        assert post(url, body, signed(body), conn_id="fleeting").status_code == 200
        config.stale_grace_s = 0.0
        _refused(post(url, body, signed(body), conn_id="fleeting"), 503, "cannot be read now (last read")
    assert len(store.since(0)) == 1  # the second delivery of the same event: a duplicate, not stored twice


def test_the_documented_curl_example_is_accepted(relay, store):
    import shutil

    if not (shutil.which("openssl") and shutil.which("curl")):
        pytest.skip("openssl and curl are needed to run the documented example")
    page = (Path(__file__).parents[2] / "docs" / "events" / "relay.md").read_text()
    script = page.split("# sign-and-send", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={**os.environ, "RELAY_URL": relay},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stored"][0]["outcome"] == "new", done.stdout
    [row] = store.since(0)
    assert (row.event.event_id, row.event.source) == ("peak-2026-07-01", "webhook:utility")


def test_one_delivery_sent_many_times_at_once_is_accepted_once(relay, store):
    body = json.dumps(event_json("racing")).encode()
    headers = signed(body)
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(pool.map(lambda _: post(relay, body, headers).status_code, range(20)))
    assert statuses == [200] + [409] * 19
    assert len(store.since(0)) == 1
