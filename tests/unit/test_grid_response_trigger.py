"""GridResponseEndTrigger: ends the response task in the triggerer once nothing is held, else wakes it at the end."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from airflow_provider_gridaware.planning.grid_response import InFlightWork, PauseStep, TargetKind, WorkState
from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import ResponseAction
from airflow_provider_gridaware.store.responses import ResponseStore
from airflow_provider_gridaware.times import UTC
from airflow_provider_gridaware.triggers.grid_response import GridResponseEndTrigger
from tests.support.grid_events import make_event


def first_event(trigger: GridResponseEndTrigger) -> TriggerEvent:
    async def run() -> TriggerEvent:
        async for event in trigger.run():
            return event
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(run(), timeout=20))


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    return url


def test_nothing_held_ends_the_task_in_the_triggerer(store_url: str) -> None:
    event = first_event(GridResponseEndTrigger(datetime.now(UTC) + timedelta(hours=1), poll_interval=0.05))
    assert isinstance(event, TaskSuccessEvent)


def test_work_still_held_wakes_the_task_at_the_end_and_the_state_survives_serialisation(store_url: str) -> None:
    work = InFlightWork(
        "kubernetes_job/c/ml/j", TargetKind.KUBERNETES_JOB, PriorityClass.BATCH, "GB", WorkState.RUNNING, 1.0
    )
    with ResponseStore(store_url) as store:
        [hold_id] = store.claim_pauses([PauseStep(work, make_event(), ResponseAction.STOP, "SIMPLE level 2", 1, False)])
        assert hold_id is not None
        store.finish_pauses([(hold_id, "paused", None)])
    wake_at = datetime.now(UTC) + timedelta(seconds=0.3)
    classpath, kwargs = GridResponseEndTrigger(wake_at, poll_interval=0.05).serialize()
    assert classpath.endswith("GridResponseEndTrigger")
    event = first_event(GridResponseEndTrigger(**kwargs))
    assert not isinstance(event, TaskSuccessEvent) and event.payload["wake"] == "end time"


def test_the_example_dag_parses_serialises_and_refuses_a_bad_policy() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_provider_gridaware.operators.grid_event_response import GridEventResponseOperator
    from airflow_provider_gridaware.planning.response_policy import PolicyError

    repo = Path(__file__).resolve().parents[2]
    bag = DagBag(dag_folder=str(repo / "example_dags" / "example_grid_event_response.py"))
    assert bag.import_errors == {}
    DagSerialization.to_dict(bag.dags["example_grid_event_response"])  # what the dag-processor stores
    with pytest.raises(PolicyError, match=r"simple_min_level\.flexible"):
        GridEventResponseOperator(task_id="respond", policy={"simple_min_level": {"flexible": 7}})
