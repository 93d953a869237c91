"""GridEventResponseOperator: the grid-event DAG's task that pauses in-flight work and brings it back.

Run by a DAG scheduled on the grid-event asset (``GridEventTrigger`` in an ``AssetWatcher``): each new or
modified event state starts a run, and the task brings the fleet in line with *all* current events (see
``planning/grid_response.py``): flexible Kubernetes Jobs and AWS Batch jobs checkpoint and wait, batch ones
stop, DAGs tagged ``gridaware:batch`` are paused through Airflow's REST API; critical work is untouched.
Every step is claimed and recorded in the store (``store/responses.py``), so duplicates, out-of-order states,
two runs at once and a triggerer restart apply nothing twice.

How the end is detected: a completed or cancelled state fires the asset too (a new run resumes what it held),
and, because an event's intervals may simply run out without a message, the task itself waits (deferred, no
worker slot) until the end of the events it holds and then runs the same pass again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

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
    from airflow.sdk import Context

    from airflow_provider_gridaware.hooks.airflow_api import AirflowApiHook
    from airflow_provider_gridaware.hooks.batch import BatchQueue, GridAwareBatchHook
    from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
    from airflow_provider_gridaware.responder import ResponseOutcome
    from airflow_provider_gridaware.signals.grid_event import GridEvent
    from airflow_provider_gridaware.store.responses import ResponseRecord

#: declared on a Job or AWS job (annotation / tag): its power in kW, or its value (a capacity limit sheds low first).
ANNOTATION_POWER_KW = LABEL_PREFIX + "power-kw"
ANNOTATION_WEIGHT = LABEL_PREFIX + "weight"
#: DAG tags: ``gridaware:batch`` (its class) and ``gridaware:zone:GB`` (its grid zone; none = every event).
DAG_CLASS_TAG_PREFIX = "gridaware:"
DAG_ZONE_TAG_PREFIX = "gridaware:zone:"
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
#: never defer on a trigger that can fire at once (DESIGN.md, the deferral race): wait at least this long.
MIN_DEFER_SECONDS = 5.0


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
            return "paused", {"job_id": job["jobId"], "region": self.queue.region_name}
        return "gone", {"why": outcome}

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        job_id = record.detail.get("job_id")
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


class GridEventResponseOperator(BaseOperator):
    """Pause the in-flight work the current grid events shed, and resume what they no longer shed.

    Every pass reads the events from the store, finds the work (Kubernetes Jobs in each cluster, AWS Batch
    jobs in each queue, DAGs tagged ``gridaware:<class>`` through Airflow's REST API), plans with the
    response policy and applies each step once (claimed in the store). Failures of single steps are logged
    and recorded and fail the task at the end (a retry runs the pass again: nothing is applied twice).

    :param kubernetes_conn_ids: ``kubernetes`` connections of the clusters whose grid-aware Jobs respond.
    :param namespace: only Jobs in this namespace (default: all namespaces).
    :param batch_queues: AWS Batch queues whose grid-aware jobs respond.
    :param airflow_conn_id: connection to Airflow's api-server for pausing DAGs (``None``: DAGs are not paused).
    :param policy: the response policy as a dict or JSON (see ``docs/grid_event_response.md``); default: the
        Airflow Variable ``policy_variable`` if given, else ``[gridaware] response_policy``, else the defaults.
    :param policy_variable: an Airflow Variable holding the policy as JSON.
    :param store_conn_id: the store's connection (default: the provider's store).
    :param wait_for_end: after the pass, wait (deferred) until the end of the events holding work, then pass
        again; repeat until nothing is held. Catches events whose intervals run out without a message.
    :param parallelism: API calls in flight at once.
    """

    template_fields: Sequence[str] = (
        "kubernetes_conn_ids",
        "namespace",
        "airflow_conn_id",
        "policy",
        "policy_variable",
    )
    ui_color = "#e76f51"

    def __init__(
        self,
        *,
        kubernetes_conn_ids: Sequence[str] = (),
        namespace: str | None = None,
        batch_queues: Sequence[BatchQueue] = (),
        airflow_conn_id: str | None = None,
        policy: Mapping[str, Any] | str | None = None,
        policy_variable: str | None = None,
        store_conn_id: str | None = None,
        wait_for_end: bool = True,
        parallelism: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_ids = (
            [kubernetes_conn_ids] if isinstance(kubernetes_conn_ids, str) else list(kubernetes_conn_ids)
        )
        self.namespace = namespace
        self.batch_queues = list(batch_queues)
        self.airflow_conn_id = airflow_conn_id
        self.policy = policy
        self.policy_variable = policy_variable
        self.store_conn_id = store_conn_id
        self.wait_for_end = wait_for_end
        self.parallelism = parallelism
        if isinstance(policy, (str, Mapping)) and not (isinstance(policy, str) and "{{" in policy):
            ResponsePolicy.from_config(policy)  # a bad policy fails at parse time, naming the key

    # -- configuration ---------------------------------------------------------------------------------
    def response_policy(self) -> ResponsePolicy:
        """The policy: the ``policy`` argument, else the Variable, else ``[gridaware] response_policy``, else defaults."""
        if self.policy is not None:
            return ResponsePolicy.from_config(self.policy)
        if self.policy_variable:
            from airflow.sdk import Variable

            return ResponsePolicy.from_config(Variable.get(self.policy_variable))
        from airflow.sdk.configuration import conf

        return ResponsePolicy.from_config(conf.get("gridaware", "response_policy", fallback=None))

    def actuators(self, policy: ResponsePolicy, dag_id: str | None) -> list[Any]:
        found: list[Any] = [
            KubernetesJobsActuator(c, policy, self.namespace, parallelism=self.parallelism)
            for c in self.kubernetes_conn_ids
        ]
        found += [BatchJobsActuator(q, policy) for q in self.batch_queues]
        if self.airflow_conn_id:
            found.append(AirflowDagsActuator(self.airflow_conn_id, policy, exclude=[dag_id] if dag_id else []))
        return found

    # -- the pass --------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        return self._pass(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        self.log.info("The events' end time came: passing again")
        return self._pass(context)

    def _pass(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gridaware.hooks.store import GridStoreHook
        from airflow_provider_gridaware.responder import respond
        from airflow_provider_gridaware.times import current_clock

        policy = self.response_policy()
        hook = GridStoreHook(self.store_conn_id)
        responses = hook.get_response_store()
        clock = current_clock()
        now = clock.now()
        events = self._events(hook, responses.open_holds(), now)
        dag = context.get("dag")
        outcome = respond(
            events=events,
            actuators=self.actuators(policy, getattr(dag, "dag_id", None)),
            store=responses,
            now=now,
            policy=policy,
            parallelism=self.parallelism,
        )
        # Each step is logged by the responder as it is recorded; the summary and the XCom say the rest.
        self.log.info("Grid-event response at %s: %s", now.isoformat(), outcome.summary())
        if outcome.failed:
            raise RuntimeError(
                f"{len(outcome.failed)} response step(s) failed (recorded; a retry applies only what is left): "
                + "; ".join(f"{f.get('step')} {f.get('target')}: {f.get('error')}" for f in outcome.failed)
            )
        if self.wait_for_end:
            self._defer_until_end(hook, now)
        return self._result(outcome)

    @staticmethod
    def _result(outcome: ResponseOutcome) -> dict[str, Any]:
        return outcome.to_dict()

    def _events(self, hook: Any, holds: Sequence[Any], now: datetime) -> list[GridEvent]:
        """The current events and the latest state of every event still holding work (ended ones included)."""
        store = hook.get_event_store()
        events = {(e.source, e.event_id): e for e in store.current(now=now)}
        for key in {(h.event_source, h.event_id) for h in holds} - set(events):
            latest = store.latest(*key)
            if latest is not None:
                events[key] = latest
        return list(events.values())

    def _defer_until_end(self, hook: Any, now: datetime) -> None:
        """Defer until the earliest end of the events holding work (so an end without a message is seen).

        The trigger ends the task by itself once no hold is open (another run resumed everything).
        """
        from airflow_provider_gridaware.times import UTC, current_clock
        from airflow_provider_gridaware.triggers.grid_response import GridResponseEndTrigger

        holds = hook.get_response_store().open_holds()
        if not holds:
            return
        store = hook.get_event_store()
        ends = []
        for key in {(h.event_source, h.event_id) for h in holds}:
            latest = store.latest(*key)
            if latest is not None and latest.end is not None:
                ends.append(latest.end)
        if not ends:
            self.log.info("Work is held by events with no end time: their completion or cancellation resumes it")
            return
        wall_wait = current_clock().wall_seconds((min(ends) - now).total_seconds())
        moment = datetime.now(UTC) + timedelta(seconds=max(MIN_DEFER_SECONDS, wall_wait))
        self.log.info("%d hold(s) open: waiting until %s (the earliest end), then passing again", len(holds), moment)
        self.defer(
            trigger=GridResponseEndTrigger(moment, store_conn_id=self.store_conn_id), method_name="execute_complete"
        )
