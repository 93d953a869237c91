"""moto_server on loopback, with AWS Batch set up in several regions, for the Batch dispatch tests.

Started as a subprocess (``python -m tests.support.moto_server``): a real HTTP peer, so the hooks run
their ordinary boto3 clients against it through an Airflow AWS connection with ``endpoint_url``.

There is no Docker engine here, so the server uses moto's simple Batch backend
(``{"batch": {"use_docker": false}}`` posted to ``/moto-api/config``), in which a job ends at
submission. Two gaps of that backend are closed in the subprocess, and only there (``_extend_moto``):

- a job can be told how to end through its environment (``MOTO_BATCH_OUTCOME``): ``succeed``
  (default), ``fail``, ``hold`` (stays RUNNING) or ``hold-first`` (stays RUNNING on
  ``GRIDAWARE_ATTEMPT=1``, succeeds on later attempts: a workload that finishes after a resume);
- terminating an active job fails it with the given reason, as AWS does (moto only records the reason).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.demo.processes import free_port

ENV_OUTCOME = "MOTO_BATCH_OUTCOME"
ROLE_NAME = "gridaware-batch"
JOB_DEFINITION = "gridaware-train"


@dataclass
class MotoServer:
    """A ``moto_server`` subprocess on ``127.0.0.1`` at a free port; use as a context manager."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        env.pop("MOTO_SIMPLE_BATCH_FAIL_AFTER", None)  # would fail (and stall) every submission
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode} before it was ready")
            try:
                self.config({"batch": {"use_docker": False}})
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server not ready on {self.url} after {timeout:.0f}s") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def config(self, config: dict[str, Any]) -> Any:
        return self._post("/moto-api/config", config)

    def reset(self) -> None:
        """Forget every resource (the Batch config survives)."""
        self._post("/moto-api/reset", {})

    def client(self, service: str, region: str) -> Any:
        import boto3

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def setup_batch(
        self, region: str, *, queue: str, state: str = "ENABLED", job_definition: str = JOB_DEFINITION
    ) -> dict[str, str]:
        """An unmanaged compute environment, a job queue and the job definition (``job_definition``) in ``region``."""
        iam = self.client("iam", region)
        try:
            role = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        batch = self.client("batch", region)
        env = batch.create_compute_environment(
            computeEnvironmentName=f"{queue}-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
        )
        created = batch.create_job_queue(
            jobQueueName=queue,
            state=state,
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
        )
        definition = batch.register_job_definition(
            jobDefinitionName=job_definition,
            type="container",
            containerProperties={
                "image": "busybox",
                "command": ["train"],
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
                "environment": [{"name": "FROM_DEFINITION", "value": "1"}],
            },
        )
        return {"queue_arn": created["jobQueueArn"], "definition_arn": definition["jobDefinitionArn"]}

    def jobs(self, region: str) -> list[dict[str, Any]]:
        """Every job in ``region`` (all queues, all states), described."""
        batch = self.client("batch", region)
        ids: list[str] = []
        for queue in batch.describe_job_queues()["jobQueues"]:
            # moto lists every state when no status is given (AWS would list RUNNING only).
            ids += [j["jobId"] for j in batch.list_jobs(jobQueue=queue["jobQueueName"])["jobSummaryList"]]
        return batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def aws_connection(url: str, region: str) -> str:
    """An Airflow AWS connection (``AIRFLOW_CONN_...`` JSON) pointing at moto, with dummy keys."""
    extra = {"endpoint_url": url, "region_name": region}
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


class StateStore(dict[str, Any]):
    """A dict-backed ``task_state_store`` (it outlives a task try, like Airflow's)."""

    def set(self, key: str, value: Any, **_: Any) -> None:
        self[key] = value


@dataclass
class FakeTaskInstance:
    dag_id: str = "train_dag"
    task_id: str = "train"
    run_id: str = "manual__2026-11-26T12:00:00+00:00"
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def fake_context(store: StateStore | None = None, *, run_start: Any = None) -> Any:
    """The parts of a task context the Batch operators read (a dict; typed ``Any`` to stand in for Context)."""
    from types import SimpleNamespace

    return {
        "ti": FakeTaskInstance(),
        "task_state_store": StateStore() if store is None else store,
        "dag_run": SimpleNamespace(start_date=run_start, run_after=run_start),
    }


def _extend_moto() -> None:
    """Close the simple backend's gaps (see the module docstring). Runs inside the server process only."""
    import datetime

    from moto.batch.models import Job
    from moto.batch_simple.models import BatchSimpleBackend

    finish = BatchSimpleBackend._mark_job_as_finished

    def mark(self: BatchSimpleBackend, include_start_attempt: bool, job: Job) -> None:
        env = {e["name"]: e["value"] for e in job.container_overrides.get("environment", [])}
        outcome = env.get(ENV_OUTCOME, "succeed")
        if outcome == "hold" or (outcome == "hold-first" and env.get("GRIDAWARE_ATTEMPT", "1") == "1"):
            self.backend._jobs[job.job_id] = job
            job.job_started_at = datetime.datetime.now()
            job.log_stream_name = job._stream_name
            job._start_attempt()
            job.status = "RUNNING"
            return
        if outcome == "fail":
            self.backend._jobs[job.job_id] = job
            job._start_attempt()
            job.exit_code = 1
            job.job_stopped_reason = "Essential container in task exited"  # what AWS says for a non-zero exit
            job._mark_stopped(success=False)
            return
        finish(self, include_start_attempt, job)

    terminate = Job.terminate

    def terminate_job(self: Job, reason: str) -> None:
        if self.job_stopped:
            return  # AWS leaves a finished job (and its status reason) alone
        terminate(self, reason)
        self.exit_code = 143
        self._mark_stopped(success=False)

    BatchSimpleBackend._mark_job_as_finished = mark  # type: ignore[method-assign]
    Job.terminate = terminate_job  # type: ignore[method-assign]


if __name__ == "__main__":
    from moto.server import main

    _extend_moto()
    main(sys.argv[1:])
