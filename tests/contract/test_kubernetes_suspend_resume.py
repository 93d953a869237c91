"""Suspend / resume by label across two emulated clusters: exactly the matching Jobs change, idempotently."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_gridaware.dispatch import (
    LABEL_DAG_ID,
    LABEL_MANAGED,
    LABEL_PRIORITY_CLASS,
    LABEL_ZONE,
)
from airflow_provider_gridaware.hooks.kubernetes import (
    ANNOTATION_SUSPENDED_BY,
    GridKubernetesHook,
    KubernetesDispatchError,
    earlier_chunks,
)
from airflow_provider_gridaware.operators.kubernetes import (
    KubernetesResumeJobsOperator,
    KubernetesSuspendJobsOperator,
)
from tests.support.kube_emulator import EmulatorThread, kube_config

MERGE_PATCH = "application/merge-patch+json"
CONNS = ["kube_a", "kube_b"]


def job(
    name: str, *, namespace: str = "ml", priority: str, dag: str, zone: str, managed: bool = True, **spec: Any
) -> dict[str, Any]:
    labels = {LABEL_PRIORITY_CLASS: priority, LABEL_DAG_ID: dag, LABEL_ZONE: zone, "team": "ml"}
    if managed:
        labels[LABEL_MANAGED] = "true"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "suspend": spec.get("suspend", False),
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
        },
    }


def finish(emu: EmulatorThread, namespace: str, name: str, kind: str) -> None:
    emu.write_status(namespace, name, {"conditions": [{"type": kind, "status": "True"}]})


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, EmulatorThread]]:
    """kube_a (zone A): a, b, c (complete), waiting (never released), unmanaged; kube_b (zone B): e, failed."""
    with EmulatorThread() as a, EmulatorThread() as b:
        for conn_id, emu in zip(CONNS, (a, b), strict=True):
            spec = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(emu.url)}}
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))
        hook_a, hook_b = GridKubernetesHook("kube_a"), GridKubernetesHook("kube_b")
        hook_a.create_job_from_dict(job("a", priority="flexible", dag="d1", zone="A"))
        hook_a.create_job_from_dict(job("b", priority="batch", dag="d1", zone="A"))
        hook_a.create_job_from_dict(job("c", priority="flexible", dag="d2", zone="A"))
        hook_a.create_job_from_dict(job("waiting", priority="flexible", dag="d2", zone="A", suspend=True))
        hook_a.create_job_from_dict(job("unmanaged", priority="flexible", dag="d1", zone="A", managed=False))
        hook_b.create_job_from_dict(job("e", priority="flexible", dag="d1", zone="B", namespace="other"))
        hook_b.create_job_from_dict(job("failed", priority="flexible", dag="d1", zone="B"))
        finish(a, "ml", "c", "Complete")
        finish(b, "ml", "failed", "Failed")
        yield {"kube_a": a, "kube_b": b}


def by_name(changes: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["cluster"], c["action"]) for c in changes}


def suspended(emu: EmulatorThread) -> set[str]:
    return {name for (_, name), j in emu.jobs().items() if j["spec"].get("suspend")}


def patch_bodies(emu: EmulatorThread) -> list[tuple[str, Any, str]]:
    return [
        (r.url.path.rsplit("/", 1)[-1], r.data, r.headers.get("Content-Type"))
        for r in emu.requests()
        if str(r.method).endswith("PATCH")
    ]


def test_suspend_by_priority_class_changes_exactly_the_matching_jobs(clusters):
    op = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=CONNS, priority_class="flexible", reason="DR event 42")
    changes = op.execute({})
    assert by_name(changes) == {
        "a": ("kube_a", "suspended"),
        "c": ("kube_a", "unchanged"),
        "waiting": ("kube_a", "unchanged"),
        "e": ("kube_b", "suspended"),
        "failed": ("kube_b", "unchanged"),
    }  # b is batch; "unmanaged" lacks gridaware.io/managed: neither is even listed
    reasons = {c["name"]: c["reason"] for c in changes}
    assert reasons["a"] == "DR event 42" and reasons["waiting"] == "already suspended"
    assert reasons["c"].startswith("finished (complete)") and reasons["failed"].startswith("finished (failed)")
    assert suspended(clusters["kube_a"]) == {"a", "waiting"} and suspended(clusters["kube_b"]) == {"e"}
    body = {"metadata": {"annotations": {ANNOTATION_SUSPENDED_BY: "DR event 42"}}, "spec": {"suspend": True}}
    assert patch_bodies(clusters["kube_a"]) == [("a", body, MERGE_PATCH)]
    assert patch_bodies(clusters["kube_b"]) == [("e", body, MERGE_PATCH)]
    # The selection went to the API server too, scoped to our Jobs.
    lists = [r for r in clusters["kube_a"].requests() if r.params.get("labelSelector")]
    assert lists[-1].params["labelSelector"] == f"{LABEL_MANAGED}=true,{LABEL_PRIORITY_CLASS}=flexible"


def test_suspend_is_idempotent(clusters):
    op = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=CONNS, priority_class="flexible")
    op.execute({})
    before = {k: len(patch_bodies(e)) for k, e in clusters.items()}
    again = op.execute({})
    assert {c["name"]: c["action"] for c in again if c["name"] in ("a", "e")} == {"a": "unchanged", "e": "unchanged"}
    assert all(c["reason"] == "already suspended" for c in again if c["name"] in ("a", "e"))
    assert {k: len(patch_bodies(e)) for k, e in clusters.items()} == before


def test_resume_touches_only_jobs_a_grid_event_suspended(clusters):
    KubernetesSuspendJobsOperator(task_id="pause", conn_ids=CONNS, priority_class="flexible").execute({})
    changes = KubernetesResumeJobsOperator(
        task_id="resume", conn_ids=CONNS, priority_class="flexible", reason="DR event over"
    ).execute({})
    actions = by_name(changes)
    assert actions["a"] == ("kube_a", "resumed") and actions["e"] == ("kube_b", "resumed")
    assert actions["waiting"] == ("kube_a", "unchanged")  # still waiting for its grid window
    assert suspended(clusters["kube_a"]) == {"waiting"} and suspended(clusters["kube_b"]) == set()
    body = {"metadata": {"annotations": {ANNOTATION_SUSPENDED_BY: None}}, "spec": {"suspend": False}}
    assert patch_bodies(clusters["kube_a"])[-1] == ("a", body, MERGE_PATCH)
    assert ANNOTATION_SUSPENDED_BY not in (clusters["kube_a"].jobs()[("ml", "a")]["metadata"].get("annotations") or {})
    again = KubernetesResumeJobsOperator(task_id="resume", conn_ids=CONNS, priority_class="flexible").execute({})
    assert by_name(again)["a"] == ("kube_a", "unchanged")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"target_dag_id": "d1"}, {"a", "b", "e"}),
        ({"zone": "B"}, {"e"}),
        ({"namespace": "other"}, {"e"}),
        ({"selector": {"team": "ml"}, "priority_class": "batch"}, {"b"}),
        ({"selector": "team=ml,gridaware.io/dag-id!=d1"}, set()),  # c is finished, waiting already suspended
    ],
)
def test_selection_by_dag_zone_namespace_and_extra_selector(clusters, kwargs, expected):
    changes = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=CONNS, **kwargs).execute({})
    assert {c["name"] for c in changes if c["action"] == "suspended"} == expected


def test_client_side_filter_holds_when_the_server_ignores_selectors(clusters):
    # Plain kmock (and some proxies) ignore labelSelector: the hook must filter again itself.
    for emu in clusters.values():
        emu.call(lambda e: setattr(e, "honour_selectors", False))
    changes = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=CONNS, priority_class="batch").execute({})
    assert by_name(changes) == {"b": ("kube_a", "suspended")}
    assert suspended(clusters["kube_a"]) == {"b", "waiting"}


def test_an_unreachable_cluster_fails_the_task_after_the_others_are_handled(clusters, monkeypatch):
    from tests.integration.airflow_stack import free_port

    dead = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(f"http://127.0.0.1:{free_port()}")}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_DEAD", json.dumps(dead))
    op = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=["kube_dead", "kube_a"], priority_class="flexible")
    with pytest.raises(KubernetesDispatchError, match=r"1 cluster.*'kube_dead'.*unreachable"):
        op.execute({})
    assert suspended(clusters["kube_a"]) == {"a", "waiting"}  # kube_a was still paused


WORKLOAD = """
import json, sys, time
from pathlib import Path
from airflow_provider_gridaware.workload import Checkpointing

