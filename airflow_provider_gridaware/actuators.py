"""What the grid-event response acts on: Kubernetes Jobs, AWS Batch jobs and DAGs, found, paused and resumed.

Each *actuator* is one kind of in-flight work behind the responder's ``WorkActuator`` protocol
(``responder.py``). They are shared by ``GridEventResponseOperator`` (the grid-event DAG's task) and by
``GridEventTrigger`` when it applies the response in the triggerer itself (``respond=ResponseTargets(...)``),
so both runners find and pause the same work the same way; the store's claims make them apply each step once.
Hooks and their clients load on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_JOB_ID,
    LABEL_MANAGED,
    LABEL_PREFIX,
    LABEL_PRIORITY_CLASS,
    LABEL_ZONE,
)
from airflow_provider_gridaware.planning.grid_response import InFlightWork, TargetKind, WorkState
from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import ResponseAction, ResponsePolicy

if TYPE_CHECKING:
    from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook
    from airflow_provider_gridaware.hooks.batch import BatchQueue, GridAwareBatchHook
    from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
    from airflow_provider_gridaware.responder import WorkActuator
    from airflow_provider_gridaware.store.responses import ResponseRecord

#: declared on a Job or AWS job (annotation / tag): its power in kW, or its value (a capacity limit sheds low first).
ANNOTATION_POWER_KW = LABEL_PREFIX + "power-kw"
ANNOTATION_WEIGHT = LABEL_PREFIX + "weight"
#: DAG tags: ``gridaware:batch`` (its class) and ``gridaware:zone:GB`` (its grid zone; none = every event).
DAG_CLASS_TAG_PREFIX = "gridaware:"
DAG_ZONE_TAG_PREFIX = "gridaware:zone:"
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number > 0 else None


def _priority_class(value: Any) -> PriorityClass | None:
    try:
        return PriorityClass(str(value))
    except ValueError:
        return None


def job_gpus(job: Mapping[str, Any]) -> float:
    """GPUs a Job's pod declares (limits, else requests, summed over its containers)."""
    spec = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    total = 0.0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        for key in GPU_RESOURCES:
            total += _float((resources.get("limits") or {}).get(key) or (resources.get("requests") or {}).get(key)) or 0
    return total


