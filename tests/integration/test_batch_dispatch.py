"""The AWS Batch example end to end on a real Airflow 3.3, against moto's Batch in two regions.

One ``moto_server`` runs as a process (``python -m tests.support.moto_server``, Docker-free Batch: a job
succeeds at submission) with the example's queue ``gpu-training`` and job definition ``train-model`` in
eu-west-1 (zone IE, home) and eu-north-1 (zone SE). The example's ``aws_default`` connection points at it.
The carbon signal is a replay connection with a perfect forecast: IE at 400 gCO2/kWh, SE at 40, so SE wins
despite its egress penalty; the run's ``not_before`` param puts the earliest start a minute or so ahead,
so the task first waits in the triggerer for its window.

The test checks that the task waited for the window (GridWindowTrigger), then for the job
(GridAwareBatchJobTrigger); that exactly one job was submitted, in the SE queue only, with the grid-aware
tags; and that the task's XCom is the ledger record (zone, region, queue, AWS job id, decision).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_gridaware.ledger.records import TryKey
from tests.integration.airflow_stack import (
    MARKER_VAR,
    REPO,
    AirflowStack,
    BackgroundPoll,
    ManagedProcess,
    StackError,
    WatchedRun,
    free_port,
    marked_pids,
    poll,
    stop_processes,
)
from tests.integration.ledger_checks import check_figures, run_records
from tests.support.moto_server import MotoServer
from tests.support.traces import write_flat_trace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

UTC = timezone.utc
DAG_ID, TASK_ID = "example_batch_dispatch", "train_model"
#: zone -> region, as in the example DAG's queues (IE is home; SE carries the egress penalty).
REGIONS = {"IE": "eu-west-1", "SE": "eu-north-1"}
JOB_QUEUE, JOB_DEFINITION = "gpu-training", "train-model"
AWS_CONN = "aws_default"
CARBON_CONN = "gridaware_replay_batch_example"
WINDOW_TRIGGER = "airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger"
JOB_TRIGGER = "airflow_provider_gridaware.triggers.batch.GridAwareBatchJobTrigger"
#: From writing the trace to the earliest start: time to trigger, schedule, check the queues and defer.
LEAD = timedelta(seconds=70)


@contextlib.contextmanager
def moto_server(integration_workdir: Path) -> Iterator[MotoServer]:
    """A moto_server process the Airflow components reach over loopback, Batch set up in both regions."""
    marker = uuid.uuid4().hex
    workdir = integration_workdir / "batch"
    workdir.mkdir(parents=True, exist_ok=True)
    server = MotoServer(port=free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    env.pop("MOTO_SIMPLE_BATCH_FAIL_AFTER", None)  # would fail (and stall) every submission
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PYTHONUNBUFFERED": "1",
            MARKER_VAR: marker,
        }
    )
    argv = [sys.executable, "-m", "tests.support.moto_server", "-H", "127.0.0.1", "-p", str(server.port)]
    proc = ManagedProcess.start("moto", argv, env=env, cwd=REPO, log_path=workdir / "moto.log")
    try:

        def configured() -> bool | None:
            if not proc.running:
                raise StackError(f"moto_server exited\n{proc.describe()}")
            with contextlib.suppress(OSError):
                server.config({"batch": {"use_docker": False}})
                return True
            return None

        poll(configured, timeout=30, interval=0.2, what="moto_server", on_timeout=proc.describe)
        for region in REGIONS.values():
            server.setup_batch(region, queue=JOB_QUEUE, job_definition=JOB_DEFINITION)
        yield server
    finally:
        stop_processes([proc], marker=marker)
        if marked_pids(marker):
            raise StackError(f"moto_server processes survived teardown: {marked_pids(marker)}")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class BatchRun(WatchedRun):
    """The example's run and its wait under way (``waiting_jobs``: the jobs per zone's region)."""

    moto: MotoServer
    not_before: datetime


@contextlib.contextmanager
def batch_run_started(stack: AirflowStack, integration_workdir: Path) -> Iterator[BatchRun]:
    """Start moto, add the connections, trigger the example with its window ``LEAD`` ahead, start watching.

    Used by the ``batch_run`` fixture (``tests/integration/conftest.py``) as the session starts, so this
    wait overlaps the others'; the test collects it.
    """
    with moto_server(integration_workdir) as moto:
        extra = {"endpoint_url": moto.url, "region_name": REGIONS["IE"]}
        stack.add_connection(AWS_CONN, "aws", login="testing", password="testing", extra=extra)
        trace = write_flat_trace(integration_workdir / "batch" / "carbon.csv", {"IE": 400, "SE": 40})
        replay = {"anchor": "fixed", "forecast_error": 0}
        stack.add_connection(CARBON_CONN, "gridaware_replay", host=str(trace), extra=replay)
        not_before = (stack.now() + LEAD).replace(microsecond=0)  # on the stack's clock, as the planner reads it
        conf = {"carbon_conn_id": CARBON_CONN, "not_before": not_before.isoformat()}
        run_id = stack.trigger_dag(DAG_ID, conf=conf, timeout=90)
        seen: list[tuple[datetime, str, str | None]] = []
        waiting_jobs: dict[str, list[dict[str, Any]]] = {}

        def explain() -> str:
            states = " -> ".join(f"{at:%H:%M:%S} {state} {trigger or ''}" for at, state, trigger in seen[-20:])
            logs = ""
            with contextlib.suppress(StackError):
                logs = stack.task_log(DAG_ID, run_id, TASK_ID)[-5000:]
            moto_log = (integration_workdir / "batch" / "moto.log").read_text()[-2000:]
            return (
                f"not before {not_before}\nstates: {states}\n{logs}\n----- moto -----\n{moto_log}\n"
                f"{stack.diagnostics(20)}"
            )

        def check() -> str | None:
            ti = next(t for t in stack.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
            trigger = (ti.get("trigger") or {}).get("classpath")
            seen.append((stack.now(), ti["state"], trigger))
            if ti["state"] == "deferred" and trigger == WINDOW_TRIGGER and not waiting_jobs:
                waiting_jobs.update({zone: moto.jobs(region) for zone, region in REGIONS.items()})
            if ti["state"] in ("up_for_retry", "failed"):
                return f"task {ti['state']}"  # fail fast: the example retries after minutes
            state = stack.dag_run(DAG_ID, run_id)["state"]
            return state if state in ("success", "failed") else None

        # Every 2 s: each check costs the api-server ~25 ms of CPU, the deferral is seen ~50 s before the window.
        finished = BackgroundPoll(check, timeout=420, interval=2.0, what="the Batch run", on_timeout=explain)
        try:
            yield BatchRun(stack, run_id, seen, waiting_jobs, finished, explain, moto=moto, not_before=not_before)
        finally:
            finished.stop()


@pytest.mark.awaits_window
def test_example_runs_on_aws_batch_in_the_cleaner_region(batch_run: BatchRun) -> None:
    stack, moto, run_id, not_before = batch_run.stack, batch_run.moto, batch_run.run_id, batch_run.not_before
    seen, waiting_jobs, explain = batch_run.seen, batch_run.waiting_jobs, batch_run.explain
    state = batch_run.finished.result()
    why = f"\n{explain()}"
    assert state == "success", why

    # It waited for the window in the triggerer, with nothing submitted anywhere meanwhile.
    waited = [at for at, s, trigger in seen if s == "deferred" and trigger == WINDOW_TRIGGER]
    assert waited and waited[0] < not_before, f"never seen waiting for the window before it opened{why}"
    assert waiting_jobs == {"IE": [], "SE": []}, why

    # Exactly one job, in the SE queue only, tagged as a grid-aware job of this run.
    assert moto.jobs(REGIONS["IE"]) == [], why
    (job,) = moto.jobs(REGIONS["SE"])
    why = f"\njob: {json.dumps(job, indent=1, default=str)}{why}"
    logical = f"{DAG_ID}/{run_id}/{TASK_ID}"
    assert job["status"] == "SUCCEEDED" and job["jobQueue"].endswith(f":job-queue/{JOB_QUEUE}"), why
    tags = job["tags"]
    assert tags["gridaware.io/managed"] == "true" and tags["gridaware.io/priority-class"] == "batch", why
    assert tags["gridaware.io/zone"] == "SE" and tags["gridaware.io/job-id"] == logical, why
    assert tags["gridaware.io/attempt"] == "1" and tags["gridaware.io/run-id"] == run_id, why

    # The task's XCom is the ledger record.
    result = stack.xcom(DAG_ID, run_id, TASK_ID)
    why = f"\nresult: {json.dumps(result, indent=1)}{why}"
    assert result["job_id"] == logical and result["status"] == "complete", why
    assert (result["zone"], result["region_name"], result["job_queue"]) == ("SE", REGIONS["SE"], JOB_QUEUE), why
    assert result["aws_job_id"] == job["jobId"] and result["aws_job_ids"] == [job["jobId"]], why
    decision = result["decision"]
    assert decision["plan"]["zone"] == "SE" and decision["status"] == "released", why
    assert _utc(decision["plan"]["chunks"][0]["start"]) >= not_before, f"planned before not_before{why}"
    assert result["counterfactual"]["zone"] == "IE" and decision["counterfactual"] == result["counterfactual"], why

    # The carbon ledger holds exactly this run's try, over the AWS job's own times, in the queue it ran in.
    ti = next(t for t in stack.task_instances(DAG_ID, run_id) if t["task_id"] == TASK_ID)
    (record,) = run_records(DAG_ID, run_id)
    why = f"\nledger: {record}{why}"
    assert record.key == TryKey(DAG_ID, run_id, TASK_ID, -1, ti["try_number"]), why
    assert (record.operator, record.state, record.priority_class) == ("batch", "success", "batch"), why
    assert (record.actual.zone, record.placement) == ("SE", f"{REGIONS['SE']}/{JOB_QUEUE}"), why
    assert _utc(decision["plan"]["chunks"][0]["start"]) == record.planned_start, why
    assert record.counterfactual is not None and record.counterfactual.zone == "IE", why
    assert record.counterfactual.start == _utc(decision["waiting_since"]), why
    hours = (record.actual.end - record.actual.start).total_seconds() / 3600
    check_figures(record, energy_kwh=4 * 0.3 * 1.1 * hours)  # 4 x A10G at 300 W, PUE 1.1

    # Then it waited for the job in the triggerer: the worker deferred twice, the second time after submitting.
    triggers = [t for _, s, t in seen if s == "deferred" and t]
    order = [t for i, t in enumerate(triggers) if i == 0 or triggers[i - 1] != t]
    log = stack.task_log(DAG_ID, run_id, TASK_ID)
    why = f"\ntriggers seen: {order}\n----- task log -----\n{log[-6000:]}{why}"
    fired = f"'job_ids': ['{job['jobId']}']" in log and "Trigger fired event" in log
    # The job succeeds at submission in moto, so its trigger fires within a second or two: if the polling
    # missed that deferral, the trigger's own record in the task log (its fired event) must show it.
    assert order in ([WINDOW_TRIGGER, JOB_TRIGGER], [WINDOW_TRIGGER]), why
    assert order == [WINDOW_TRIGGER, JOB_TRIGGER] or fired, f"never seen waiting for the job{why}"
    assert log.count("Pausing task as DEFERRED") == 2, why
    submitted = log.index(f"submitted AWS Batch job {job['jobId']}")
    assert log.index("grid window open in zone SE") < submitted < log.rindex("Pausing task as DEFERRED"), why
    assert f"AWS Batch job {job['jobId']} succeeded" in log, why
    print(f"\n{DAG_ID}/{run_id}: not before {not_before:%H:%M:%S}, deferred on {order}, trigger record in log: {fired}")
    print(f"waited for the window {waited[0]:%H:%M:%S}-{waited[-1]:%H:%M:%S}; ran {job['jobId']} in SE")
