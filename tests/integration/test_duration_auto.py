"""duration="auto" on a real Airflow 3.3: a task's successful runs record their run time, and a later run of
the same task plans with the estimate from them.

The DAG file is written by the test twice: first with an explicit duration (three quick runs of 2, 3 and
4 s seed the history), then with ``duration="auto"`` (the next run plans 3 s, the median, with a 1 s
margin, the slowest run over it). The task is ``critical`` so no run waits for a window: the wait and the
planner are covered elsewhere; here what matters is the record at success and the estimate on the worker.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from airflow_provider_gridaware.hooks.store import GridStoreHook
from tests.integration.airflow_stack import AirflowStack, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DAG_FILE = """
from datetime import timedelta
import time

from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, catchup=False, description="{description}", params={{"seconds": 1.0}})
def duration_auto():
    @task.gridaware(
        duration={duration},
        deadline=timedelta(hours=2),
        conn_id="gridaware_ukci_default",
        zones=["GB"],
        priority_class="critical",
    )
    def work(params=None, grid_decision=None):
        time.sleep(float(params["seconds"]))
        chunk = grid_decision["plan"]["chunks"][0]
        return {{"reason": grid_decision["reason"], "start": chunk["start"], "end": chunk["end"]}}

    work()


duration_auto()
"""


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_run_with_duration_auto_plans_with_the_recorded_runs(airflow_stack: AirflowStack) -> None:
    dag_id = f"gridaware_duration_auto_{uuid.uuid4().hex[:6]}"
    path = airflow_stack.dags_folder / f"{dag_id}.py"
    path.write_text(DAG_FILE.format(dag_id=dag_id, description="explicit", duration="timedelta(minutes=5)"))

    seeds = [airflow_stack.trigger_dag(dag_id, {"seconds": s}) for s in (2.0, 3.0, 4.0)]
    for run_id in seeds:
        state = airflow_stack.wait_for_run(dag_id, run_id, timeout=120)
        assert state == "success", airflow_stack.task_log(dag_id, run_id, "work")
    recorded = GridStoreHook().get_runtime_history().recent(dag_id, "work", limit=10)
    assert sorted(round(r.run_seconds) for r in recorded) == [2, 3, 4], recorded  # the callable's own run time
    assert {r.run_id for r in recorded} == set(seeds) and {r.kind for r in recorded} == {"python"}

    # The same task, now with duration="auto": wait until the dag-processor has the new file.
    path.write_text(DAG_FILE.format(dag_id=dag_id, description="auto", duration='"auto"'))
    poll(
        lambda: airflow_stack.api("GET", f"/api/v2/dags/{dag_id}").get("description") == "auto" or None,
        timeout=90,
        interval=1.0,
        what=f"{dag_id} re-parsed with duration='auto'",
    )
    run_id = airflow_stack.trigger_dag(dag_id, {"seconds": 1.0})
    state = airflow_stack.wait_for_run(dag_id, run_id, timeout=120)
    log = airflow_stack.task_log(dag_id, run_id, "work")
    assert state == "success", log
    assert 'duration="auto": duration 3 s estimated from 3 runs (median; p90 4 s, margin 1 s)' in log, log
    result = airflow_stack.xcom(dag_id, run_id, "work")
    assert "estimated from 3 runs" in result["reason"], result
    planned = (_utc(result["end"]) - _utc(result["start"])).total_seconds()
    assert planned == pytest.approx(3.0, abs=0.3), result  # the median of 2, 3 and 4 s
    assert len(GridStoreHook().get_runtime_history().recent(dag_id, "work", limit=10)) == 4  # and it recorded too
