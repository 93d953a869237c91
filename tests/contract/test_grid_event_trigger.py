"""GridEventTrigger and ``gridaware events`` against a real openleadr VTN on loopback and a real store.

The trigger polls the VTN, stores first, fires one TriggerEvent per stored state, resumes from its named
cursor after a restart (events stored while it was down fire then), and outlives an outage of the party.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from airflow_provider_gridaware.cli import main
from airflow_provider_gridaware.hooks.openadr2b import OpenADR2bHook
from airflow_provider_gridaware.signals.errors import SourceConfigError
from airflow_provider_gridaware.store.events import EventStore
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger
from tests.support.grid_events import make_event
from tests.support.openadr_vtn import VtnProcess

VTN_ID = "GRID_VTN"
VEN_NAME = "fleet1"
VEN_ID = f"ven-{VEN_NAME}"
WAIT_S = 20.0  # upper bound for one event to arrive; the test normally gets it within a poll


@pytest.fixture
def vtn(monkeypatch: pytest.MonkeyPatch, store_url: str) -> Iterator[VtnProcess]:
    with VtnProcess(VTN_ID) as process:
        fields = {
            "conn_type": "gridaware_openadr2b",
            "host": process.url,
            "login": VEN_NAME,
            "extra": {"vtn_id": VTN_ID, "timeout": 5, "connect_timeout": 2, "zones": "DE, NL"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_VTN", json.dumps(fields))
        OpenADR2bHook("vtn").register(store_url=store_url)
        yield process


async def _next(events: AsyncIterator[Any]) -> dict[str, Any]:
    event = await asyncio.wait_for(anext(events), WAIT_S)
    return dict(event.payload)


def _trigger(**kwargs: Any) -> GridEventTrigger:
    return GridEventTrigger(**{"poll_interval": 0.2, "tail_interval": 0.05, **kwargs})


def test_serialises_to_what_it_was_built_from():
    trigger = _trigger(conn_ids=["vtn"], cursor_name="dr", sources=["openadr2b:vtn"])
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_gridaware.triggers.grid_event.GridEventTrigger"
    assert GridEventTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.asyncio
async def test_polled_events_fire_once_each_and_a_restart_resumes_from_the_cursor(vtn, store_url):
    trigger = _trigger(conn_ids=["vtn"], cursor_name="dr")
    events = trigger.run()
    vtn.command("add_event", ven_id=VEN_ID, event_id="ev-1", values=[2])
    fired = await _next(events)
    assert (fired["event_id"], fired["modification_number"], fired["status"]) == ("ev-1", 0, "far")
    assert {(t["kind"], t["value"]) for t in fired["event"]["targets"]} >= {("zone", "DE"), ("zone", "NL")}
    vtn.command("modify_event", ven_id=VEN_ID, event_id="ev-1", values=[3])
    fired = await _next(events)
    assert (fired["event_id"], fired["modification_number"]) == ("ev-1", 1)
    await events.aclose()

    # While the watcher is down, the relay (another writer) stores an event: it fires after the restart,
    # and nothing fired before fires again.
    with EventStore(store_url) as store:
        store.record(make_event(source="webhook:utility", protocol="webhook", event_id="pushed"))
    events = _trigger(conn_ids=["vtn"], cursor_name="dr").run()
    fired = await _next(events)
    assert (fired["source"], fired["event_id"]) == ("webhook:utility", "pushed")
    vtn.command("add_event", ven_id=VEN_ID, event_id="ev-2", values=[1])
    assert (await _next(events))["event_id"] == "ev-2"
    await events.aclose()


@pytest.mark.asyncio
async def test_test_events_and_other_sources_do_not_fire(store_url):
    with EventStore(store_url) as store:
        store.record(make_event(event_id="elsewhere"))
        store.record(make_event(source="webhook:utility", protocol="webhook", event_id="test", test_event=True))
        store.record(make_event(source="webhook:utility", protocol="webhook", event_id="real"))
    events = _trigger(sources=["webhook:utility"], from_seq=0).run()
    assert (await _next(events))["event_id"] == "real"
    await events.aclose()
    events = _trigger(sources=["webhook:utility"], from_seq=0, include_test_events=True).run()
    assert [(await _next(events))["event_id"] for _ in range(2)] == ["test", "real"]
    await events.aclose()


@pytest.mark.asyncio
async def test_the_watcher_outlives_an_outage_of_the_party(vtn, store_url, caplog):
    vtn.stop()
    with EventStore(store_url) as store:
        start = store.last_seq()
        store.record(make_event(source="webhook:utility", protocol="webhook", event_id="during-outage"))
    events = _trigger(conn_ids=["vtn"], from_seq=start).run()
    assert (await _next(events))["event_id"] == "during-outage"
    await events.aclose()
    assert "Polling openadr2b:vtn failed, will retry" in caplog.text


@pytest.mark.asyncio
async def test_a_missing_connection_fails_the_watcher_with_its_name(store_url):
    events = _trigger(conn_ids=["nope"]).run()
    with pytest.raises(SourceConfigError, match="'nope' does not exist"):
        await _next(events)


def test_cli_prints_the_events_of_a_connection(vtn, capsys):
    vtn.command("add_event", ven_id=VEN_ID, event_id="ev-cli", values=[1, 2])
    assert main(["events", "--conn-id", "vtn", "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    document = json.loads(line)
    assert (document["event_id"], document["outcome"], document["source"]) == ("ev-cli", "new", "openadr2b:vtn")
    assert main(["events", "--conn-id", "vtn"]) == 0
    assert capsys.readouterr().out.startswith("duplicate: openadr2b:vtn event ev-cli mod 0")
    assert main(["events"]) == 0  # the store's current events
    assert "openadr2b:vtn event ev-cli mod 0" in capsys.readouterr().out


def test_cli_names_a_wrong_connection(store_url, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_NOT_DR", json.dumps({"conn_type": "gridaware_ukci"}))
    assert main(["events", "--conn-id", "not_dr"]) == 2
    assert "'gridaware_ukci' is not a grid-event source" in capsys.readouterr().err


def test_by_default_a_state_another_process_stored_is_read_within_a_fifth_of_a_second():
    # The grid-event response starts from this read: a relayed event used to wait up to 1 s for it.
    assert GridEventTrigger(cursor_name="dr").serialize()[1]["tail_interval"] == 0.2
