"""Grid events schedule a DAG on a real Airflow 3.3: GridEventTrigger runs as an AssetWatcher in the triggerer.

An event stored in the provider's store (as the relay or a poller stores it) starts one run within
seconds, carrying the normalised event; an event stored while the triggerer is down starts its run once
the triggerer is back (the watcher's cursor is kept in the store), and nothing fires twice.
"""

from __future__ import annotations

import time

import pytest

from airflow_provider_gridaware.signals.grid_event import EventStatus
from airflow_provider_gridaware.store.events import EventStore
from tests.integration.airflow_stack import AirflowStack, poll
from tests.support.grid_events import make_event

pytestmark = [pytest.mark.integration, pytest.mark.restarts_shared_stack, pytest.mark.timeout(600)]

DAG_ID = "gridaware_event_watch"


def _runs(stack: AirflowStack) -> list[dict]:
    return stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "run_after", "limit": 50})["dag_runs"]


def _reactions(stack: AirflowStack, count: int, timeout: float = 180.0) -> list[list[dict]]:
    """Wait for ``count`` successful runs; their task's return values, oldest first."""

    def done() -> list[dict] | None:
        runs = _runs(stack)
        finished = [r for r in runs if r["state"] == "success"]
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, failed
        return finished if len(finished) >= count else None

    finished = poll(done, timeout=timeout, interval=1.0, what=f"{count} runs of {DAG_ID}")
    return [stack.xcom(DAG_ID, r["dag_run_id"], "react") for r in finished]


def _store(stack: AirflowStack) -> EventStore:
    # The session's store (tests/conftest.py sets GRIDAWARE_STORE_URL, which every component inherits).
    return EventStore(stack.env["GRIDAWARE_STORE_URL"])


def test_a_stored_grid_event_starts_a_run_and_one_stored_while_the_triggerer_was_down_too(
    airflow_stack: AirflowStack,
) -> None:
    airflow_stack.wait_for_dag(DAG_ID)
    with _store(airflow_stack) as store:
        began = time.monotonic()
        store.record(make_event(source="webhook:it", protocol="webhook", event_id="peak-1"))
        store.record(make_event(source="webhook:other", protocol="webhook", event_id="not-ours"))
    [first] = _reactions(airflow_stack, 1)
    print(f"\nstored -> run succeeded in {time.monotonic() - began:.1f} s")
    assert [e["event_id"] for e in first] == ["peak-1"]

    restart = airflow_stack.restart_component("triggerer", while_down=lambda: _store_while_down(airflow_stack))
    print(f"triggerer restart: {restart}")
    runs = _reactions(airflow_stack, 2)
    assert [[e["event_id"] for e in run] for run in runs] == [["peak-1"], ["peak-2"]]
    assert runs[1][0]["status"] == EventStatus.ACTIVE.value
    assert len(_runs(airflow_stack)) == 2  # nothing fired twice


def _store_while_down(stack: AirflowStack) -> None:
    with _store(stack) as store:
        store.record(make_event(source="webhook:it", protocol="webhook", event_id="peak-2", status=EventStatus.ACTIVE))
