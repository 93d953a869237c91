"""GridAwareKubernetesJobOperator against two Kubernetes API emulators (two clusters) on loopback.

Zone NORTH (cluster ``kube_north``) is clean, zone SOUTH (``kube_south``, the home zone) is dirty, read
through a replay connection with a perfect forecast. The tests drive the operator's methods with a small
fake context (a dict-backed task state store), build the grid window event the trigger would send, and
play the Job controller by writing Job status to the emulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_GENERATION,
    ANNOTATION_JOB_ID,
    ANNOTATION_PLAN,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_GRACE_SECONDS,
    ENV_JOB_ID,
    ENV_ZONE,
    LABEL_DAG_ID,
    LABEL_MANAGED,
    LABEL_PRIORITY_CLASS,
    LABEL_ZONE,
)
from airflow_provider_gridaware.hooks.kubernetes import KUEUE_QUEUE_LABEL, KubernetesDispatchError
from airflow_provider_gridaware.operators.kubernetes import (
    STATE_KEY,
    GridAwareKubernetesJobOperator,
    KubernetesCluster,
)
from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger
from airflow_provider_gridaware.triggers.kubernetes import KubernetesJobCompletionTrigger
from tests.support.http import LOOPBACK
from tests.support.kube_emulator import JOBS, EmulatorThread, kube_config
from tests.support.traces import write_flat_trace

UTC = timezone.utc
NORTH, SOUTH = "NORTH", "SOUTH"
NS = "training"
DAG_ID, TASK_ID, RUN_ID = "train_dag", "train", "manual__2026-01-01T00:00:00+00:00"
JOB_ID = f"{DAG_ID}/{RUN_ID}/{TASK_ID}"
MERGE_PATCH = "application/merge-patch+json"


class FakeStore:
    """The task state store's interface over a dict (it survives "retries" in a test)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))  # only JSON survives, as in Airflow

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def make_context(store: FakeStore | None, *, try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=DAG_ID, task_id=TASK_ID, run_id=RUN_ID, try_number=try_number, map_index=-1)
    ti.xcom_push = lambda **_: None
    return {
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "dag": SimpleNamespace(dag_id=DAG_ID),
        "dag_run": SimpleNamespace(start_date=datetime.now(UTC) - timedelta(minutes=1), run_id=RUN_ID),
        "task_state_store": store,
    }


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, spec: dict[str, Any]) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(spec))


@pytest.fixture
def clusters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, EmulatorThread]]:
    """Two emulated clusters and their connections, plus the replay signal connection ``carbon``."""
    with EmulatorThread() as north, EmulatorThread() as south:
        set_connection(
            monkeypatch, "kube_north", {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(north.url)}}
        )
        set_connection(
            monkeypatch, "kube_south", {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(south.url)}}
        )
        trace = write_flat_trace(tmp_path / "trace.csv", {NORTH: 50, SOUTH: 400})
        extra = {"anchor": "fixed", "forecast_error": 0}
        set_connection(monkeypatch, "carbon", {"conn_type": "gridaware_replay", "host": str(trace), "extra": extra})
        yield {NORTH: north, SOUTH: south}


def make_operator(**overrides: Any) -> GridAwareKubernetesJobOperator:
    args: dict[str, Any] = {
        "task_id": TASK_ID,
        "clusters": [
            KubernetesCluster(zone=SOUTH, conn_id="kube_south", namespace=NS),
            KubernetesCluster(zone=NORTH, conn_id="kube_north", namespace=NS),
        ],
        "conn_id": "carbon",
        "duration": timedelta(minutes=30),
        "deadline": timedelta(hours=6),
        # Not before 10 minutes from the run start: the first decision waits, so the Job is created suspended.
        "earliest_start": timedelta(minutes=11),
        "image": "python:3.12-slim",
        "cmds": ["python", "-c", "print('train')"],
        "env_vars": {"EPOCHS": "3"},
        "checkpoint_path": "/ckpt",
        "grace_period_seconds": 45,
        "job_poll_interval": 0.05,
    }
    args.update(overrides)
    return GridAwareKubernetesJobOperator(**args)