ckpt = Checkpointing.from_env()
state = ckpt.load() or {"step": 0, "resumed_at": []}
state["resumed_at"].append(state["step"])
while state["step"] < 30:
    time.sleep(0.05)
    state["step"] += 1
    ckpt.save(state)
    if ckpt.stop_requested:
        ckpt.exit_for_pause()
Path(sys.argv[1]).write_text(json.dumps(state))
"""


def test_suspend_sends_sigterm_the_workload_checkpoints_and_resume_continues(monkeypatch, tmp_path):
    """With the Job runner: suspend stops the process through the checkpoint contract, resume picks up."""
    import sys
    import time

    from airflow_provider_gridaware.dispatch import CheckpointContract

    def wait_for(check, what: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while (result := check()) is None or result is False:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return result

    script, done = tmp_path / "work.py", tmp_path / "done.json"
    script.write_text(WORKLOAD)
    contract = CheckpointContract(path=str(tmp_path / "ckpt"), grace_period_seconds=10)
    env = contract.env(job_id="d/r/t", attempt=1, zone="A")
    with EmulatorThread(run_jobs=True, workdir=tmp_path) as emu:
        spec = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(emu.url)}}
        monkeypatch.setenv("AIRFLOW_CONN_KUBE_RUN", json.dumps(spec))
        body = job("work", priority="flexible", dag="d", zone="A")
        body["spec"]["template"]["spec"]["containers"][0].update(
            command=[sys.executable, str(script), str(done)], env=[{"name": k, "value": v} for k, v in env.items()]
        )
        GridKubernetesHook("kube_run").create_job_from_dict(body)
        checkpoint = tmp_path / "ckpt" / "gridaware-checkpoint.json"
        wait_for(lambda: checkpoint.exists() and json.loads(checkpoint.read_text())["step"] >= 3, "a few steps")

        pause = KubernetesSuspendJobsOperator(task_id="pause", conn_ids=["kube_run"], priority_class="flexible")
        assert by_name(pause.execute({})) == {"work": ("kube_run", "suspended")}

        def suspended_status() -> dict[str, Any] | None:
            status = emu.jobs()[("ml", "work")].get("status") or {}
            kinds = {c["type"] for c in status.get("conditions") or []}
            return status if "Suspended" in kinds else None

        status = wait_for(suspended_status, "the Job runner to report the Job suspended")
        assert status["active"] == 0 and not done.exists()
        # The chunk before the suspension is kept: Kubernetes resets startTime when the Job resumes.
        first_chunk, chunks = earlier_chunks(emu.jobs()[("ml", "work")])
        assert first_chunk > 0 and chunks == 1
        paused_at = json.loads(checkpoint.read_text())["step"]
        assert 0 < paused_at < 30

        resume = KubernetesResumeJobsOperator(task_id="resume", conn_ids=["kube_run"], priority_class="flexible")
        assert by_name(resume.execute({})) == {"work": ("kube_run", "resumed")}

        def completed() -> dict[str, Any] | None:
            status = emu.jobs()[("ml", "work")].get("status") or {}
            return status if any(c["type"] == "Complete" for c in status.get("conditions") or []) else None

        status = wait_for(completed, "the resumed Job to complete")
        assert status["succeeded"] == 1 and status["completionTime"]
        result = json.loads(done.read_text())
        assert result["step"] == 30 and result["resumed_at"] == [0, paused_at]  # continued from the checkpoint
        assert earlier_chunks(emu.jobs()[("ml", "work")]) == (first_chunk, 1)  # the last chunk is startTime..end


def test_a_pass_with_more_threads_than_the_pool_keeps_a_connection_per_call(monkeypatch, caplog):
    import logging
    import os
    from concurrent.futures import ThreadPoolExecutor

    from airflow_provider_gridaware.operators.grid_event_response import KubernetesJobsActuator
    from airflow_provider_gridaware.planning.response_policy import DEFAULT_POLICY

    calls = (os.cpu_count() or 1) * 5 + 4  # more than the client's default pool on any machine
    with EmulatorThread() as emu:
        spec = {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(emu.url)}}
        monkeypatch.setenv("AIRFLOW_CONN_KUBE_POOL", json.dumps(spec))
        names = [f"j{i}" for i in range(calls * 2)]
        setup = GridKubernetesHook(conn_id="kube_pool")
        for name in names:
            setup.create_job_from_dict(job(name, priority="batch", dag="d", zone="A"))
        default = setup.api_client.rest_client
        setup.allow_concurrent_calls(1)  # already enough: the client is left as it is
        assert setup.api_client.rest_client is default

        hook = KubernetesJobsActuator("kube_pool", DEFAULT_POLICY, parallelism=calls).hook
        pool = hook.api_client.rest_client.pool_manager
        assert pool.connection_pool_kw["maxsize"] == calls
        # Built from the client's own configuration: the provider's keepalive socket options are kept.
        assert pool.connection_pool_kw.get("socket_options") == default.pool_manager.connection_pool_kw.get(
            "socket_options"
        )
        with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"), ThreadPoolExecutor(calls) as threads:
            list(threads.map(lambda n: hook.patch_job("ml", n, {"metadata": {"labels": {"seen": "y"}}}), names))
        assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
        assert all(j["metadata"]["labels"]["seen"] == "y" for j in emu.jobs().values())
