"""Kubernetes dispatch: run a Job in the cleanest cluster's grid window, and pause/resume Jobs on grid events.

:class:`GridAwareKubernetesJobOperator` is the official ``KubernetesJobOperator`` (same arguments: image,
cmds, arguments, env_vars, container_resources, job_template_file, full_job_spec ...) with a grid-aware
life cycle:

1. plan once on the worker to choose the cluster, and create the Job there **suspended** at once, so an
   invalid spec or a quota problem fails the task now, not hours later when the window opens;
2. defer with :class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger` (re-plans on new
   forecasts, holds no worker slot);
3. when the window opens: move the Job if the released plan chose another cluster, unsuspend it, and wait
   for it with :class:`~airflow_provider_gridaware.triggers.kubernetes.KubernetesJobCompletionTrigger`.

The Job's identity lives in the task state store, and the Job carries our labels and logical job id, so a
retried (or crashed and restarted) task reattaches to it instead of creating a second one. A move writes
the next *generation* of the Job, and only the copy the task state store records is ever released, after
every other copy in every cluster has been deleted (see docs/kubernetes.md, "Moves survive crashes").

:class:`KubernetesSuspendJobsOperator` / :class:`KubernetesResumeJobsOperator` pause and resume the Jobs we
manage, selected by label, across clusters (for demand-response events).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseOperator
from pydantic import Field

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_GENERATION,
    ANNOTATION_JOB_ID,
    LABEL_DAG_ID,
    LABEL_PRIORITY_CLASS,
    LABEL_RUN_ID,
    LABEL_TASK_ID,
    LABEL_ZONE,
    CheckpointContract,
    DispatchTarget,
    job_annotations,
    job_labels,
    label_value,
    targets_by_zone,
)
from airflow_provider_gridaware.optional_providers import requires_extra
from airflow_provider_gridaware.window import (
    Duration,
    GridWindowMixin,
    job_id_from_context,
    pop_window_kwargs,
)

with requires_extra("kubernetes", "GridAwareKubernetesJobOperator"):
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    from airflow_provider_gridaware.hooks.kubernetes import (
        ANNOTATION_SUSPENDED_BY,
        KUEUE_QUEUE_LABEL,
        GridKubernetesHook,
        JobPhase,
        JobRef,
        KubernetesDispatchError,
        earlier_chunks,
        job_phase,
    )

if TYPE_CHECKING:
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

#: The task state store key holding the Job's identity (renaming it breaks in-flight retries).
STATE_KEY = "gridaware_kubernetes_job"
OnKillAction = Literal["delete", "suspend", "keep"]


def job_generation(job: Mapping[str, Any]) -> int:
    """Which copy of a relocated Job this is (0 for a Job created before generations were recorded)."""
    value = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_GENERATION)
    try:
        return int(str(value))
    except ValueError:
        return 0


def job_released_marks(job: Mapping[str, Any]) -> bool:
    """Whether the Job itself shows it was released (paused by a grid event since, or handed to Kueue)."""
    meta = job.get("metadata") or {}
    return ANNOTATION_SUSPENDED_BY in (meta.get("annotations") or {}) or KUEUE_QUEUE_LABEL in (meta.get("labels") or {})


def _live_copy_rank(copy: tuple[JobRef, Mapping[str, Any]]) -> tuple[bool, int, str, str]:
    """Orders copies found by label: a started copy first, then the newest generation (the move's target)."""
    ref, job = copy
    started = job_phase(job) is not JobPhase.SUSPENDED or job_released_marks(job)
    created_at = str((job.get("metadata") or {}).get("creationTimestamp") or "")
    return started, job_generation(job), created_at, ref.name


def _same_job(a: JobRef, b: JobRef) -> bool:
    return (a.conn_id, a.namespace, a.name) == (b.conn_id, b.namespace, b.name)


class KubernetesCluster(DispatchTarget):
    """A Kubernetes cluster the work may run in, and the grid zone it draws power from.

    :param zone: the grid zone, in the signal connection's naming.
    :param conn_id: the Airflow ``kubernetes`` connection of the cluster.
    :param namespace: where to create the Job (default: the operator's ``namespace``, the connection's, or
        ``default``).
    :param queue_name: a Kueue ``LocalQueue``: the Job is then handed to Kueue at the window (see docs).
    :param penalty: what running there costs, in the planner's normalised units (egress, queue depth).
    """

    conn_id: str = Field(min_length=1)
    namespace: str | None = None
    queue_name: str | None = None


class GridAwareKubernetesJobOperator(GridWindowMixin, KubernetesJobOperator):
    """Run a Kubernetes Job in the cleanest (or cheapest) grid window among several clusters.

    Takes every ``KubernetesJobOperator`` argument for the Job itself, plus:

    :param clusters: candidate clusters, home first (its zone is the "start now here" counterfactual).
    :param duration: expected run time of the Job, or ``"auto"``: estimated from the Job's own run times
        (Kubernetes' start to completion, summed over chunks) recorded when this task succeeded before.
    :param deadline: when the Job must be finished: a datetime/ISO string (templated) or a timedelta from the
        DAG run's start.
    :param conn_id: the carbon signal connection read for every cluster's zone (or give ``sources``).
    :param earliest_start: not before this (templated datetime/ISO string, or timedelta from the run's start).
    :param checkpoint_path: where the workload checkpoints (templated); ``None``: no checkpoint is promised.
    :param grace_period_seconds: SIGTERM-to-SIGKILL time for the pods (``terminationGracePeriodSeconds``),
        i.e. the time the workload has to checkpoint when the Job is suspended.
    :param on_kill_action: when the task is killed: ``delete`` the Job (default), ``suspend`` it, or ``keep`` it.
    :param job_poll_interval: seconds between Job status reads while waiting for completion.
    :param kwargs: any other :class:`~airflow_provider_gridaware.window.GridWindowArgs` field
        (``sources``, ``price_conn_id``, ``priority_class``, ``min_gain``, ``zone_penalty`` (added to the
        clusters' penalties), ``interruptible``, ``refresh_interval`` ...).
    """

    template_fields: Sequence[str] = (
        *KubernetesJobOperator.template_fields,
        "deadline",
        "earliest_start",
        "conn_id",
        "checkpoint_path",
    )
    ui_color = "#95d5b2"

    def __init__(
        self,
        *,
        clusters: Sequence[KubernetesCluster | Mapping[str, Any]],
        duration: Duration,
        deadline: datetime | timedelta | str,
        conn_id: str | None = None,
        earliest_start: datetime | timedelta | str | None = None,
        checkpoint_path: str | None = None,
        grace_period_seconds: int = 120,
        on_kill_action: OnKillAction = "delete",
        job_poll_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        if "zones" in kwargs:
            raise ValueError("GridAwareKubernetesJobOperator: zones come from clusters; do not pass zones")
        if on_kill_action not in ("delete", "suspend", "keep"):
            raise ValueError(f"on_kill_action must be delete, suspend or keep, not {on_kill_action!r}")
        grid_window_kwargs = pop_window_kwargs(kwargs)
        self.clusters = [
            c if isinstance(c, KubernetesCluster) else KubernetesCluster.model_validate(c) for c in clusters
        ]
        targets_by_zone(self.clusters, what="GridAwareKubernetesJobOperator")  # one cluster per zone
        self.clusters_by_zone = {c.zone: c for c in self.clusters}
        home = self.clusters[0]
        kwargs.setdefault("kubernetes_conn_id", home.conn_id)
        # The Job is created suspended and waited for by our own triggers; the parent's pod watching,
        # log fetching and XCom sidecar need pods that do not exist yet.
        ignored = {
            k: kwargs.pop(k) for k in ("suspend", "wait_until_job_complete", "deferrable", "get_logs") if k in kwargs
        }
        super().__init__(
            suspend=True,
            wait_until_job_complete=False,
            deferrable=True,
            get_logs=False,
            termination_grace_period=grace_period_seconds,
            job_poll_interval=job_poll_interval,
            **kwargs,
        )
        # KubernetesPodOperator reads do_xcom_push as "add an XCom sidecar"; we return a result dict instead.
        self.do_xcom_push = True
        self.checkpoint_path = checkpoint_path
        self.grace_period_seconds = grace_period_seconds
        self.job_on_kill_action: OnKillAction = on_kill_action
        self._job_ref: JobRef | None = None
        if ignored:
            self.log.warning("%s: ignoring %s (fixed by the grid-aware life cycle)", self.task_id, ignored)
        self.set_dispatch_window(
            targets=self.clusters,
            duration=duration,
            deadline=deadline,
            conn_id=conn_id,
            earliest_start=earliest_start,
            grid_window_kwargs=grid_window_kwargs,
        )

    # -- clusters and state ------------------------------------------------------------------------------
    def cluster_hook(self, conn_id: str) -> GridKubernetesHook:
        """One hook per cluster connection, built on first use."""
        return self._cluster_hooks.setdefault(conn_id, GridKubernetesHook(conn_id=conn_id))

    @cached_property
    def _cluster_hooks(self) -> dict[str, GridKubernetesHook]:
        return {}

    def _cluster_of(self, ref: JobRef) -> KubernetesCluster:
        cluster = self.clusters_by_zone.get(ref.zone)
        if cluster is None or cluster.conn_id != ref.conn_id:
            # The DAG changed its clusters since the Job was created: keep addressing the Job where it is.
            return KubernetesCluster(zone=ref.zone, conn_id=ref.conn_id, namespace=ref.namespace)
        return cluster

    @staticmethod
    def _store(context: Context) -> Any:
        return context.get("task_state_store")

    def _load_state(self, context: Context) -> dict[str, Any] | None:
        store = self._store(context)
        if store is None:
            return None
        stored = store.get(STATE_KEY)
        return dict(stored) if isinstance(stored, Mapping) else None

    def _save_state(self, context: Context, ref: JobRef, **facts: Any) -> None:
        self._job_ref = ref
        store = self._store(context)
        if store is None:
            self.log.warning("task_state_store not available: a retry will find %s by its labels instead", ref)
            return
        store.set(STATE_KEY, {**ref.model_dump(), **facts})

    # -- execute: plan, create suspended, wait for the window ---------------------------------------------
    def execute(self, context: Context) -> Any:
        found = self._find_existing(context)
        if found is not None:
            ref, job, state = found
            phase = job_phase(job)
            self.log.info("reattaching to %s (%s) instead of creating another Job", ref, phase.value)
            self._sweep(context, ref, before_release=False)  # strays of a move a dead worker left behind
            if phase is JobPhase.COMPLETE:
                return self._result(context, ref, state.get("decision"), job.get("status") or {}, earlier_chunks(job))
            if phase is JobPhase.RUNNING or self._released(job, state):
                return self._wait_for_released(context, ref, job, state, state.get("decision"))
            return self.defer_until_window(context, method_name="execute_in_window")

        first = self.decide_first(context)
        plan = first.decision.plan
        cluster = self.clusters_by_zone[plan.zone]
        self.log.info("planned: %s -> cluster %s (zone %s)", first.decision.reason, cluster.conn_id, cluster.zone)
        decision = {"status": "planned", "plan": plan.to_dict(), "problems": first.problems}
        ref = self._create_suspended(context, cluster, decision, generation=1)
        self._save_state(context, ref, released=False, decision=decision, generation=1)
        released = self.defer_until_window(context, method_name="execute_in_window", first=first)
        return self.execute_in_window(context, released)

    def _released(self, job: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
        """Whether the window already opened for this Job (then a suspension is a grid event's, not ours)."""
        return job_released_marks(job) or bool(state.get("released"))

    def _find_existing(self, context: Context) -> tuple[JobRef, dict[str, Any], dict[str, Any]] | None:
        """A Job of this task instance that can be reused: from the task state store, else by label.

        The label search covers a worker that died between creating the Job and persisting its identity;
        among several copies it takes a started one, else the newest generation. A failed Job is not
        reused (the retry starts afresh).
        """
        state = self._load_state(context) or {}
        if state:
            try:
                ref = JobRef.model_validate({k: state.get(k) for k in ("conn_id", "namespace", "name", "zone")})
            except ValueError:
                self.log.warning("ignoring a malformed Job identity in the task state store: %s", state)
                ref = None
            if ref is not None:
                job = self.cluster_hook(ref.conn_id).read_job(ref.namespace, ref.name)
                if job is not None and job_phase(job) is not JobPhase.FAILED:
                    self._job_ref = ref
                    return ref, job, state
                self.log.info("%s from the task state store is %s", ref, "failed" if job else "gone")
        alive = [(ref, job) for ref, job in self._copies(context)[0] if job_phase(job) is not JobPhase.FAILED]
        if not alive:
            return None
        ref, job = max(alive, key=_live_copy_rank)
        self.log.info(
            "found %s by its labels (%d unfinished cop%s)", ref, len(alive), "y" if len(alive) == 1 else "ies"
        )
        # A copy found by label carries its own release marks; the stored flag was about another copy.
        state = {**state, "released": False, "generation": job_generation(job)}
        self._save_state(context, ref, released=False, decision=state.get("decision"), generation=state["generation"])
        return ref, job, state

    def _copies(self, context: Context) -> tuple[list[tuple[JobRef, dict[str, Any]]], list[str]]:
        """Every Job of this task instance (any phase, any copy) in the clusters, and the clusters that could
        not be searched."""
        job_id = job_id_from_context(context)
        ti = context["ti"]
        selector = {
            LABEL_DAG_ID: label_value(ti.dag_id),
            LABEL_TASK_ID: label_value(ti.task_id),
            LABEL_RUN_ID: label_value(ti.run_id),
        }
        clusters = list(self.clusters)
        if self._job_ref is not None and all(c.conn_id != self._job_ref.conn_id for c in clusters):
            clusters.append(self._cluster_of(self._job_ref))  # the DAG dropped the cluster the Job is in
        copies: list[tuple[JobRef, dict[str, Any]]] = []
        unreachable: list[str] = []
        for cluster in clusters:
            try:
                jobs = self.cluster_hook(cluster.conn_id).list_jobs(cluster.namespace, selector)
            except KubernetesDispatchError as exc:
                self.log.warning("could not look for this task's Jobs in %s: %s", cluster.conn_id, exc)
                unreachable.append(cluster.conn_id)
                continue
            for job in jobs:
                meta = job.get("metadata") or {}
                if (meta.get("annotations") or {}).get(ANNOTATION_JOB_ID) == job_id:
                    ref = JobRef(
                        conn_id=cluster.conn_id, namespace=meta["namespace"], name=meta["name"], zone=cluster.zone
                    )
                    copies.append((ref, job))
        return copies, unreachable

    def _sweep(self, context: Context, keep: JobRef, *, before_release: bool) -> None:
        """Delete every other unreleased copy of this task instance's Job, in every cluster.

        Before a release a copy that cannot be deleted, or another copy that already runs, stops the release
        with an error naming it (never two running); when reattaching, the sweep is best effort. Finished
        copies are left alone (a failed earlier try's Job stays for inspection).
        """
        copies, unreachable = self._copies(context)
        problems: list[str] = []
        for ref, job in copies:
            phase = job_phase(job)
            if _same_job(ref, keep) or phase.finished:
                continue
            if phase is JobPhase.RUNNING or job_released_marks(job):
                problems.append(f"{ref} was released too ({phase.value}) but is not the Job this task recorded")
                continue
            try:
                self.cluster_hook(ref.conn_id).delete_job(ref.namespace, ref.name)
            except KubernetesDispatchError as exc:
                problems.append(f"the stray copy {ref} could not be deleted: {exc}")
                continue
            self.log.warning("deleted %s: a stray copy (generation %d) of %s", ref, job_generation(job), keep)
        if unreachable:
            self.log.warning(
                "could not look for stray copies in %s: a copy there stays suspended (only %s is ever released)",
                ", ".join(unreachable),
                keep,
            )
        if problems and before_release:
            raise KubernetesDispatchError(f"not releasing {keep}: " + "; ".join(problems))
        for problem in problems:
            self.log.warning("%s", problem)

    def _check_fence(self, context: Context, ref: JobRef, generation: int) -> None:
        """Release only the copy this attempt recorded: a worker whose move was overtaken stops here."""
        state = self._load_state(context)
        if state is not None:
            # A state written before generations were recorded has none: its Job then has none either (0).
            recorded = (
                state.get("conn_id"),
                state.get("namespace"),
                state.get("name"),
                int(state.get("generation") or 0),
            )
            if recorded != (ref.conn_id, ref.namespace, ref.name, generation):
                raise KubernetesDispatchError(
                    f"not releasing {ref} (generation {generation}): the task state store now records "
                    f"{recorded}; another attempt owns the Job"
                )
        job = self.cluster_hook(ref.conn_id).read_job(ref.namespace, ref.name)
        if job is None or job_generation(job) != generation:
            found = "gone" if job is None else f"generation {job_generation(job)}"
            raise KubernetesDispatchError(f"not releasing {ref}: expected generation {generation}, found {found}")

    # -- building and creating the Job -------------------------------------------------------------------
    @contextlib.contextmanager
    def _building_for(self, cluster: KubernetesCluster) -> Iterator[None]:
        """Point the parent's builder at ``cluster`` (its hook resolves the namespace) without side effects."""
        saved = (self.kubernetes_conn_id, self.namespace, self.env_vars, self.do_xcom_push)
        self.kubernetes_conn_id = cluster.conn_id
        self.namespace = cluster.namespace or saved[1]
        self.do_xcom_push = False  # no XCom sidecar: see __init__
        self.__dict__.pop("hook", None)
        try:
            yield
        finally:
            self.kubernetes_conn_id, self.namespace, self.env_vars, self.do_xcom_push = saved
            self.__dict__.pop("hook", None)

    def build_grid_job(
        self, context: Context, cluster: KubernetesCluster, decision: Mapping[str, Any], generation: int = 1
    ) -> k8s.V1Job:
        """The Job for ``cluster``: the parent's Job, suspended, labelled, with the checkpoint contract.

        ``generation`` numbers the copies of one logical Job: each move between clusters writes the next.
        """
        from kubernetes.client import models as k8s

        with self._building_for(cluster):
            job = self.build_job_request_obj(context)
        ti = context["ti"]
        job_id = job_id_from_context(context)
        attempt = int(getattr(ti, "try_number", 1) or 1)
        args = self.window_args()
        labels = job_labels(
            priority_class=str(args.priority_class),
            zone=cluster.zone,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
        )
        annotations = job_annotations(
            job_id=job_id, run_id=ti.run_id, attempt=attempt, decision=decision, generation=generation
        )
        job.spec.suspend = True
        pod = job.spec.template
        for meta in (job.metadata, pod.metadata):
            meta.labels = {**(meta.labels or {}), **labels}
            # Kueue would admit (and unsuspend) the Job at once: the queue label is added at the window.
            meta.labels.pop(KUEUE_QUEUE_LABEL, None)
            meta.annotations = {**(meta.annotations or {}), **annotations}
        contract = CheckpointContract(path=self.checkpoint_path, grace_period_seconds=self.grace_period_seconds)
        env = contract.env(job_id=job_id, attempt=attempt, zone=cluster.zone)
        pod.spec.termination_grace_period_seconds = self.grace_period_seconds
        for container in pod.spec.containers or []:
            kept = [e for e in container.env or [] if e.name not in env]
            container.env = kept + [k8s.V1EnvVar(name=k, value=v) for k, v in env.items()]
        return job

    def _create_suspended(
        self, context: Context, cluster: KubernetesCluster, decision: Mapping[str, Any], generation: int
    ) -> JobRef:
        hook = self.cluster_hook(cluster.conn_id)
        try:
            job = self.build_grid_job(context, cluster, decision, generation)
            body = hook.api_client.sanitize_for_serialization(job)
        except KubernetesDispatchError:
            raise
        except Exception as exc:  # the parent's builder reaches the connection (namespace, in-cluster check)
            raise KubernetesDispatchError(
                f"building the Job for cluster {cluster.conn_id!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        created = hook.create_job_from_dict(body)
        meta = created.get("metadata") or body["metadata"]
        ref = JobRef(conn_id=cluster.conn_id, namespace=meta["namespace"], name=meta["name"], zone=cluster.zone)
        self.log.info("created %s (generation %d) suspended, waiting for its grid window", ref, generation)
        return ref

    # -- the window opens: move if needed, release, wait for completion ----------------------------------
    def execute_in_window(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Called on a worker when the grid window opens: the event is the trigger's decision."""
        if not event or "plan" not in event:
            raise KubernetesDispatchError(f"grid window trigger returned an unexpected event: {event!r}")
        zone = event["plan"]["zone"]
        self.log_window_open(event, zone)
        found = self._find_existing(context)
        if found is None:
            raise KubernetesDispatchError(
                "the suspended Job of this task is gone (deleted while waiting for its window?); "
                "clear the task to create it again"
            )
        ref, job, state = found
        phase = job_phase(job)
        if phase is JobPhase.COMPLETE:
            return self._result(
                context, ref, state.get("decision") or event, job.get("status") or {}, earlier_chunks(job)
            )
        if phase is JobPhase.RUNNING or self._released(job, state):
            self._sweep(context, ref, before_release=False)
            return self._wait_for_released(context, ref, job, state, state.get("decision") or event)
        generation = int(state.get("generation") or job_generation(job))
        target = self.clusters_by_zone.get(zone)
        if target is not None and target.conn_id != ref.conn_id:
            ref, generation = self._move(context, ref, generation, target, event)
        # Every step before the release can be interrupted and redone: only the recorded copy is released,
        # and only once no other copy exists anywhere.
        self._sweep(context, ref, before_release=True)
        self._check_fence(context, ref, generation)
        self._release(ref)
        self._save_state(context, ref, released=True, decision=event, generation=generation)
        return self._defer_for_completion(ref, event)

    def _move(
        self, context: Context, old: JobRef, generation: int, target: KubernetesCluster, decision: Mapping[str, Any]
    ) -> tuple[JobRef, int]:
        """Relocate the suspended Job to ``target``: create the next generation there, record it, delete the old.

        Recording the new copy in the task state store is the commit point: a worker dying before it leaves
        the old copy live and the new one a stray, after it the reverse; the sweep before the release deletes
        the stray either way. On an API failure exactly one copy stays recorded.
        """
        self.log.info("the released plan chose zone %s: moving %s to cluster %s", target.zone, old, target.conn_id)
        try:
            new = self._create_suspended(context, target, decision, generation + 1)
        except Exception as exc:
            self.log.warning("could not create the Job in %s (%s): releasing %s where it is", target.conn_id, exc, old)
            return old, generation
        self._save_state(context, new, released=False, decision=dict(decision), generation=generation + 1)
        try:
            self.cluster_hook(old.conn_id).delete_job(old.namespace, old.name)
        except Exception as exc:
            self.log.warning("could not delete %s (%s): removing the copy %s and releasing the original", old, exc, new)
            self._save_state(context, old, released=False, decision=dict(decision), generation=generation)
            try:
                self.cluster_hook(new.conn_id).delete_job(new.namespace, new.name)
            except Exception as undo:
                raise KubernetesDispatchError(
                    f"moving the Job failed half-way: {old} could not be deleted ({exc}) and its copy {new} "
                    f"could not be removed ({undo}); both are suspended and neither is released (a retry "
                    "releases only the recorded one after deleting the other), or delete one by hand"
                ) from undo
            return old, generation
        self.log.info("moved: %s (generation %d) replaces %s", new, generation + 1, old)
        return new, generation + 1

    def _release(self, ref: JobRef) -> None:
        cluster = self._cluster_of(ref)
        hook = self.cluster_hook(ref.conn_id)
        if cluster.queue_name:
            # Kueue owns spec.suspend of the Jobs it queues: hand the Job over, Kueue unsuspends it on admission.
            hook.patch_job(ref.namespace, ref.name, {"metadata": {"labels": {KUEUE_QUEUE_LABEL: cluster.queue_name}}})
            self.log.info("handed %s to Kueue queue %s", ref, cluster.queue_name)
        else:
            hook.patch_job(ref.namespace, ref.name, {"spec": {"suspend": False}})
            self.log.info("unsuspended %s", ref)

    def _wait_for_released(
        self,
        context: Context,
        ref: JobRef,
        job: Mapping[str, Any],
        state: Mapping[str, Any],
        decision: Mapping[str, Any] | None,
    ) -> None:
        """Wait for a Job already released; record the release if the worker died before it could."""
        if not state.get("released"):
            generation = int(state.get("generation") or job_generation(job))
            self._save_state(context, ref, released=True, decision=decision, generation=generation)
        return self._defer_for_completion(ref, decision)

    def _defer_for_completion(self, ref: JobRef, decision: Mapping[str, Any] | None) -> None:
        from airflow_provider_gridaware.triggers.kubernetes import JobWatchRequest, KubernetesJobCompletionTrigger
        from airflow_provider_gridaware.triggers.resume_guard import resume_not_before

        self._job_ref = ref
        request = JobWatchRequest(
            conn_id=ref.conn_id,
            namespace=ref.namespace,
            name=ref.name,
            zone=ref.zone,
            decision=dict(decision) if decision else None,
            poll_seconds=self.job_poll_interval,
            not_before=resume_not_before(),
        )
        self.defer(trigger=KubernetesJobCompletionTrigger(request), method_name="execute_complete")

    def execute_complete(self, context: Context, event: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The Job finished (or vanished): the result for the carbon ledger, or a clear error."""
        ref = JobRef(conn_id=event["conn_id"], namespace=event["namespace"], name=event["name"], zone=event["zone"])
        self._job_ref = ref
        status = event.get("status")
        if status == "failed":
            self._record_ledger(
                context,
                ref,
                event.get("decision"),
                {"startTime": event.get("start_time"), "completionTime": event.get("completion_time")},
                _earlier(event.get("earlier_chunks")),
                state="failed",
            )
            raise KubernetesDispatchError(f"{ref} failed: {event.get('message') or 'no reason given'}")
        if status != "complete":
            raise KubernetesDispatchError(f"{ref}: {status}: {event.get('message')}")
        self.log.info("%s completed", ref)
        return self._result(
            context,
            ref,
            event.get("decision"),
            {"startTime": event.get("start_time"), "completionTime": event.get("completion_time")},
            _earlier(event.get("earlier_chunks")),
        )

    def _result(
        self,
        context: Context,
        ref: JobRef,
        decision: Mapping[str, Any] | None,
        status: Mapping[str, Any],
        earlier: tuple[float, int] = (0.0, 0),
    ) -> dict[str, Any]:
        """The completed Job's result (and its run time recorded for ``duration="auto"``)."""
        self._record_run_time(context, ref, status, earlier)
        self._record_ledger(context, ref, decision, status, earlier, state="success")
        return {
            "job_id": job_id_from_context(context),
            "status": "complete",
            "zone": ref.zone,
            "cluster": ref.conn_id,
            "namespace": ref.namespace,
            "job_name": ref.name,
            "start_time": status.get("startTime"),
            "end_time": status.get("completionTime"),
            "decision": dict(decision) if decision else None,
            "counterfactual": (decision or {}).get("counterfactual"),
        }

    def _record_run_time(
        self, context: Context, ref: JobRef, status: Mapping[str, Any], earlier: tuple[float, int]
    ) -> None:
        """The Job's own run time, from Kubernetes' times (not the grid-window wait): its last chunk
        (``startTime`` to ``completionTime``) plus the chunks before grid-event suspensions."""
        from airflow_provider_gridaware.runtime_history import record_task_run
        from airflow_provider_gridaware.times import parse_time

        if not status.get("startTime") or not status.get("completionTime"):
            self.log.warning("%s has no start or completion time: its run time is not recorded", ref)
            return
        started = parse_time(status["startTime"], what="Job startTime")
        ended = parse_time(status["completionTime"], what="Job completionTime")
        earlier_seconds, earlier_count = earlier
        record_task_run(
            context,
            started_at=started - timedelta(seconds=earlier_seconds),  # the work began at least this long before
            ended_at=ended,
            wall_seconds=earlier_seconds + (ended - started).total_seconds(),
            kind="kubernetes_job",
            chunks=earlier_count + 1,
            zone=ref.zone,
            logger=self.log,
        )

    def _record_ledger(
        self,
        context: Context,
        ref: JobRef,
        decision: Mapping[str, Any] | None,
        status: Mapping[str, Any],
        earlier: tuple[float, int],
        *,
        state: str,
    ) -> None:
        """The try's carbon-ledger record, over the Job's own run (its chunks before a suspension included)."""
        from airflow_provider_gridaware.ledger_writer import record_try, spec_of
        from airflow_provider_gridaware.times import clock_time_of, current_clock, parse_time

        spec = spec_of(self, context, "kubernetes")
        if spec is None:
            return
        try:
            started = parse_time(status["startTime"], what="Job startTime")
            ended = parse_time(status["completionTime"], what="Job completionTime")
        except (KeyError, TypeError, ValueError):
            # A Job that failed before running has no times: its try drew (next to) nothing.
            started = ended = current_clock().now()
            self.log.info("%s has no start or completion time: ledger record with an empty run", ref)
        else:
            started, ended = clock_time_of(started - timedelta(seconds=earlier[0])), clock_time_of(ended)
        record_try(
            context,
            spec,
            state=state,
            zone=ref.zone,
            started_at=started,
            ended_at=ended,
            released=decision,
            placement=f"{ref.conn_id}/{ref.namespace}",
            logger=self.log,
        )

    def on_kill(self) -> None:
        ref = self._job_ref
        if ref is None or self.job_on_kill_action == "keep":
            self.log.info("on_kill: %s kept", ref or "no Job")
            return
        hook = self.cluster_hook(ref.conn_id)
        if self.job_on_kill_action == "suspend":
            hook.patch_job(ref.namespace, ref.name, {"spec": {"suspend": True}})
            self.log.info("on_kill: suspended %s", ref)
        else:
            hook.delete_job(ref.namespace, ref.name)
            self.log.info("on_kill: deleted %s", ref)


def _earlier(value: Any) -> tuple[float, int]:
    """``earlier_chunks`` of a completion event (absent from events of older triggers)."""
    try:
        seconds, count = value
        return float(seconds), int(count)
    except (TypeError, ValueError):
        return 0.0, 0


class _KubernetesJobsStateOperator(BaseOperator):
    """Shared by the suspend and resume operators: select our Jobs by label across clusters."""

    template_fields: Sequence[str] = (
        "conn_ids",
        "namespace",
        "priority_class",
        "target_dag_id",
        "zone",
        "selector",
        "reason",
    )
    suspend: bool

    def __init__(
        self,
        *,
        conn_ids: Sequence[str],
        namespace: str | None = None,
        priority_class: str | None = None,
        target_dag_id: str | None = None,
        zone: str | None = None,
        selector: Mapping[str, str] | str | None = None,
        reason: str = "grid event",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(conn_ids, str):
            conn_ids = [conn_ids]
        self.conn_ids = list(conn_ids)
        self.namespace = namespace
        self.priority_class = priority_class
        self.target_dag_id = target_dag_id
        self.zone = zone
        self.selector = selector
        self.reason = reason

    def full_selector(self) -> str:
        """Our managed-Jobs scope plus every filter given (priority class, DAG, zone, extra selector)."""
        from airflow_provider_gridaware.dispatch import label_selector

        terms = [] if self.selector is None else [label_selector(self.selector)]
        for key, value in (
            (LABEL_PRIORITY_CLASS, self.priority_class),
            (LABEL_DAG_ID, self.target_dag_id),
            (LABEL_ZONE, self.zone),
        ):
            if value:
                terms.append(f"{key}={label_value(value)}")
        return label_selector(",".join(terms))

    def execute(self, context: Context) -> list[dict[str, Any]]:
        selector = self.full_selector()
        verb = "suspending" if self.suspend else "resuming"
        self.log.info("%s Jobs matching %s in %s", verb, selector, ", ".join(self.conn_ids))
        changes: list[dict[str, Any]] = []
        failures: list[str] = []
        # Every reachable cluster is handled even when another one fails: a partial pause beats none.
        for conn_id in self.conn_ids:
            try:
                changes += GridKubernetesHook(conn_id=conn_id).set_suspended(
                    suspend=self.suspend, namespace=self.namespace, selector=selector, reason=self.reason
                )
            except KubernetesDispatchError as exc:
                self.log.error("%s", exc)
                failures.append(str(exc))
        changed = sum(c["action"] != "unchanged" for c in changes)
        self.log.info(
            "%d Job(s) %s, %d unchanged", changed, "suspended" if self.suspend else "resumed", len(changes) - changed
        )
        if failures:
            raise KubernetesDispatchError(f"{verb} Jobs failed in {len(failures)} cluster(s): " + " | ".join(failures))
        return changes


class KubernetesSuspendJobsOperator(_KubernetesJobsStateOperator):
    """Suspend the grid-aware Jobs matching a selection, in several clusters; returns what changed.

    Kubernetes deletes a suspended Job's pods: each container gets SIGTERM and its grace period to
    checkpoint (the checkpoint contract). Suspended Jobs are marked ``gridaware.io/suspended-by`` so
    :class:`KubernetesResumeJobsOperator` resumes exactly those. Idempotent; finished Jobs are left alone.

    :param conn_ids: Airflow ``kubernetes`` connections of the clusters.
    :param namespace: only this namespace (default: all namespaces).
    :param priority_class: only Jobs of this priority class (``flexible``, ``batch`` ...).
    :param target_dag_id: only Jobs created by this DAG.
    :param zone: only Jobs in this grid zone.
    :param selector: any further label selector (mapping or string); always scoped to ``gridaware.io/managed=true``.
    :param reason: recorded on each suspended Job and in the result.
    """

    suspend = True
    ui_color = "#f4a261"


class KubernetesResumeJobsOperator(_KubernetesJobsStateOperator):
    """Resume the Jobs that :class:`KubernetesSuspendJobsOperator` suspended (same selection arguments).

    Jobs suspended for another reason (still waiting for their grid window) are left alone.
    """

    suspend = False
    ui_color = "#2a9d8f"