def window_event(zone: str, *, reason: str = "window open") -> dict[str, Any]:
    """What GridWindowTrigger sends when the window opens (its plan in ``zone``)."""
    now = datetime.now(UTC)
    plan = {
        "zone": zone,
        "chunks": [{"start": now.isoformat(), "end": (now + timedelta(minutes=30)).isoformat()}],
        "run_now": True,
        "latest_start": (now + timedelta(hours=5)).isoformat(),
        "planned_at": now.isoformat(),
        "status": "shifted",
        "reason": reason,
    }
    counterfactual = {"what": "start at once in the home zone", "zone": SOUTH, "signals": {"gCO2eq/kWh": 400.0}}
    return {
        "status": "released",
        "released_at": now.isoformat(),
        "plan": plan,
        "problems": [],
        "replans": 2,
        "counterfactual": counterfactual,
    }


def all_jobs(clusters: dict[str, EmulatorThread]) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    return {zone: emu.jobs() for zone, emu in clusters.items()}


def only_job(clusters: dict[str, EmulatorThread], zone: str) -> dict[str, Any]:
    jobs = all_jobs(clusters)
    assert sum(len(j) for j in jobs.values()) == 1, jobs
    (job,) = jobs[zone].values()
    return job


def patches(emu: EmulatorThread) -> list[Any]:
    return [r for r in emu.requests() if str(r.method).endswith("PATCH")]


def created(op: GridAwareKubernetesJobOperator, store: FakeStore) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(make_context(store))
    return deferred.value


def released(op: GridAwareKubernetesJobOperator, store: FakeStore, zone: str) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_in_window(make_context(store), window_event(zone))
    return deferred.value


def finish(emu: EmulatorThread, job: dict[str, Any], *, ok: bool) -> None:
    """Play the Job controller: write the final status through the API (PATCH on /status)."""

    meta = job["metadata"]
    condition = {"type": "Complete" if ok else "Failed", "status": "True", "lastTransitionTime": "2026-01-01T01:00:00Z"}
    if not ok:
        condition.update(reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
    status = {
        "startTime": "2026-01-01T00:30:00Z",
        "active": 0,
        "succeeded" if ok else "failed": 1,
        "conditions": [condition],
    }
    if ok:
        status["completionTime"] = "2026-01-01T01:00:00Z"
    response = LOOPBACK.patch(
        f"{emu.url}/apis/batch/v1/namespaces/{meta['namespace']}/jobs/{meta['name']}/status",
        content=json.dumps({"status": status}),
        headers={"Content-Type": MERGE_PATCH},
    )
    response.raise_for_status()


def run_trigger(trigger: KubernetesJobCompletionTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 30))


# -- create, release, complete ---------------------------------------------------------------------------
def test_job_is_created_suspended_in_the_cleanest_cluster(clusters):
    store = FakeStore()
    deferred = created(make_operator(), store)
    assert isinstance(deferred.trigger, GridWindowTrigger)
    assert deferred.method_name == "execute_in_window"
    job = only_job(clusters, NORTH)  # the plan chose the clean zone, not the home zone
    meta, spec = job["metadata"], job["spec"]
    assert spec["suspend"] is True and meta["namespace"] == NS
    labels = meta["labels"]
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_ZONE] == NORTH
    assert labels[LABEL_PRIORITY_CLASS] == "flexible" and labels[LABEL_DAG_ID] == DAG_ID
    assert meta["annotations"][ANNOTATION_JOB_ID] == JOB_ID and meta["annotations"][ANNOTATION_ATTEMPT] == "1"
    assert json.loads(meta["annotations"][ANNOTATION_PLAN])["plan"]["zone"] == NORTH
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["EPOCHS"] == "3" and env[ENV_JOB_ID] == JOB_ID and env[ENV_ZONE] == NORTH
    assert env[ENV_CHECKPOINT_DIR] == "/ckpt" and env[ENV_CHECKPOINT_GRACE_SECONDS] == "45"
    assert store.data[STATE_KEY] | {} == {
        "conn_id": "kube_north",
        "namespace": NS,
        "name": meta["name"],
        "zone": NORTH,
        "released": False,
        "decision": store.data[STATE_KEY]["decision"],
        "generation": 1,
    }
    assert meta["annotations"][ANNOTATION_GENERATION] == "1"


