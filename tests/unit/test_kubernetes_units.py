"""Kubernetes dispatch without a cluster: Job phases, selectors, API errors, operator arguments, the trigger."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_gridaware.hooks.kubernetes import (
    JobPhase,
    JobRef,
    api_error_message,
    failure_message,
    job_phase,
    labels_match,
)
from airflow_provider_gridaware.operators.kubernetes import (
    GridAwareKubernetesJobOperator,
    KubernetesCluster,
    KubernetesSuspendJobsOperator,
    _live_copy_rank,
    job_generation,
)
from airflow_provider_gridaware.triggers import kubernetes as trigger_module
from airflow_provider_gridaware.triggers.kubernetes import JobWatchRequest, KubernetesJobCompletionTrigger


def job(suspend: bool = False, *conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "spec": {"suspend": suspend},
        "status": {"conditions": [{"type": t, "status": s, "reason": "R", "message": "M"} for t, s in conditions]},
    }


@pytest.mark.parametrize(
    ("value", "phase"),
    [
        (job(True), JobPhase.SUSPENDED),
        (job(False), JobPhase.RUNNING),
        (job(False, ("Complete", "True")), JobPhase.COMPLETE),
        (job(False, ("Failed", "True")), JobPhase.FAILED),
        (job(True, ("Suspended", "True")), JobPhase.SUSPENDED),
        # A condition reported "False" is not final (the official provider's helper gets this wrong).
        (job(False, ("Complete", "False")), JobPhase.RUNNING),
        (job(False, ("Failed", "False"), ("Complete", "True")), JobPhase.COMPLETE),
        ({}, JobPhase.RUNNING),
    ],
)
def test_job_phase(value, phase):
    assert job_phase(value) is phase


def test_failure_message():
    assert failure_message(job(False, ("Failed", "True"))) == "R: M"
    assert failure_message(job(False, ("Complete", "True"))) == ""


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("a=1", True),
        ("a==1,b=2", True),
        ("a=2", False),
        ("a!=2", True),
        ("a!=1", False),
        ("c", False),
        ("a", True),
        ("!c", True),
        ("!a", False),
        ("a in (1, 3),b notin (5)", True),
        ("a in (3,4)", False),
        ("c notin (1)", True),
        ("", True),
    ],
)
def test_labels_match(selector, expected):
    assert labels_match({"a": "1", "b": "2"}, selector) is expected


def test_api_error_message_reads_the_status_body():
    class Exc(Exception):
        status, reason = 422, "Unprocessable Entity"
        body = json.dumps(
            {
                "kind": "Status",
                "message": 'Job.batch "x" is invalid',
                "details": {
                    "causes": [{"field": "spec.template.spec.containers[0].image", "message": "Required value"}]
                },
            }
        )

    assert (
        api_error_message(Exc()) == 'Job.batch "x" is invalid (spec.template.spec.containers[0].image: Required value)'
    )


def clusters(**penalties: float) -> list[KubernetesCluster]:
    return [
        KubernetesCluster(zone="SE", conn_id="kube_se", penalty=penalties.get("SE", 0.0)),
        KubernetesCluster(zone="DE", conn_id="kube_de", namespace="ml", queue_name="q"),
    ]


def operator(**kwargs: Any) -> GridAwareKubernetesJobOperator:
    args: dict[str, Any] = {
        "task_id": "train",
        "clusters": clusters(SE=0.2),
        "conn_id": "carbon",
        "duration": timedelta(hours=1),
        "deadline": timedelta(hours=8),
        "image": "python:3.12",
    }
    return GridAwareKubernetesJobOperator(**{**args, **kwargs})


def test_zones_and_penalties_come_from_the_clusters():
    op = operator(zone_penalty={"DE": 0.5})
    args = op.window_args()
    assert list(args.zones) == ["SE", "DE"]  # home first
    assert dict(args.zone_penalty) == {"SE": 0.2, "DE": 0.5}
    assert op.kubernetes_conn_id == "kube_se"
    assert op.suspend is True and op.wait_until_job_complete is False
    assert op.termination_grace_period == 120
    assert {"deadline", "earliest_start", "conn_id", "checkpoint_path", "image", "arguments"} <= set(op.template_fields)


def test_clusters_may_be_given_as_dicts():
    op = operator(clusters=[{"zone": "SE", "conn_id": "kube_se"}, {"zone": "DE", "conn_id": "kube_de", "penalty": 1}])
    assert op.clusters_by_zone["DE"].penalty == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"zones": ["SE"]}, "zones come from clusters"),
        ({"on_kill_action": "explode"}, "on_kill_action"),
        ({"clusters": []}, "at least one target"),
        ({"clusters": [{"zone": "SE", "conn_id": "a"}, {"zone": "SE", "conn_id": "b"}]}, "two targets for zone"),
        ({"conn_id": None}, "give conn_id and zones, or sources"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        operator(**kwargs)


def test_suspend_selector_is_scoped_and_combined():
    op = KubernetesSuspendJobsOperator(
        task_id="pause", conn_ids="kube_se", priority_class="batch", target_dag_id="nightly train", selector="team=ml"
    )
    assert op.conn_ids == ["kube_se"]
    assert op.full_selector() == (
        "gridaware.io/managed=true,team=ml,gridaware.io/priority-class=batch,gridaware.io/dag-id=nightly_train-"
        + op.full_selector().rsplit("-", 1)[-1]
    )


def test_trigger_serialises_to_one_typed_request():
    request = JobWatchRequest(conn_id="k", namespace="ns", name="job-1", zone="SE", decision={"plan": {"zone": "SE"}})
    classpath, kwargs = KubernetesJobCompletionTrigger(request).serialize()
    assert classpath == "airflow_provider_gridaware.triggers.kubernetes.KubernetesJobCompletionTrigger"
    assert KubernetesJobCompletionTrigger(**kwargs).request == request


def _first_event(trigger: KubernetesJobCompletionTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(first())


def test_trigger_rides_out_transient_errors(monkeypatch):
    reads: list[int] = []

    async def flaky(hook: Any, namespace: str, name: str) -> dict[str, Any]:
        reads.append(1)
        if len(reads) < 3:
            raise ConnectionError("API server restarting")
        if len(reads) < 5:
            return job(False)
        return {
            **job(False, ("Complete", "True")),
            "status": {
                "conditions": [{"type": "Complete", "status": "True"}],
                "startTime": "t0",
                "completionTime": "t1",
            },
        }

    monkeypatch.setattr(trigger_module, "read_job_async", flaky)
    request = JobWatchRequest(conn_id="k", namespace="ns", name="j", zone="SE", poll_seconds=0.001)
    event = _first_event(KubernetesJobCompletionTrigger(request))
    assert event["status"] == "complete" and len(reads) == 5
    assert (event["start_time"], event["completion_time"]) == ("t0", "t1")


def test_trigger_gives_up_after_too_many_errors_in_a_row(monkeypatch):
    async def down(hook: Any, namespace: str, name: str) -> dict[str, Any]:
        raise ConnectionError("refused")

    monkeypatch.setattr(trigger_module, "read_job_async", down)
    request = JobWatchRequest(
        conn_id="k", namespace="ns", name="j", zone="SE", poll_seconds=0.001, max_consecutive_errors=3
    )
    event = _first_event(KubernetesJobCompletionTrigger(request))
    assert event["status"] == "error" and "3 failed reads" in event["message"]


def test_importing_the_provider_does_not_import_kubernetes():
    import subprocess
    import sys

    code = "import sys, airflow_provider_gridaware; print(sorted(m for m in sys.modules if 'kubernetes' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_example_dag_parses_and_serialises_without_clusters() -> None:
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    path = Path(__file__).resolve().parents[2] / "example_dags" / "example_kubernetes_training.py"
    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    DagSerialization.to_dict(bag.dags["example_kubernetes_training"])  # what the dag-processor stores


def test_a_signal_zone_without_a_cluster_is_refused_at_parse_time():
    with pytest.raises(ValueError, match=r"signal zones without a target to run in: \['FR'\]"):
        operator(sources=[{"conn_id": "carbon", "zone": "FR"}])


def test_an_earliest_start_that_renders_empty_means_none():
    op = operator(earliest_start="{{ params.not_before }}")
    op.earliest_start = ""  # what the template renders for an empty optional param
    assert op.window_args().earliest_start is None


def _copy(name: str, *, generation: str | None, suspend: bool = True, created: str = "2026-01-01T00:00:00Z") -> Any:
    annotations = {} if generation is None else {"gridaware.io/generation": generation}
    job = {
        "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
        "spec": {"suspend": suspend},
    }
    return JobRef(conn_id="c", namespace="n", name=name, zone="Z"), job


def test_job_generation_reads_the_annotation_and_treats_missing_or_garbage_as_zero():
    assert job_generation(_copy("a", generation="4")[1]) == 4
    assert job_generation(_copy("a", generation=None)[1]) == 0
    assert job_generation(_copy("a", generation="x")[1]) == 0


def test_among_copies_found_by_label_a_started_one_wins_then_the_newest_generation():
    old, new = _copy("old", generation="1"), _copy("new", generation="2")
    assert max([old, new], key=_live_copy_rank)[0].name == "new"  # the move's target
    running_old = _copy("old", generation="1", suspend=False)
    assert max([running_old, new], key=_live_copy_rank)[0].name == "old"  # never leave a started copy
