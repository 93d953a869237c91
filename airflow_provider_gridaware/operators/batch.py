"""Grid-aware AWS Batch: run in the cleanest region's queue when its window opens; pause and resume by tag.

- :class:`GridAwareBatchOperator` waits (deferred) for the grid window across candidate queues in several
  regions, submits to the released zone's queue, and waits (deferred) for the logical job to finish,
  following it across pauses. A retry reattaches to the stored job instead of submitting twice.
- :class:`PauseBatchJobsOperator` / :class:`ResumeBatchJobsOperator` terminate and resubmit the managed
  jobs that match a tag selection (priority class, DAG, zone), for grid events.

Composed from the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.batch_client.BatchClientHook`
rather than subclassing ``BatchOperator``: that operator is bound to one queue, one region and one hook,
and its ``execute`` submits at once; here the queue, region and connection are chosen in the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gridaware.dispatch import (
    LABEL_DAG_ID,
    LABEL_PRIORITY_CLASS,
    LABEL_ZONE,
    CheckpointContract,
    job_annotations,
    job_labels,
    label_value,
    targets_by_zone,
)
from airflow_provider_gridaware.links.grid_decision import GridDecisionLink
from airflow_provider_gridaware.optional_providers import requires_extra
from airflow_provider_gridaware.window import (
    Duration,
    GridWindowMixin,
    job_id_from_context,
    pop_window_kwargs,
)

with requires_extra("aws", "GridAwareBatchOperator"):
    from airflow.providers.amazon.aws.links.batch import BatchJobDetailsLink
    from airflow.providers.amazon.aws.utils import trim_none_values

    from airflow_provider_gridaware.hooks.batch import (
        ACTIVE_STATES,
        FAILED,
        SUCCEEDED,
        BatchDispatchError,
        BatchQueue,
        GridAwareBatchHook,
        is_paused,
        job_attempt,
        run_time,
    )

if TYPE_CHECKING:
    from airflow.sdk import Context

# task_state_store key; renaming it breaks reattachment of tasks in flight.
STATE_KEY = "gridaware_batch_job"


def _queues(queues: Sequence[BatchQueue | Mapping[str, Any]], *, what: str) -> list[BatchQueue]:
    validated = [q if isinstance(q, BatchQueue) else BatchQueue.model_validate(q) for q in queues]
    targets_by_zone(validated, what=what)
    return validated


class _QueueHooks:
    """One hook per (connection, region), built on first use, never at DAG parse time."""

    def __init__(self) -> None:
        self._hooks: dict[tuple[str | None, str], GridAwareBatchHook] = {}

    def hook(self, queue: BatchQueue) -> GridAwareBatchHook:
        key = (queue.aws_conn_id, queue.region_name)
        if key not in self._hooks:
            if queue.aws_conn_id:
                # The AWS hook falls back to boto3's default credentials for an unknown connection, which
                # would silently reach another account: insist on the connection that was named.
                from airflow.sdk import BaseHook

                try:
                    BaseHook.get_connection(queue.aws_conn_id)
                except Exception as exc:
                    raise BatchDispatchError(
                        f"AWS connection {queue.aws_conn_id!r} for {queue.where} is not available: {exc}"
                    ) from exc
            self._hooks[key] = GridAwareBatchHook(aws_conn_id=queue.aws_conn_id, region_name=queue.region_name)
        return self._hooks[key]


class GridAwareBatchOperator(GridWindowMixin, BaseOperator):
    """Run an AWS Batch job in the queue (region) and window with the cleanest or cheapest grid.

    Flow: check every candidate queue (exists, ENABLED and VALID); wait in the triggerer for the window
    (:class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger`); submit to the released
    zone's queue with grid-aware tags and the checkpoint contract's environment; store the AWS job id in
    ``task_state_store``; wait in the triggerer for the logical job
    (:class:`~airflow_provider_gridaware.triggers.batch.GridAwareBatchJobTrigger`), which follows it across
    pauses. Returns the decision, zone, region, queue and every AWS job id (for the carbon ledger).

    :param queues: candidate :class:`~airflow_provider_gridaware.hooks.batch.BatchQueue` (or dicts), one per
        zone, home zone first.
    :param job_name: the AWS Batch job name (templated).
    :param job_definition: the job definition name or ARN, the same in every region (templated).
    :param duration: expected run time of the job, or ``"auto"``: estimated from the AWS jobs' own run times
        (``startedAt`` to ``stoppedAt``, summed over pauses) recorded when this task succeeded before.
    :param deadline: when the job must be finished (datetime/ISO string, templated, or timedelta from the
        DAG run's start).
    :param conn_id: the carbon connection read for every queue's zone; ``sources`` for anything else.
    :param earliest_start: not before this (templated).
    :param container_overrides: ``containerOverrides`` for ``SubmitJob`` (templated); the checkpoint
        contract's variables are added to its ``environment``.
    :param parameters: ``parameters`` for ``SubmitJob`` (templated).
    :param tags: extra job tags (templated); the ``gridaware.io/`` tags are added and win.
    :param retry_strategy: ``retryStrategy`` for ``SubmitJob``.
    :param submit_job_timeout: ``attemptDurationSeconds`` for ``SubmitJob``.
    :param checkpoint_path: where the workload checkpoints (templated; ``s3://...``, a mounted EFS path);
        ``None``: no checkpoint is promised, a pause restarts the work from scratch.
    :param grace_period_seconds: told to the workload as its SIGTERM-to-SIGKILL time. On AWS Batch the real
        time is the ECS agent's ``ECS_CONTAINER_STOP_TIMEOUT`` (default 30 s): set the two alike.
    :param poll_interval: seconds between job status checks while waiting.
    :param kwargs: any other :class:`~airflow_provider_gridaware.window.GridWindowArgs` field
        (``sources``, ``price_conn_id``, ``carbon_weight``, ``price_weight``, ``priority_class``,
        ``zone_penalty`` (added to the queues' penalties, winning per zone), ``min_gain`` ...).
    """

    template_fields: Sequence[str] = (
        "job_name",
        "job_definition",
        "container_overrides",
        "parameters",
        "tags",
        "checkpoint_path",
        "deadline",
        "earliest_start",
        "conn_id",
    )
    template_fields_renderers = {"container_overrides": "json", "parameters": "json", "tags": "json"}
    operator_extra_links = (BatchJobDetailsLink(), GridDecisionLink())
    ui_color = "#c3dae0"

    def __init__(
        self,
        *,
        queues: Sequence[BatchQueue | Mapping[str, Any]],
        job_name: str,
        job_definition: str,
        duration: Duration,
        deadline: datetime | timedelta | str,
        conn_id: str | None = None,
        earliest_start: datetime | timedelta | str | None = None,
        container_overrides: dict[str, Any] | None = None,
        parameters: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        retry_strategy: dict[str, Any] | None = None,
        submit_job_timeout: int | None = None,
        checkpoint_path: str | None = None,
        grace_period_seconds: int = 120,
        poll_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        grid_window_kwargs = pop_window_kwargs(kwargs)
        super().__init__(**kwargs)
        self.queues = _queues(queues, what=f"{type(self).__name__} {self.task_id}")
        self.job_name = job_name
        self.job_definition = job_definition
        self.container_overrides = container_overrides or {}
        self.parameters = parameters or {}
        self.tags = tags or {}
        self.retry_strategy = retry_strategy
        self.submit_job_timeout = submit_job_timeout
        self.checkpoint_path = checkpoint_path
        self.grace_period_seconds = grace_period_seconds
        self.poll_interval = poll_interval
        self.set_dispatch_window(
            targets=self.queues,
            duration=duration,
            deadline=deadline,
            conn_id=conn_id,
            earliest_start=earliest_start,
            grid_window_kwargs=grid_window_kwargs,
        )
        self._hooks = _QueueHooks()
        self._running: tuple[BatchQueue, str] | None = None  # for on_kill

    # -- helpers ---------------------------------------------------------------------------------------

    def queue_for_zone(self, zone: str) -> BatchQueue:
        for queue in self.queues:
            if queue.zone == zone:
                return queue
        raise BatchDispatchError(f"the plan chose zone {zone!r}, which has no queue ({[q.zone for q in self.queues]})")

    def hook_for(self, queue: BatchQueue) -> GridAwareBatchHook:
        return self._hooks.hook(queue)

    @staticmethod
    def _load(context: Context) -> dict[str, Any] | None:
        store = context.get("task_state_store")
        record = store.get(STATE_KEY) if store is not None else None
        return dict(record) if isinstance(record, dict) else None

    def _save(self, context: Context, record: dict[str, Any]) -> None:
        store = context.get("task_state_store")
        if store is None:
            self.log.warning("task_state_store not available: a retry cannot reattach to AWS job %s", record["job_id"])
            return
        store.set(STATE_KEY, record)

    def check_queues(self) -> None:
        """Every candidate queue exists and takes jobs; one error naming every problem otherwise."""
        problems = []
        for queue in self.queues:
            try:
                self.hook_for(queue).check_queue(queue.job_queue)
            except BatchDispatchError as exc:
                problems.append(f"zone {queue.zone}: {exc}")
        if problems:
            raise BatchDispatchError("AWS Batch queues not usable: " + "; ".join(problems))

    # -- the task's steps -----------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        record = self._load(context)
        if record and record.get("job_id"):
            result = self.reattach(context, record)
            if result is not None:
                return result
        self.check_queues()
        released = self.defer_until_window(context, method_name="execute_in_window")
        return self.execute_in_window(context, released)

    def reattach(self, context: Context, record: dict[str, Any]) -> dict[str, Any] | None:
        """A retry with a stored job: wait for it if active or paused, return if it succeeded; ``None`` to
        submit again (it failed or is gone)."""
        queue = BatchQueue.model_validate(record["queue"])
        chain, job = self.hook_for(queue).follow(record["job_id"])
        record["job_ids"] = _merge(record.get("job_ids", []), chain)
        if job is None:
            self.log.warning("stored AWS Batch job %s not found in %s: submitting again", chain[-1], queue.where)
            return None
        record["job_id"] = job["jobId"]
        record["attempt"] = max(int(record.get("attempt", 1)), job_attempt(job))
        self._save(context, record)
        status = job["status"]
        if status == SUCCEEDED:
            self.log.info("AWS Batch job %s already succeeded: not submitting again", job["jobId"])
            self._record_run_time(context, queue, record)
            return self.result(record)
        if status in ACTIVE_STATES or is_paused(job):
            self.log.info("reattaching to AWS Batch job %s (%s) in %s", job["jobId"], status, queue.where)
            self.wait_for(queue, job["jobId"])  # defers: does not return
        self.log.warning(
            "AWS Batch job %s ended %s (%s): submitting a new attempt", job["jobId"], status, job.get("statusReason")
        )
        return None

    def execute_in_window(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """The window is open: submit to the released zone's queue, store the job, wait for it."""
        if not event or "plan" not in event:
            raise BatchDispatchError(f"grid window trigger returned an unexpected event: {event!r}")
        queue = self.queue_for_zone(event["plan"]["zone"])
        self.log_window_open(event, queue.zone)
        previous = self._load(context) or {}
        attempt = int(previous.get("attempt", 0)) + 1
        job_id = self.submit(context, queue, attempt)
        record = {
            "logical_job_id": job_id_from_context(context),
            "job_id": job_id,
            "job_ids": [*previous.get("job_ids", []), job_id],
            "attempt": attempt,
            "queue": queue.model_dump(mode="json"),
            "decision": event,
        }
        self._save(context, record)  # before deferring: a retry must find it
        self.wait_for(queue, job_id)

    def submit(self, context: Context, queue: BatchQueue, attempt: int) -> str:
        hook = self.hook_for(queue)
        logical = job_id_from_context(context)
        ti = context.get("ti")
        dag_id, task_id, run_id = (
            (ti.dag_id, ti.task_id, ti.run_id) if ti is not None else ("adhoc", self.task_id, "adhoc")
        )
        overrides = dict(self.container_overrides)
        env = {e["name"]: e["value"] for e in overrides.get("environment", [])}
        contract = CheckpointContract(path=self.checkpoint_path, grace_period_seconds=self.grace_period_seconds)
        env.update(contract.env(job_id=logical, attempt=attempt, zone=queue.zone))
        overrides["environment"] = [{"name": k, "value": v} for k, v in env.items()]
        tags = {
            **self.tags,
            **job_labels(
                priority_class=self.window_args().priority_class,
                zone=queue.zone,
                dag_id=dag_id,
                task_id=task_id,
                run_id=run_id,
            ),
            # AWS tag values may hold the exact run id; the plan is too long for a tag (it is in the XCom).
            **job_annotations(job_id=logical, run_id=run_id, attempt=attempt, decision=None),
        }
        request = trim_none_values(
            {
                "jobName": self.job_name,
                "jobQueue": queue.job_queue,
                "jobDefinition": self.job_definition,
                "containerOverrides": overrides,
                "parameters": self.parameters or None,
                "tags": tags,
                "retryStrategy": self.retry_strategy,
                "timeout": {"attemptDurationSeconds": self.submit_job_timeout} if self.submit_job_timeout else None,
            }
        )
        job_id = hook.submit(request)
        self._running = (queue, job_id)
        BatchJobDetailsLink.persist(
            context=context,
            operator=self,
            region_name=queue.region_name,
            aws_partition=hook.conn_partition,
            job_id=job_id,
        )
        return job_id

    def wait_for(self, queue: BatchQueue, job_id: str) -> None:
        from airflow_provider_gridaware.triggers.batch import BatchJobWait, GridAwareBatchJobTrigger
        from airflow_provider_gridaware.triggers.resume_guard import resume_not_before

        self._running = (queue, job_id)
        wait = BatchJobWait(
            job_id=job_id,
            region_name=queue.region_name,
            aws_conn_id=queue.aws_conn_id,
            poll_interval=self.poll_interval,
            not_before=resume_not_before(),
        )
        self.defer(
            trigger=GridAwareBatchJobTrigger(wait), method_name="execute_complete", timeout=self.execution_timeout
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """The logical job ended: its result for the ledger, or a clear failure."""
        if not event or "status" not in event:
            raise BatchDispatchError(f"AWS Batch job trigger returned an unexpected event: {event!r}")
        record = self._load(context) or {"job_ids": []}
        record["job_ids"] = _merge(record.get("job_ids", []), event.get("job_ids", []))
        record["job_id"] = event["job_id"]
        self._save(context, record)
        if event["status"] != "success":
            if "queue" in record:
                self._record_run_time(context, BatchQueue.model_validate(record["queue"]), record, state="failed")
            where = BatchQueue.model_validate(record["queue"]).where if "queue" in record else "AWS Batch"
            raise BatchDispatchError(
                f"{event.get('message')} ({where}; AWS jobs of this task: {', '.join(record['job_ids'])})"
            )
        self.log.info("AWS Batch job %s succeeded", event["job_id"])
        if "queue" in record:
            self._record_run_time(context, BatchQueue.model_validate(record["queue"]), record)
        return self.result(record)

    def _record_run_time(
        self, context: Context, queue: BatchQueue, record: Mapping[str, Any], *, state: str = "success"
    ) -> None:
        """The logical job's own run time from AWS's times (not the grid-window wait), summed over the AWS
        jobs a pause and resume made of it, recorded for ``duration="auto"`` (successes) and in the carbon
        ledger (every try that ran)."""
        from airflow_provider_gridaware.ledger_writer import record_try, spec_of
        from airflow_provider_gridaware.runtime_history import record_task_run
        from airflow_provider_gridaware.times import clock_time_of

        try:
            measured = run_time(self.hook_for(queue).describe(list(record.get("job_ids") or [record["job_id"]])))
        except BatchDispatchError as exc:
            self.log.warning("could not read the AWS Batch jobs' times (%s): run time not recorded", exc)
            return
        if measured is None:
            self.log.warning("AWS Batch jobs %s have no start and stop times: run time not recorded", record["job_ids"])
            return
        started, ended, seconds, chunks = measured
        spec = spec_of(self, context, "batch")
        if spec is not None:
            record_try(
                context,
                spec,
                state=state,
                zone=queue.zone,
                started_at=clock_time_of(ended - timedelta(seconds=seconds)),  # the chunks' own run, end-aligned
                ended_at=clock_time_of(ended),
                released=record.get("decision"),
                placement=f"{queue.region_name}/{queue.job_queue}",
                logger=self.log,
            )
        if state != "success":
            return
        record_task_run(
            context,
            started_at=started,
            ended_at=ended,
            wall_seconds=seconds,
            kind="batch_job",
            chunks=chunks,
            zone=queue.zone,
            logger=self.log,
        )

    @staticmethod
    def result(record: Mapping[str, Any]) -> dict[str, Any]:
        queue = record.get("queue") or {}
        decision = record.get("decision")
        return {
            "job_id": record.get("logical_job_id"),
            "status": "complete",
            "zone": queue.get("zone"),
            "region_name": queue.get("region_name"),
            "job_queue": queue.get("job_queue"),
            "aws_job_id": record.get("job_id"),
            "aws_job_ids": list(record.get("job_ids", [])),
            "decision": decision,
            "counterfactual": (decision or {}).get("counterfactual"),
        }

    def on_kill(self) -> None:
        if self._running is None:
            return
        queue, job_id = self._running
        # Not a pause reason: a killed task's job is over, not waiting to be resumed.
        self.hook_for(queue).terminate_job(job_id=job_id, reason="gridaware: task killed")
        self.log.info("terminated AWS Batch job %s in %s", job_id, queue.where)


def _merge(first: Sequence[str], second: Sequence[str]) -> list[str]:
    merged = list(first)
    merged += [i for i in second if i not in merged]
    return merged


class _ManagedJobsOperator(BaseOperator):
    """Shared by pause and resume: select our jobs by tag in several queues (regions)."""

    template_fields: Sequence[str] = ("priority_class", "target_dag_id", "zone", "selector", "reason")

    def __init__(
        self,
        *,
        queues: Sequence[BatchQueue | Mapping[str, Any]],
        priority_class: str | None = None,
        target_dag_id: str | None = None,
        zone: str | None = None,
        selector: Mapping[str, str] | None = None,
        reason: str = "grid event",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.queues = _queues(queues, what=f"{type(self).__name__} {self.task_id}")
        self.priority_class = priority_class
        self.target_dag_id = target_dag_id
        self.zone = zone
        self.selector = dict(selector or {})
        self.reason = reason
        self._hooks = _QueueHooks()

    def full_selector(self) -> dict[str, str]:
        """Tag equalities a job must have (``gridaware.io/managed=true`` is always required as well)."""
        selector = dict(self.selector)
        for key, value in (
            (LABEL_PRIORITY_CLASS, self.priority_class),
            (LABEL_DAG_ID, self.target_dag_id),
            (LABEL_ZONE, self.zone),
        ):
            if value:
                selector[key] = label_value(value)
        return selector

    def execute(self, context: Context) -> list[dict[str, Any]]:
        selector = self.full_selector()
        rows: list[dict[str, Any]] = []
        failures: list[str] = []
        # Every reachable queue is handled even when another fails: a partial pause beats none.
        for queue in self.queues:
            if self.zone and queue.zone != self.zone:
                continue
            try:
                rows += self.handle(queue, self._hooks.hook(queue), selector)
            except BatchDispatchError as exc:
                self.log.error("%s: %s", queue.where, exc)
                failures.append(f"{queue.where}: {exc}")
        self.log.info("%s", [(r["aws_job_id"], r["action"]) for r in rows])
        if failures:
            raise BatchDispatchError(f"{len(failures)} queue(s) failed: " + " | ".join(failures))
        return rows

    def handle(self, queue: BatchQueue, hook: GridAwareBatchHook, selector: dict[str, str]) -> list[dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def row(queue: BatchQueue, job: Mapping[str, Any], action: str, **extra: Any) -> dict[str, Any]:
        return {
            "job_id": GridAwareBatchHook.logical_job_id(job),
            "aws_job_id": job["jobId"],
            "zone": queue.zone,
            "region_name": queue.region_name,
            "job_queue": queue.job_queue,
            "action": action,
            **extra,
        }


class PauseBatchJobsOperator(_ManagedJobsOperator):
    """Pause grid-aware AWS Batch jobs for a grid event: terminate them with a recognisable reason
    (``gridaware: paused for <reason>``); the workload gets SIGTERM and checkpoints.

    Idempotent: a job already paused (and not yet resumed) is reported as ``already paused`` and left alone.

    :param queues: the :class:`~airflow_provider_gridaware.hooks.batch.BatchQueue` to look in (regions).
    :param priority_class: only jobs of this priority class (``flexible``, ``batch`` ...).
    :param target_dag_id: only jobs created by this DAG.
    :param zone: only jobs in this grid zone.
    :param selector: further exact tag matches; always scoped to ``gridaware.io/managed=true``.
    :param reason: the grid event, written into each job's status reason.
    :return: one row per job: logical and AWS job id, zone, region, queue, ``action``.
    """

    def handle(self, queue: BatchQueue, hook: GridAwareBatchHook, selector: dict[str, str]) -> list[dict[str, Any]]:
        from airflow_provider_gridaware.hooks.batch import PAUSE_REASON_PREFIX

        rows = []
        for job in hook.list_managed_jobs(queue.job_queue, statuses=(*ACTIVE_STATES, FAILED), selector=selector):
            if job["status"] == FAILED and (not is_paused(job) or hook.successor(job) is not None):
                continue  # a real failure, or a pause already resumed: nothing to pause
            action = hook.pause_job(job, reason=f"{PAUSE_REASON_PREFIX} for {self.reason}")
            rows.append(self.row(queue, job, action))
        return rows


class ResumeBatchJobsOperator(_ManagedJobsOperator):
    """Resume paused AWS Batch jobs: resubmit each from its own description as its next attempt.

    The successor keeps the logical job id tag, carries ``gridaware.io/previous-job-id`` and
    ``GRIDAWARE_ATTEMPT`` + 1; a waiting :class:`GridAwareBatchOperator` follows it. Idempotent: a job
    already resumed is reported as ``already resumed`` with its successor's id.

    :param queues: the :class:`~airflow_provider_gridaware.hooks.batch.BatchQueue` to look in (regions).
    :param priority_class: only jobs of this priority class.
    :param target_dag_id: only jobs created by this DAG.
    :param zone: only jobs in this grid zone.
    :param selector: further exact tag matches; always scoped to ``gridaware.io/managed=true``.
    :param reason: not used when resuming (shared with the pause operator's arguments).
    :return: one row per paused job: ids, zone, region, queue, ``action``, ``new_aws_job_id``.
    """

    def handle(self, queue: BatchQueue, hook: GridAwareBatchHook, selector: dict[str, str]) -> list[dict[str, Any]]:
        rows = []
        for job in hook.list_managed_jobs(queue.job_queue, statuses=(FAILED,), selector=selector):
            if is_paused(job):
                action, new_id = hook.resume_job(job)
                rows.append(self.row(queue, job, action, new_aws_job_id=new_id))
        return rows