def test_window_unsuspends_with_one_exact_merge_patch_then_waits_for_completion(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    deferred = released(op, store, NORTH)
    assert isinstance(deferred.trigger, KubernetesJobCompletionTrigger)
    assert deferred.method_name == "execute_complete"
    job = only_job(clusters, NORTH)
    assert job["spec"]["suspend"] is False
    (patch,) = patches(clusters[NORTH])
    assert patch.data == {"spec": {"suspend": False}}
    assert patch.headers["Content-Type"] == MERGE_PATCH
    assert patch.url.path == f"/apis/batch/v1/namespaces/{NS}/jobs/{job['metadata']['name']}"
    assert store.data[STATE_KEY]["released"] is True


def test_completion_is_detected_and_the_result_is_ready_for_the_ledger(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    trigger = released(op, store, NORTH).trigger
    job = only_job(clusters, NORTH)
    finish(clusters[NORTH], job, ok=True)
    event = run_trigger(trigger)
    assert event["status"] == "complete"
    result = op.execute_complete(make_context(store), event)
    assert result["status"] == "complete" and result["zone"] == NORTH and result["cluster"] == "kube_north"
    assert result["namespace"] == NS and result["job_name"] == job["metadata"]["name"]
    assert datetime.fromisoformat(result["start_time"]) == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    assert datetime.fromisoformat(result["end_time"]) == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert result["decision"]["plan"]["zone"] == NORTH and result["counterfactual"]["zone"] == SOUTH
    assert result["job_id"] == JOB_ID
    json.dumps(result)  # an XCom


def test_failure_is_detected_with_its_reason(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    trigger = released(op, store, NORTH).trigger
    finish(clusters[NORTH], only_job(clusters, NORTH), ok=False)
    event = run_trigger(trigger)
    assert event["status"] == "failed"
    with pytest.raises(KubernetesDispatchError, match="failed: BackoffLimitExceeded"):
        op.execute_complete(make_context(store), event)


def test_a_deleted_job_ends_the_wait_with_a_clear_error(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    trigger = released(op, store, NORTH).trigger
    job = only_job(clusters, NORTH)
    from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook

    GridKubernetesHook("kube_north").delete_job(NS, job["metadata"]["name"])
    event = run_trigger(trigger)
    assert event["status"] == "missing"
    with pytest.raises(KubernetesDispatchError, match="deleted before it finished"):
        op.execute_complete(make_context(store), event)


# -- retries reattach ------------------------------------------------------------------------------------
def test_a_retry_while_waiting_defers_again_without_a_second_job(clusters):
    store = FakeStore()
    created(make_operator(), store)
    name = only_job(clusters, NORTH)["metadata"]["name"]
    with pytest.raises(TaskDeferred) as again:
        make_operator().execute(make_context(store, try_number=2))
    assert isinstance(again.value.trigger, GridWindowTrigger)
    assert only_job(clusters, NORTH)["metadata"]["name"] == name


def test_a_retry_while_running_waits_for_the_same_job(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    released(op, store, NORTH)
    name = only_job(clusters, NORTH)["metadata"]["name"]
    with pytest.raises(TaskDeferred) as again:
        make_operator().execute(make_context(store, try_number=2))
    assert isinstance(again.value.trigger, KubernetesJobCompletionTrigger)
    assert again.value.trigger.request.name == name
    assert only_job(clusters, NORTH)["spec"]["suspend"] is False


def test_a_retry_after_completion_returns_the_result_at_once(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    released(op, store, NORTH)
    finish(clusters[NORTH], only_job(clusters, NORTH), ok=True)
    result = make_operator().execute(make_context(store, try_number=2))
    assert result["status"] == "complete" and result["zone"] == NORTH
    assert result["decision"]["plan"]["reason"] == "window open"
    assert sum(len(j) for j in all_jobs(clusters).values()) == 1


def test_a_job_created_but_never_persisted_is_found_by_its_labels(clusters):
    store = FakeStore()
    created(make_operator(), store)
    store.data.clear()  # the worker died between creating the Job and persisting its identity
    with pytest.raises(TaskDeferred):
        make_operator().execute(make_context(FakeStore(), try_number=2))
    only_job(clusters, NORTH)


def test_a_failed_job_is_not_reused(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    released(op, store, NORTH)
    old = only_job(clusters, NORTH)
    finish(clusters[NORTH], old, ok=False)
    with pytest.raises(TaskDeferred):
        make_operator().execute(make_context(store, try_number=2))
    jobs = clusters[NORTH].jobs()
    assert len(jobs) == 2
    (new,) = [j for j in jobs.values() if j["metadata"]["name"] != old["metadata"]["name"]]
    assert new["spec"]["suspend"] is True and new["metadata"]["annotations"][ANNOTATION_ATTEMPT] == "2"
    assert store.data[STATE_KEY]["name"] == new["metadata"]["name"]


# -- moving between clusters at the window ---------------------------------------------------------------
def test_a_window_in_another_zone_moves_the_job_create_first_then_delete(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    old = only_job(clusters, NORTH)
    deferred = released(op, store, SOUTH)
    moved = only_job(clusters, SOUTH)  # exactly one Job left, in SOUTH
    assert moved["spec"]["suspend"] is False and moved["metadata"]["labels"][LABEL_ZONE] == SOUTH
    env = {e["name"]: e["value"] for e in moved["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env[ENV_ZONE] == SOUTH
    assert deferred.trigger.request.conn_id == "kube_south"
    assert store.data[STATE_KEY]["name"] == moved["metadata"]["name"] and store.data[STATE_KEY]["zone"] == SOUTH
    # Created in SOUTH before the original was deleted in NORTH: never zero Jobs, never two running.
    south_create = next(r for r in clusters[SOUTH].requests() if str(r.method).endswith("POST"))
    north_delete = next(r for r in clusters[NORTH].requests() if str(r.method).endswith("DELETE"))
    assert north_delete.url.path.endswith(old["metadata"]["name"])
    assert south_create.data["spec"]["suspend"] is True


def test_when_the_move_cannot_create_the_job_stays_and_is_released_where_it_is(clusters, capsys):
    store, op = FakeStore(), make_operator()
    created(op, store)
    clusters[SOUTH].call(lambda e: e.forbid.add("create"))
    released(op, store, SOUTH)
    job = only_job(clusters, NORTH)
    assert job["spec"]["suspend"] is False
    out = capsys.readouterr().out
    assert "could not create the Job in kube_south" in out and "403" in out and "where it is" in out


def test_when_the_old_job_cannot_be_deleted_the_copy_is_removed(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    clusters[NORTH].call(lambda e: e.forbid.add("delete"))
    released(op, store, SOUTH)
    job = only_job(clusters, NORTH)  # the copy in SOUTH is gone again, the original released
    assert job["spec"]["suspend"] is False
    assert store.data[STATE_KEY]["conn_id"] == "kube_north"


def test_a_half_failed_move_says_so_and_never_runs_two(clusters):
    store, op = FakeStore(), make_operator()
    created(op, store)
    clusters[NORTH].call(lambda e: e.forbid.add("delete"))
    clusters[SOUTH].call(lambda e: e.forbid.add("delete"))
    with pytest.raises(KubernetesDispatchError, match="both are suspended"):
        op.execute_in_window(make_context(store), window_event(SOUTH))
    jobs = all_jobs(clusters)
    assert all(j["spec"]["suspend"] is True for zone in jobs.values() for j in zone.values())


# -- Kueue -----------------------------------------------------------------------------------------------
def test_with_kueue_the_window_adds_the_queue_label_and_leaves_suspend_to_kueue(clusters):
    store = FakeStore()
    op = make_operator(
        clusters=[
            KubernetesCluster(zone=SOUTH, conn_id="kube_south", namespace=NS),
            KubernetesCluster(zone=NORTH, conn_id="kube_north", namespace=NS, queue_name="gpu-queue"),
        ],
        labels={KUEUE_QUEUE_LABEL: "someone-elses-queue"},
    )
    created(op, store)
    job = only_job(clusters, NORTH)
    assert KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]  # Kueue would admit it at once
    released(op, store, NORTH)
    (patch,) = patches(clusters[NORTH])
    assert patch.data == {"metadata": {"labels": {KUEUE_QUEUE_LABEL: "gpu-queue"}}}
    job = only_job(clusters, NORTH)
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-queue"


# -- bad input: clear errors, nothing duplicated or orphaned ---------------------------------------------
def test_a_spec_kubernetes_rejects_fails_the_task_with_the_api_message(clusters):
    store = FakeStore()
    op = make_operator(image=None)
    with pytest.raises(KubernetesDispatchError, match=r"answered 422: Job.batch .* is invalid.*image: Required value"):
        op.execute(make_context(store))
    assert all_jobs(clusters) == {NORTH: {}, SOUTH: {}}
    assert STATE_KEY not in store.data


def test_an_invalid_job_name_is_rejected(clusters):
    op = make_operator(name="Not_A-Valid.Name", random_name_suffix=False)
    with pytest.raises(KubernetesDispatchError, match="422"):
        op.execute(make_context(FakeStore()))
    assert all_jobs(clusters) == {NORTH: {}, SOUTH: {}}


def test_a_missing_cluster_connection_is_named(clusters):
    op = make_operator(
        clusters=[
            KubernetesCluster(zone=SOUTH, conn_id="kube_south", namespace=NS),
            KubernetesCluster(zone=NORTH, conn_id="kube_nowhere", namespace=NS),
        ]
    )
    with pytest.raises(KubernetesDispatchError, match="kube_nowhere"):
        op.execute(make_context(FakeStore()))
    assert all_jobs(clusters) == {NORTH: {}, SOUTH: {}}


def test_an_unreachable_cluster_is_named(clusters, monkeypatch):
    from tests.integration.airflow_stack import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    set_connection(monkeypatch, "kube_north", {"conn_type": "kubernetes", "extra": {"kube_config": kube_config(dead)}})
    with pytest.raises(KubernetesDispatchError, match=r"'kube_north' \(http://127.0.0.1:\d+\) is unreachable"):
        make_operator().execute(make_context(FakeStore()))
    assert all_jobs(clusters) == {NORTH: {}, SOUTH: {}}


# -- on_kill ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["delete", "suspend", "keep"])
def test_on_kill(clusters, action):
    store, op = FakeStore(), make_operator(on_kill_action=action)
    created(op, store)
    released(op, store, NORTH)
    op.on_kill()
    jobs = clusters[NORTH].jobs()
    if action == "delete":
        assert jobs == {}
    else:
        (job,) = jobs.values()
        assert job["spec"]["suspend"] is (action == "suspend")


def test_resources_are_jobs():
    assert str(JOBS.plural) == "jobs"


def test_without_a_task_state_store_the_job_is_found_by_its_labels(clusters):
    op = make_operator()
    with pytest.raises(TaskDeferred):
        op.execute(make_context(None))
    with pytest.raises(TaskDeferred) as deferred:
        make_operator().execute_in_window(make_context(None), window_event(NORTH))
    assert isinstance(deferred.value.trigger, KubernetesJobCompletionTrigger)
    assert only_job(clusters, NORTH)["spec"]["suspend"] is False
