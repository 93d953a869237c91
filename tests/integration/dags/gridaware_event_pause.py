"""DAG for ``tests/integration/test_event_pause.py``: grid-aware work meets a called grid event.

Both tasks plan on zone ``EVT`` through ``gridaware_replay_evt`` (a flat replay trace with a perfect forecast,
which the test writes and adds as a connection), so where a task runs is decided by the event alone:

* ``wait_for_window`` may not start before 3 minutes after the run's start: it defers and waits;
* ``interruptible_work`` starts at once (flat signal: now is as good as later) and runs :data:`STEPS` steps,
  asking ``grid_checkpoint`` between steps; it writes its progress to the file named by the run's conf
  (``progress``) so the test can see it running, and returns what it did.

Keep the ids in step with the test module (which does not import this file).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import dag, task

CONN_ID = "gridaware_replay_evt"
ZONE = "EVT"
STEPS = 30
STEP_SECONDS = 0.5


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dag(
    dag_id="gridaware_event_pause",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "test"],
)
def gridaware_event_pause() -> None:
    @task.gridaware(
        duration=timedelta(minutes=1),
        deadline=timedelta(minutes=60),
        earliest_start=timedelta(minutes=3),
        conn_id=CONN_ID,
        zones=[ZONE],
        refresh_interval=timedelta(minutes=10),
        retries=1,
    )
    def wait_for_window(grid_decision: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"ran_at": _now(), "reason": (grid_decision or {}).get("reason")}

    @task.gridaware(
        duration=timedelta(minutes=1),
        deadline=timedelta(minutes=60),
        conn_id=CONN_ID,
        zones=[ZONE],
        interruptible=True,
        retries=1,
        power_w=1000,  # an estimated energy: the ledger counts the pieces it ran in, not the pause
    )
    def interruptible_work(grid_checkpoint: Any = None, dag_run: Any = None) -> dict[str, Any]:
        progress = Path(dag_run.conf["progress"])
        state = grid_checkpoint.state or {"done": [], "pauses": []}
        if grid_checkpoint.resumed:
            state["resumed_at"] = [*state.get("resumed_at", []), _now()]
        while len(state["done"]) < STEPS:
            time.sleep(STEP_SECONDS)  # one step of work
            state["done"].append(len(state["done"]))
            progress.write_text(json.dumps({"done": len(state["done"]), "at": _now()}))
            if grid_checkpoint.should_pause():
                state["pauses"].append({"at": _now(), "after_step": len(state["done"])})
                grid_checkpoint.save(state)
                grid_checkpoint.pause()
        return {**state, "ended_at": _now(), "pauses_seen": grid_checkpoint.pauses}

    wait_for_window()
    interruptible_work()


gridaware_event_pause()
