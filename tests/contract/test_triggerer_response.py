"""GridEventTrigger(respond=...): the response applied in the triggerer, before the asset event fires.

Real parts: two emulated Kubernetes API servers (kmock) reached through the official client, a real store
(SQLite file), the trigger's own run loop. The grid-event DAG's pass that follows (the operator's runner) must
find the work done and apply nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_gridaware.actuators import ResponseTargets
from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
from airflow_provider_gridaware.hooks.store import shared_event_store, shared_response_store
from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY
from airflow_provider_gridaware.responder import current_events, respond
from airflow_provider_gridaware.signals.grid_event import EventStatus
from airflow_provider_gridaware.times import UTC
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger
from tests.contract.test_kubernetes_suspend_resume import job
from tests.support.grid_events import make_event, simple_signal
from tests.support.kube_emulator import EmulatorThread, kube_config

SOURCE = "webhook:utility"
WAIT_S = 20.0  # upper bound for one event to fire; it normally fires within a tail interval and a pass


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, EmulatorThread]]:
    """kube_a: flexible, batch, critical Jobs running; kube_b: a flexible one running."""
    with EmulatorThread() as a, EmulatorThread() as b:
        for conn_id, emu in (("kube_a", a), ("kube_b", b)):
            spec = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(emu.url)}}
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
        hook_a, hook_b = GridKubernetesHook("kube_a"), GridKubernetesHook("kube_b")
        for name, priority in (("flex", "flexible"), ("bat", "batch"), ("crit", "critical")):
            hook_a.create_job_from_dict(job(name, priority=priority, dag="d", zone="GB"))
        hook_b.create_job_from_dict(job("flex-b", priority="flexible", dag="d", zone="GB"))
        yield {"kube_a": a, "kube_b": b}


def suspended(emu: EmulatorThread) -> set[str]:
    return {name for (_, name), j in emu.jobs().items() if j["spec"].get("suspend")}


def active_event(modification: int = 0, status: EventStatus = EventStatus.ACTIVE, **fields: Any) -> Any:
    now = datetime.now(UTC)
    return make_event(
        source=SOURCE,
        protocol="webhook",
        event_id="dr-1",
        modification_number=modification,
        status=status,
        signals=(simple_signal(start=now - timedelta(minutes=1), levels=(2,), step=timedelta(hours=1)),),
        received_at=now,
        **fields,
    )


def trigger(**kwargs: Any) -> GridEventTrigger:
    fields: dict[str, Any] = {
        "sources": [SOURCE],
        "tail_interval": 0.05,
        "respond": ResponseTargets(kubernetes_conn_ids=["kube_a", "kube_b"]),
    }
    return GridEventTrigger(**{**fields, **kwargs})


async def next_fired(events: AsyncIterator[Any]) -> dict[str, Any]:
    return dict((await asyncio.wait_for(anext(events), WAIT_S)).payload)


def test_the_response_targets_survive_serialisation():
    built = trigger(respond_policy={"actions": {"flexible": "keep"}}, respond_timeout=3)
    classpath, kwargs = built.serialize()
    assert kwargs["respond"]["kubernetes_conn_ids"] == ["kube_a", "kube_b"]
    again = GridEventTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert again.respond == built.respond


def test_a_bad_policy_or_no_target_fails_where_the_dag_is_parsed():
    with pytest.raises(Exception, match="flexibel"):
        trigger(respond_policy={"actions": {"flexibel": "keep"}})
    with pytest.raises(ValueError, match="names no cluster"):
        trigger(respond={})
    with pytest.raises(ValueError, match="respond_timeout"):
        trigger(respond_timeout=0)


@pytest.mark.asyncio
async def test_the_work_is_paused_before_the_asset_fires_and_the_dag_run_applies_nothing_twice(clusters, store_url):
    events = trigger(from_seq=0).run()
    first = asyncio.ensure_future(next_fired(events))
    await asyncio.sleep(0)
    shared_event_store(store_url).record(active_event())
    fired = await first
    assert (fired["event_id"], fired["status"]) == ("dr-1", "active")
    # When the asset event fires, flexible and batch Jobs are already suspended in both clusters; critical runs.
    assert suspended(clusters["kube_a"]) == {"flex", "bat"}
    assert suspended(clusters["kube_b"]) == {"flex-b"}
    responses = shared_response_store(store_url)
    paused = {r.target.rsplit("/", 1)[1]: r for r in responses.records()}
    assert set(paused) == {"flex", "bat", "flex-b"}
    assert {(r.result, r.detail.get("paused_by")) for r in paused.values()} == {("paused", "triggerer")}

    # The grid-event DAG's task passes next, as the operator does: everything is claimed, nothing applied.
    now = datetime.now(UTC)
    outcome = respond(
        events=current_events(shared_event_store(store_url), responses.open_holds(), now),
        actuators=ResponseTargets(kubernetes_conn_ids=["kube_a", "kube_b"]).actuators(DEFAULT_POLICY),
        store=responses,
        now=now,
        runner="task",
    )
    assert (outcome.paused, outcome.joined, outcome.failed) == ([], [], [])
    assert len(responses.records()) == 3

    # The completion: resumed by the triggerer before its asset event fires, each once.
    shared_event_store(store_url).record(active_event(1, EventStatus.COMPLETED))
    fired = await next_fired(events)
    assert (fired["modification_number"], fired["status"]) == (1, "completed")
    assert suspended(clusters["kube_a"]) == suspended(clusters["kube_b"]) == set()
    records = responses.records()
    assert len(records) == 3
    assert {(r.resume_result, r.detail.get("resumed_by")) for r in records} == {("resumed", "triggerer")}
    assert all(r.waited_seconds is not None and r.waited_seconds >= 0 for r in records)
    await events.aclose()


@pytest.mark.asyncio
async def test_an_unreachable_cluster_is_logged_and_the_asset_still_fires(clusters, store_url, monkeypatch, caplog):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    gone = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(f"http://127.0.0.1:{port}")}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_GONE", json.dumps(gone))
    shared_event_store(store_url).record(active_event())
    events = trigger(from_seq=0, respond=ResponseTargets(kubernetes_conn_ids=["kube_gone", "kube_a"])).run()
    with caplog.at_level(logging.ERROR):
        fired = await next_fired(events)
    await events.aclose()
    assert fired["event_id"] == "dr-1"
    assert suspended(clusters["kube_a"]) == {"flex", "bat"}  # the reachable cluster still responded
    assert "Finding kubernetes_job work failed" in caplog.text


@pytest.mark.asyncio
async def test_a_slow_pass_does_not_hold_the_asset_event_past_its_timeout(clusters, store_url, monkeypatch, caplog):
    import threading

    from airflow_provider_gridaware.actuators import KubernetesJobsActuator

    release = threading.Event()
    listing = KubernetesJobsActuator.discover

    def stuck_discover(self: KubernetesJobsActuator) -> Any:
        release.wait(WAIT_S)  # a cluster that does not answer
        return listing(self)

    monkeypatch.setattr(KubernetesJobsActuator, "discover", stuck_discover)
    shared_event_store(store_url).record(active_event())
    events = trigger(from_seq=0, respond_timeout=0.5).run()
    with caplog.at_level(logging.WARNING):
        fired = await next_fired(events)
    assert fired["event_id"] == "dr-1"
    assert suspended(clusters["kube_a"]) == set()  # the asset fired first: the DAG run has it
    assert "response pass for" in caplog.text and "took over 0.5 s" in caplog.text
    caplog.clear()
    release.set()  # the cluster answers: the pass goes on on its own thread and applies what it claimed
    for _ in range(int(WAIT_S / 0.05)):
        if suspended(clusters["kube_a"]) == {"flex", "bat"}:
            break
        await asyncio.sleep(0.05)
    assert suspended(clusters["kube_a"]) == {"flex", "bat"}
    for _ in range(int(WAIT_S / 0.05)):  # its end is logged once the future has its result
        if "late response pass for" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "late response pass for" in caplog.text and "3 paused" in caplog.text  # both clusters
    await events.aclose()


@pytest.mark.asyncio
async def test_a_wrong_configured_policy_is_logged_and_the_events_still_fire(clusters, store_url, monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW__GRIDAWARE__RESPONSE_POLICY", '{"actions": {"flexibel": "keep"}}')
    built = trigger(from_seq=0)  # the deployment's setting is read where the watcher runs, not at parse time
    shared_event_store(store_url).record(active_event())
    with caplog.at_level(logging.ERROR):
        events = built.run()
        fired = await next_fired(events)
    await events.aclose()
    assert fired["event_id"] == "dr-1"
    assert suspended(clusters["kube_a"]) == set()  # the DAG's task responds, and fails naming the key
    assert "Not responding in the triggerer" in caplog.text and "flexibel" in caplog.text