class KubernetesJobsActuator:
    """Grid-aware Kubernetes Jobs in one cluster: found by our managed label, suspended and resumed one by one.

    :param conn_id: the cluster's ``kubernetes`` connection.
    :param policy: the response rule (power per GPU, default power).
    :param namespace: only this namespace (default: all).
    :param parallelism: API calls the pass makes at once (the client keeps a connection for each).
    """

    kind = TargetKind.KUBERNETES_JOB

    def __init__(
        self, conn_id: str, policy: ResponsePolicy, namespace: str | None = None, *, parallelism: int = 1
    ) -> None:
        self.conn_id = conn_id
        self.policy = policy
        self.namespace = namespace
        self.parallelism = parallelism
        self._prefix = f"{self.kind.value}/{conn_id}/"
        self._listed: dict[str, dict[str, Any]] = {}

    @cached_property
    def hook(self) -> GridKubernetesHook:
        from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook

        hook = GridKubernetesHook(conn_id=self.conn_id)
        hook.allow_concurrent_calls(self.parallelism)
        return hook

    def owns(self, target: str) -> bool:
        return target.startswith(self._prefix)

    def discover(self) -> list[InFlightWork]:
        from airflow_provider_gridaware.hooks.kubernetes import ANNOTATION_SUSPENDED_BY, JobPhase, job_phase

        found = []
        self._listed = {}
        for job in self.hook.list_jobs(self.namespace, {LABEL_MANAGED: "true"}):
            meta = job.get("metadata") or {}
            labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
            cls = _priority_class(labels.get(LABEL_PRIORITY_CLASS))
            if cls is None:
                continue
            target = f"{self._prefix}{meta.get('namespace') or 'default'}/{meta.get('name')}"
            phase = job_phase(job)
            if phase is JobPhase.RUNNING:
                state = WorkState.RUNNING
            elif phase is JobPhase.SUSPENDED and ANNOTATION_SUSPENDED_BY in annotations:
                state = WorkState.PAUSED
            else:
                state = WorkState.OTHER
            self._listed[target] = job
            power = self.policy.task_kw(gpus=job_gpus(job), power_kw=_float(annotations.get(ANNOTATION_POWER_KW)))
            found.append(
                InFlightWork(
                    target,
                    self.kind,
                    cls,
                    labels.get(LABEL_ZONE),
                    state,
                    power,
                    _float(annotations.get(ANNOTATION_WEIGHT)) or 1.0,
                )
            )
        return found

    def _where(self, target: str) -> tuple[str, str]:
        namespace, _, name = target[len(self._prefix) :].partition("/")
        return namespace, name

    def pause(self, work: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        namespace, name = self._where(work.target)
        job = self._listed.get(work.target) or self.hook.read_job(namespace, name)
        if job is None:
            return "gone", {"why": "the Job no longer exists"}
        change = self.hook.change_suspension(job, suspend=True, reason=reason[:1000])
        if change["action"] == "suspended":
            return "paused", {"cluster": self.conn_id, "namespace": namespace, "name": name}
        return "gone", {"why": change["reason"]}

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        namespace, name = self._where(record.target)
        # As listed a moment ago by this pass: the patch is a merge patch, and a Job that changed since
        # (resumed by hand) is only re-marked; one GET per Job would double the calls of a large fleet.
        job = self._listed.get(record.target) or self.hook.read_job(namespace, name)
        if job is None:
            return "gone", {"resume": "the Job no longer exists"}
        change = self.hook.change_suspension(job, suspend=False, reason=reason)
        return ("resumed" if change["action"] == "resumed" else "gone"), {"resume": change["reason"]}


class BatchJobsActuator:
    """Grid-aware AWS Batch jobs in one queue: paused by terminate-with-reason, resumed by resubmission.

    :param queue: the queue (zone, name, region, AWS connection).
    :param policy: the response rule (power per GPU, default power).
    """

    kind = TargetKind.BATCH_JOB

    def __init__(self, queue: BatchQueue, policy: ResponsePolicy) -> None:
        self.queue = queue
        self.policy = policy
        self._prefix = f"{self.kind.value}/{queue.region_name}/{queue.job_queue}/"
        self._listed: dict[str, dict[str, Any]] = {}

    @cached_property
    def hook(self) -> GridAwareBatchHook:
        from airflow_provider_gridaware.hooks.batch import GridAwareBatchHook

        return GridAwareBatchHook(aws_conn_id=self.queue.aws_conn_id, region_name=self.queue.region_name)

    def owns(self, target: str) -> bool:
        return target.startswith(self._prefix)

    def discover(self) -> list[InFlightWork]:
        from airflow_provider_gridaware.hooks.batch import ACTIVE_STATES

        found = []
        self._listed = {}
        for job in self.hook.list_managed_jobs(self.queue.job_queue, statuses=ACTIVE_STATES):
            tags = job.get("tags") or {}
            cls = _priority_class(tags.get(LABEL_PRIORITY_CLASS))
            logical = tags.get(ANNOTATION_JOB_ID) or job["jobId"]
            if cls is None:
                continue
            target = f"{self._prefix}{logical}"
            self._listed[target] = job
            gpus = sum(
                _float(r.get("value")) or 0
                for r in (job.get("container") or {}).get("resourceRequirements") or []
                if r.get("type") == "GPU"
            )
            power = self.policy.task_kw(gpus=gpus, power_kw=_float(tags.get(ANNOTATION_POWER_KW)))
            found.append(
                InFlightWork(
                    target,
                    self.kind,
                    cls,
                    tags.get(LABEL_ZONE) or self.queue.zone,
                    WorkState.RUNNING,
                    power,
                    _float(tags.get(ANNOTATION_WEIGHT)) or 1.0,
                )
            )
        return found

    def pause(self, work: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        job = self._listed.get(work.target)
        if job is None:
            return "gone", {"why": "the job is no longer active"}
        outcome = self.hook.pause_job(job, reason=reason[:200])
        if outcome == "paused":
            return "paused", self._paused_detail(job)
        return "gone", {"why": outcome}

    def find_paused(self, target: str) -> dict[str, Any] | None:
        """The pause detail of ``target``'s newest AWS job if a grid-aware pause terminated it and it has not
        been resubmitted: a pause applied by a runner that stopped before recording it (a terminated job is
        no longer listed as active, and its resume needs its id). ``None`` otherwise."""
        from airflow_provider_gridaware.hooks.batch import FAILED, is_paused

        logical = target[len(self._prefix) :]
        jobs = [
            j
            for j in self.hook.list_managed_jobs(self.queue.job_queue, statuses=(FAILED,))
            if ((j.get("tags") or {}).get(ANNOTATION_JOB_ID) or j["jobId"]) == logical  # as discover names it
        ]
        if not jobs:
            return None
        # Each resume submits a new AWS job: only the newest can be the one left paused; an older paused one
        # was resubmitted already (by the job that was paused since).
        newest = max(jobs, key=lambda j: (j.get("createdAt") or 0, j["jobId"]))
        if not is_paused(newest) or self.hook.successor(newest) is not None:
            return None
        return self._paused_detail(newest)

    def _paused_detail(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """What a pause records: the terminated job its resume resubmits."""
        return {"job_id": job["jobId"], "region": self.queue.region_name}

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        # No job id: a hold still ``claimed`` when its event ended (its runner stopped within the lease),
        # whose runner may have terminated the job before it stopped.
        job_id = record.detail.get("job_id") or (self.find_paused(record.target) or {}).get("job_id")
        job = self.hook.describe_job(str(job_id)) if job_id else None
        if job is None:
            return "gone", {"resume": f"the paused AWS job {job_id} cannot be found"}
        outcome, new_id = self.hook.resume_job(job)
        if outcome in ("resumed", "already resumed"):
            return "resumed", {"resume": outcome, "resumed_job_id": new_id}
        return "gone", {"resume": outcome}


class AirflowDagsActuator:
    """DAGs tagged with a priority class whose response is ``stop``, paused and unpaused through the REST API.

    Only DAGs unpaused when the event came are paused (a DAG paused by hand is never touched), and only those
    the response paused are unpaused.

    :param airflow_conn_id: the api-server connection (see ``hooks/airflow_api.py``).
    :param policy: the response rule (which classes stop).
    :param exclude: DAG ids never to pause (the grid-event DAG itself).
    """

    kind = TargetKind.DAG

    def __init__(self, airflow_conn_id: str, policy: ResponsePolicy, exclude: Sequence[str] = ()) -> None:
        self.airflow_conn_id = airflow_conn_id
        self.policy = policy
        self.exclude = set(exclude)

    @cached_property
    def hook(self) -> AirflowApiHook:
        from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook

        return AirflowApiHook(self.airflow_conn_id)

    def owns(self, target: str) -> bool:
        return target.startswith(f"{self.kind.value}/")

    def discover(self) -> list[InFlightWork]:
        stopping = [c for c in PriorityClass if self.policy.action(c) is ResponseAction.STOP]
        if not stopping:
            return []
        found = []
        for dag in self.hook.list_dags(tags=[DAG_CLASS_TAG_PREFIX + c.value for c in stopping], paused=False):
            if dag["dag_id"] in self.exclude:
                continue
            names = [t["name"] if isinstance(t, Mapping) else str(t) for t in dag.get("tags") or []]
            cls = next((c for c in stopping if DAG_CLASS_TAG_PREFIX + c.value in names), None)
            if cls is None:
                continue
            zone = next((n[len(DAG_ZONE_TAG_PREFIX) :] for n in names if n.startswith(DAG_ZONE_TAG_PREFIX)), None)
            found.append(
                InFlightWork(
                    f"{self.kind.value}/{dag['dag_id']}", self.kind, cls, zone, WorkState.RUNNING, power_kw=0.0
                )  # its tasks' jobs carry their own power
            )
        return found

    def pause(self, work: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        dag_id = work.target.partition("/")[2]
        dag = self.hook.set_paused(dag_id, True)
        return "paused", {"dag_id": dag_id, "is_paused": dag.get("is_paused")}

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        dag_id = record.target.partition("/")[2]
        dag = self.hook.set_paused(dag_id, False)
        return "resumed", {"is_paused": dag.get("is_paused")}


class ResponseTargets(BaseModel):
    """Where a grid-event response acts: the clusters, queues and DAGs, as plain serialisable data.

    The operator builds it from its arguments; ``GridEventTrigger(respond=...)`` carries it through the
    triggerer's serialisation. Batch queues are kept as dicts so the AWS extra loads only when one is given.

    :param kubernetes_conn_ids: ``kubernetes`` connections of the clusters whose grid-aware Jobs respond.
    :param namespace: only Jobs in this namespace (default: all namespaces).
    :param batch_queues: AWS Batch queues (``BatchQueue`` or its dict) whose grid-aware jobs respond.
    :param airflow_conn_id: the api-server connection for pausing DAGs tagged ``gridaware:<class>``.
    :param exclude_dag_ids: DAGs never paused (the grid-event DAG itself).
    :param parallelism: API calls in flight at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kubernetes_conn_ids: tuple[str, ...] = ()
    namespace: str | None = None
    batch_queues: tuple[dict[str, Any], ...] = ()
    airflow_conn_id: str | None = None
    exclude_dag_ids: tuple[str, ...] = ()
    parallelism: int = Field(default=4, ge=1)

    @field_validator("kubernetes_conn_ids", "exclude_dag_ids", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("batch_queues", mode="before")
    @classmethod
    def _queues_as_dicts(cls, value: Any) -> Any:
        return tuple(q.model_dump() if isinstance(q, BaseModel) else q for q in value or ())

    def __bool__(self) -> bool:
        return bool(self.kubernetes_conn_ids or self.batch_queues or self.airflow_conn_id)

    def describe(self) -> str:
        parts = [f"Jobs in {', '.join(self.kubernetes_conn_ids)}"] if self.kubernetes_conn_ids else []
        parts += [f"AWS Batch jobs in {len(self.batch_queues)} queue(s)"] if self.batch_queues else []
        parts += [f"DAGs through {self.airflow_conn_id}"] if self.airflow_conn_id else []
        return "; ".join(parts) or "nothing"

    def actuators(self, policy: ResponsePolicy) -> list[WorkActuator]:
        """One actuator per cluster, queue and the DAGs, ready for :func:`~airflow_provider_gridaware.responder.respond`."""
        found: list[WorkActuator] = [
            KubernetesJobsActuator(c, policy, self.namespace, parallelism=self.parallelism)
            for c in self.kubernetes_conn_ids
        ]
        if self.batch_queues:
            from airflow_provider_gridaware.hooks.batch import BatchQueue

            found += [BatchJobsActuator(BatchQueue.model_validate(q), policy) for q in self.batch_queues]
        if self.airflow_conn_id:
            found.append(AirflowDagsActuator(self.airflow_conn_id, policy, exclude=self.exclude_dag_ids))
        return found
