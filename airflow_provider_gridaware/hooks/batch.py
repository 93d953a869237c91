"""AWS Batch for grid-aware dispatch: queue checks, tagged submission, pause (terminate) and resume (resubmit).

AWS Batch cannot suspend a job, so a grid-aware *pause* terminates it with a reason carrying
:data:`PAUSE_REASON_PREFIX`, and *resume* resubmits it from its own description (same definition, queue,
overrides, tags) with the attempt raised by one and a tag naming the job it replaces. The logical job id
tag stays the same, so the carbon ledger counts one job; the checkpoint contract's environment tells the
workload which attempt it is, so it resumes from its checkpoint.

The successor of a paused job is found by name (``ListJobs`` has a ``JOB_NAME`` filter but no tag filter),
then confirmed by its :data:`TAG_PREVIOUS_JOB_ID` tag. The same sync methods serve the operators and, off the
event loop, the completion trigger: one parser for both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from pydantic import Field

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_JOB_ID,
    ENV_ATTEMPT,
    LABEL_MANAGED,
    LABEL_PREFIX,
    DispatchTarget,
)
from airflow_provider_gridaware.optional_providers import requires_extra
from airflow_provider_gridaware.times import from_epoch

with requires_extra("aws", "GridAwareBatchHook"):
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook

# A terminated job whose status reason starts with this was paused by us, not failed.
PAUSE_REASON_PREFIX = "gridaware: paused"
# AWS-only link from a resubmitted job to the one it replaces (Kubernetes relocates in place).
TAG_PREVIOUS_JOB_ID = LABEL_PREFIX + "previous-job-id"

SUCCEEDED = BatchClientHook.SUCCESS_STATE
FAILED = BatchClientHook.FAILURE_STATE
ACTIVE_STATES: tuple[str, ...] = BatchClientHook.INTERMEDIATE_STATES
# AWS sets these itself and rejects them in containerOverrides.
_RESERVED_ENV_PREFIX = "AWS_BATCH_"
# Container fields that a resubmission carries over from the job's description.
_CONTAINER_OVERRIDE_FIELDS = ("command", "resourceRequirements", "instanceType")
_DESCRIBE_BATCH = 100  # DescribeJobs takes at most 100 ids


class BatchDispatchError(AirflowException):
    """A grid-aware AWS Batch operation failed; the message says which queue, region and job."""


class BatchQueue(DispatchTarget):
    """An AWS Batch job queue the work may run in, labelled with its grid zone.

    :param zone: the grid zone whose signal applies in this queue's region.
    :param job_queue: the job queue's name or ARN.
    :param region_name: the queue's AWS region.
    :param aws_conn_id: the Airflow AWS connection (``None``: boto3's default credential chain).
    :param penalty: added to the planner's normalised objective for this zone (egress, queue depth).
    """

    job_queue: str = Field(min_length=1)
    region_name: str = Field(min_length=1)
    aws_conn_id: str | None = "aws_default"

    @property
    def where(self) -> str:
        return f"queue {self.job_queue!r} in {self.region_name} (zone {self.zone})"


def is_paused(job: Mapping[str, Any]) -> bool:
    """Terminated by a grid-aware pause (as opposed to a real failure)."""
    return job.get("status") == FAILED and str(job.get("statusReason", "")).startswith(PAUSE_REASON_PREFIX)


def is_managed(job: Mapping[str, Any]) -> bool:
    return job.get("tags", {}).get(LABEL_MANAGED) == "true"


def job_attempt(job: Mapping[str, Any]) -> int:
    try:
        return int(job.get("tags", {}).get(ANNOTATION_ATTEMPT, "1"))
    except ValueError:
        return 1


def failure_reason(job: Mapping[str, Any]) -> str:
    """What AWS says about a failed job: its status reason and, when known, the container's exit code."""
    reason = job.get("statusReason") or "no status reason given"
    exit_code = (job.get("container") or {}).get("exitCode")
    return f"{reason} (exit code {exit_code})" if exit_code is not None else reason


def run_time(jobs: Sequence[Mapping[str, Any]]) -> tuple[datetime, datetime, float, int] | None:
    """The logical job's own run time over its AWS jobs (a pause ends one, a resume starts the next): first
    start, last stop, the sum of each job's ``stoppedAt - startedAt`` and how many ran; ``None`` if none ran.

    :param jobs: the AWS job descriptions of one logical job.
    """
    # Whole milliseconds as AWS gives them, subtracted before dividing: epoch seconds as floats would
    # turn a 1 ms run into 0.00099992... s.
    spans = [
        (int(job["startedAt"]), int(job["stoppedAt"])) for job in jobs if job.get("startedAt") and job.get("stoppedAt")
    ]
    if not spans:
        return None
    seconds = sum(max(0, stop - start) for start, stop in spans) / 1000
    first_start = min(s for s, _ in spans) / 1000
    last_stop = max(e for _, e in spans) / 1000
    return from_epoch(first_start), from_epoch(last_stop), seconds, len(spans)


def resubmission_request(job: Mapping[str, Any]) -> dict[str, Any]:
    """``SubmitJob`` arguments that run ``job`` again as its next attempt (built from its description only).

    The environment keeps the job's own values (the checkpoint contract included) with the attempt raised;
    the tags keep the logical job id and add a link to the job being replaced.
    """
    attempt = job_attempt(job) + 1
    container = job.get("container") or {}
    env = {
        e["name"]: e["value"]
        for e in container.get("environment", [])
        if not e["name"].startswith(_RESERVED_ENV_PREFIX)
    }
    env[ENV_ATTEMPT] = str(attempt)
    overrides: dict[str, Any] = {k: container[k] for k in _CONTAINER_OVERRIDE_FIELDS if container.get(k)}
    overrides["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    tags = {**job.get("tags", {}), ANNOTATION_ATTEMPT: str(attempt), TAG_PREVIOUS_JOB_ID: job["jobId"]}
    request: dict[str, Any] = {
        "jobName": job["jobName"],
        "jobQueue": job["jobQueue"],
        "jobDefinition": job["jobDefinition"],
        "containerOverrides": overrides,
        "tags": tags,
    }
    for key in ("parameters", "timeout", "retryStrategy", "schedulingPriority", "shareIdentifier"):
        if job.get(key):
            request["schedulingPriorityOverride" if key == "schedulingPriority" else key] = job[key]
    return request


def matches(job: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    tags = job.get("tags", {})
    return is_managed(job) and all(tags.get(k) == v for k, v in selector.items())


class GridAwareBatchHook(BatchClientHook):
    """:class:`~airflow.providers.amazon.aws.hooks.batch_client.BatchClientHook` plus what grid-aware dispatch
    needs: queue checks, submission with clear errors, and pause/resume by terminate-and-resubmit.

    Takes the same arguments as ``BatchClientHook`` (``aws_conn_id``, ``region_name``, ``verify``, ``config``).
    """

    @property
    def api(self) -> Any:
        """The boto3 ``batch`` client (the provider's ``BatchProtocol`` type lacks the listing calls)."""
        return self.conn

    def _fail(self, what: str, exc: Exception) -> BatchDispatchError:
        return BatchDispatchError(f"AWS Batch in {self.region_name or 'the default region'}: {what}: {exc}")

    def check_queue(self, job_queue: str) -> dict[str, Any]:
        """The queue's description; raise if it does not exist or cannot take jobs (not ENABLED and VALID)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            queues = self.api.describe_job_queues(jobQueues=[job_queue])["jobQueues"]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"cannot describe job queue {job_queue!r}", exc) from exc
        if not queues:
            raise BatchDispatchError(f"AWS Batch job queue {job_queue!r} does not exist in {self.region_name}")
        queue: dict[str, Any] = queues[0]
        if queue.get("state") != "ENABLED" or queue.get("status") != "VALID":
            raise BatchDispatchError(
                f"AWS Batch job queue {job_queue!r} in {self.region_name} cannot take jobs: state "
                f"{queue.get('state')}, status {queue.get('status')} ({queue.get('statusReason', 'no reason given')})"
            )
        return queue

    def submit(self, request: Mapping[str, Any]) -> str:
        """Submit and return the AWS job id; a refused submission raises with AWS's reason (nothing was created)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.api.submit_job(**request)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(
                f"job {request.get('jobName')!r} (definition {request.get('jobDefinition')!r}) was not submitted "
                f"to queue {request.get('jobQueue')!r}",
                exc,
            ) from exc
        job_id: str = response["jobId"]
        self.log.info("submitted AWS Batch job %s to %s (%s)", job_id, request.get("jobQueue"), self.region_name)
        return job_id

    def describe(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Descriptions of the jobs that exist (AWS omits unknown ids), in batches of 100."""
        from botocore.exceptions import BotoCoreError, ClientError

        found: list[dict[str, Any]] = []
        for start in range(0, len(job_ids), _DESCRIBE_BATCH):
            chunk = list(job_ids[start : start + _DESCRIBE_BATCH])
            try:
                found += self.api.describe_jobs(jobs=chunk)["jobs"]
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(f"cannot describe jobs {chunk}", exc) from exc
        return found

    def describe_job(self, job_id: str) -> dict[str, Any] | None:
        jobs = self.describe([job_id])
        return jobs[0] if jobs else None

    def _list(self, job_queue: str, **kwargs: Any) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        token: str | None = None
        while True:
            try:
                page = self.api.list_jobs(jobQueue=job_queue, **kwargs, **({"nextToken": token} if token else {}))
            except (ClientError, BotoCoreError) as exc:
                raise self._fail(f"cannot list jobs in queue {job_queue!r}", exc) from exc
            yield from (j["jobId"] for j in page.get("jobSummaryList", []))
            token = page.get("nextToken")
            if not token:
                return

    def list_managed_jobs(
        self, job_queue: str, *, statuses: Iterable[str], selector: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Described jobs we manage in ``job_queue`` with one of ``statuses`` whose tags match ``selector``."""
        ids: list[str] = []
        for status in statuses:  # AWS lists only RUNNING jobs unless a status is named
            ids += [i for i in self._list(job_queue, jobStatus=status) if i not in ids]
        return [j for j in self.describe(ids) if matches(j, selector or {})]

    def successor(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The job that resubmitted ``job`` (same name and queue, tagged with its id), if any."""
        name_filter = [{"name": "JOB_NAME", "values": [job["jobName"]]}]
        candidates = [i for i in self._list(job["jobQueue"], filters=name_filter) if i != job["jobId"]]
        successors = [
            j for j in self.describe(candidates) if j.get("tags", {}).get(TAG_PREVIOUS_JOB_ID) == job["jobId"]
        ]
        # Two successors would mean a duplicate resume; follow the first submitted, deterministically.
        successors.sort(key=lambda j: (j.get("createdAt", 0), j["jobId"]))
        return successors[0] if successors else None

    def follow(self, job_id: str) -> tuple[list[str], dict[str, Any] | None]:
        """From ``job_id`` along paused-and-resubmitted successors to the latest job of the logical job.

        Returns the ids walked (``job_id`` first) and the latest job's description (``None`` if ``job_id``
        does not exist). A paused job without a successor yet is returned as it is: it waits for a resume.
        """
        chain = [job_id]
        job = self.describe_job(job_id)
        while job is not None and is_paused(job):
            nxt = self.successor(job)
            if nxt is None:
                break
            chain.append(nxt["jobId"])
            job = nxt
        return chain, job

    def pause_job(self, job: Mapping[str, Any], *, reason: str) -> str:
        """Terminate an active job with a pause reason. Returns ``paused``, ``already paused`` or ``finished``."""
        if is_paused(job):
            return "already paused"
        if job.get("status") not in ACTIVE_STATES:
            return "finished"
        from botocore.exceptions import BotoCoreError, ClientError

        text = reason if reason.startswith(PAUSE_REASON_PREFIX) else f"{PAUSE_REASON_PREFIX}: {reason}"
        try:
            self.api.terminate_job(jobId=job["jobId"], reason=text)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail(f"cannot terminate job {job['jobId']}", exc) from exc
        self.log.info("paused AWS Batch job %s (%s): %s", job["jobId"], self.region_name, text)
        return "paused"

    def resume_job(self, job: Mapping[str, Any]) -> tuple[str, str]:
        """Resubmit a paused job as its next attempt. Returns ``(outcome, job id)``: ``resumed`` with the new id,
        ``already resumed`` with the existing successor's id, or ``not paused`` with the job's own id."""
        if not is_paused(job):
            return "not paused", job["jobId"]
        existing = self.successor(job)
        if existing is not None:
            return "already resumed", existing["jobId"]
        return "resumed", self.submit(resubmission_request(job))

    @staticmethod
    def logical_job_id(job: Mapping[str, Any]) -> str | None:
        job_id: str | None = job.get("tags", {}).get(ANNOTATION_JOB_ID)
        return job_id


__all__ = [
    "ACTIVE_STATES",
    "PAUSE_REASON_PREFIX",
    "TAG_PREVIOUS_JOB_ID",
    "BatchDispatchError",
    "BatchQueue",
    "GridAwareBatchHook",
    "failure_reason",
    "is_paused",
    "resubmission_request",
]
