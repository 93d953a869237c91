"""Kubernetes Jobs of every class in emulated clusters, and the grid-event response's view of them, for tests.

Each Job's container command is a local process the emulator's Job runner starts (``--run-jobs``), SIGTERMs
on suspend and restarts on resume: :data:`WORKLOAD` records ``start``, ``checkpoint`` (on SIGTERM) and
``done`` (once the finish flag exists) in its log, so a test can tell a checkpointed Job from a killed one.
Used by tests/integration/test_grid_event_response.py and test_grid_event_scenario.py.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.dispatch import job_labels
from tests.integration.airflow_stack import ADMIN_USER, AirflowStack, ManagedProcess, StackError, marked_pids, poll
from tests.integration.airflow_stack import stop_processes as stop
from tests.integration.test_kubernetes_dispatch import jobs as list_jobs
from tests.integration.test_kubernetes_dispatch import start_emulator
from tests.support.http import LOOPBACK
from tests.support.kube_emulator import kube_config

CLASSES = ("critical", "flexible", "batch")
#: the workload: runs until the finish flag exists; SIGTERM = checkpoint now (records it and exits).
WORKLOAD = """
import os, pathlib, signal, sys, time
log = pathlib.Path(os.environ["LOG"])
def checkpoint(*_):
    with log.open("a") as f: f.write("checkpoint\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint)
with log.open("a") as f: f.write("start\\n")
while not pathlib.Path(os.environ["FINISH"]).exists():
    time.sleep(0.1)
with log.open("a") as f: f.write("done\\n")
"""


def job_body(name: str, cls: str, zone: str, workdir: Path) -> dict[str, Any]:
    labels = job_labels(priority_class=cls, zone=zone, dag_id="training", task_id=name, run_id="manual")
    env = [{"name": "LOG", "value": str(workdir / f"{name}.log")}, {"name": "FINISH", "value": str(workdir / "finish")}]
    container = {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", WORKLOAD], "env": env}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": labels},
        "spec": {
            "suspend": False,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"restartPolicy": "Never", "containers": [container], "terminationGracePeriodSeconds": 5},
            },
        },
    }


@contextlib.contextmanager
def clusters(
    stack: AirflowStack, workdir: Path, conn_ids: Mapping[str, str], api_conn_id: str
) -> Iterator[dict[str, str]]:
    """An emulator per zone (``{zone: kubernetes conn id}``), its connection added, and the api-server's
    connection ``api_conn_id``; yields ``{zone: emulator URL}``, stops the emulators after."""
    marker = uuid.uuid4().hex
    procs: list[ManagedProcess] = []
    try:
        urls = {}
        for zone, conn_id in conn_ids.items():
            proc, urls[zone] = start_emulator(workdir / zone, f"kube-respond-{zone}", marker)
            procs.append(proc)
            stack.add_connection(conn_id, "kubernetes", extra={"kube_config": kube_config(urls[zone], namespace="ml")})
        stack.add_connection(api_conn_id, "http", host=stack.api_url, login=ADMIN_USER, password=stack.password)
        yield urls
    finally:
        stop(procs, marker=marker)
        if marked_pids(marker):
            raise StackError(f"Kubernetes emulator processes survived teardown: {marked_pids(marker)}")


def start_jobs(urls: dict[str, str], workdir: Path, *, prefix: str) -> dict[str, str]:
    """One running Job per class in each cluster; ``{name: class}``."""
    names = {}
    for zone, url in urls.items():
        for cls in CLASSES:
            name = f"{prefix}{cls}-{zone.lower()}"
            names[name] = cls
            body = job_body(name, cls, zone, workdir)
            LOOPBACK.post(f"{url}/apis/batch/v1/namespaces/ml/jobs", json=body, timeout=10).raise_for_status()
    wait_states(urls, dict.fromkeys(names, "running"), "six Jobs running")
    return names


def job_states(urls: dict[str, str]) -> dict[str, str]:
    """``{job name: running | suspended | complete | failed}`` over both clusters (running = started)."""
    states = {}
    for url in urls.values():
        for job in list_jobs(url):
            status = job.get("status") or {}
            conditions = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
            if "Complete" in conditions:
                state = "complete"
            elif "Failed" in conditions:
                state = "failed"
            elif job["spec"].get("suspend"):
                state = "suspended"
            else:
                state = "running" if status.get("startTime") and status.get("active") else "starting"
            states[job["metadata"]["name"]] = state
    return states


def wait_states(urls: dict[str, str], want: dict[str, str], what: str, timeout: float = 120) -> None:
    def check() -> bool | None:
        states = job_states(urls)
        return True if all(states.get(n) == s for n, s in want.items()) else None

    poll(check, timeout=timeout, interval=0.2, what=what, on_timeout=lambda: str(job_states(urls)))


def job_logs(workdir: Path, names: Iterable[str]) -> dict[str, list[str]]:
    return {name: (workdir / f"{name}.log").read_text().split() for name in names}


def wait_logs(workdir: Path, want: dict[str, list[str]], timeout: float = 60) -> None:
    """Each Job's workload log as wanted: the emulator marks a Job suspended when it signals the process,
    which writes its checkpoint line a moment later (seconds on a loaded machine)."""
    poll(
        lambda: True if job_logs(workdir, want) == want else None,
        timeout=timeout,
        interval=0.2,
        what="every Job's workload log",
        on_timeout=lambda: f"{job_logs(workdir, want)} != {want}",
    )


def dag_paused(stack: AirflowStack, dag_id: str) -> bool:
    return bool(stack.api("GET", f"/api/v2/dags/{dag_id}")["is_paused"])


def wait_paused(stack: AirflowStack, dag_id: str, paused: bool, timeout: float = 120) -> None:
    poll(
        lambda: True if dag_paused(stack, dag_id) == paused else None,
        timeout=timeout,
        interval=0.3,
        what=f"{dag_id} {'paused' if paused else 'unpaused'}",
        on_timeout=lambda: stack.diagnostics(),
    )


def task_state(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> str | None:
    for ti in stack.task_instances(dag_id, run_id):
        if ti["task_id"] == task_id:
            return ti.get("state")
    return None
