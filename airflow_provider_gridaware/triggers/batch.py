"""GridAwareBatchJobTrigger: wait for one logical AWS Batch job, across grid-aware pauses and resumes.

The amazon provider's ``BatchJobTrigger`` fails as soon as its job is terminated. A grid-aware pause
terminates the job on purpose and a resume submits a successor, so this trigger follows the logical job:
a paused job means "wait for its successor", and only a real failure ends the wait with an error.

The AWS calls are the sync :class:`~airflow_provider_gridaware.hooks.batch.GridAwareBatchHook` methods run
in a thread (``asyncio.to_thread``), not aiobotocore: aiobotocore is not a dependency of ours, and the
calls are a few small requests per poll. The connection look-up happens in that thread too, which the
Airflow 3 triggerer supports (as the provider's own ``get_async_conn`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.triggers.resume_guard import hold_until

if TYPE_CHECKING:
    from airflow_provider_gridaware.hooks.batch import GridAwareBatchHook

# Consecutive failed polls (throttling, network) tolerated before the wait ends with an error.
MAX_POLL_ERRORS = 5


class BatchJobWait(BaseModel):
    """What the trigger waits for, serialised as one typed object (a triggerer restart loses nothing).

    :param job_id: the AWS job to follow (the trigger walks from it to the latest resubmission).
    :param region_name: the job's region.
    :param aws_conn_id: the Airflow AWS connection for that region.
    :param poll_interval: seconds between status checks.
    :param not_before: wall-clock epoch seconds before which no event fires (the resume guard: the task
        resumes on a worker; see :mod:`~airflow_provider_gridaware.triggers.resume_guard`).
    """

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(min_length=1)
    region_name: str
    aws_conn_id: str | None = "aws_default"
    poll_interval: float = Field(default=30.0, gt=0)
    not_before: float | None = None


# Module-level so tests can drive the trigger without real waiting.
_sleep = asyncio.sleep


class GridAwareBatchJobTrigger(BaseTrigger):
    """Fires when the logical job succeeds (``status: success``) or really fails (``status: error``).

    The event carries ``job_ids`` (every AWS job followed, the given one first), ``job_id`` (the last),
    ``job_status``, and on error a ``message`` with AWS's status reason.

    :param request: the :class:`BatchJobWait` (or its JSON form).
    """

    def __init__(self, request: BatchJobWait | dict[str, Any]) -> None:
        super().__init__()
        self.request = request if isinstance(request, BatchJobWait) else BatchJobWait.model_validate(request)
        self._errors = 0
        self._paused_logged: str | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    @cached_property
    def hook(self) -> GridAwareBatchHook:
        from airflow_provider_gridaware.hooks.batch import GridAwareBatchHook

        return GridAwareBatchHook(aws_conn_id=self.request.aws_conn_id, region_name=self.request.region_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        chain = [self.request.job_id]
        while True:
            event = await self.poll_once(chain)
            if event is not None:
                await hold_until(self.request.not_before)
                yield event
                return
            await _sleep(self.request.poll_interval)

    async def poll_once(self, chain: list[str]) -> TriggerEvent | None:
        """One status check; extends ``chain`` with successors found. An event when the wait is over."""
        from airflow_provider_gridaware.hooks.batch import (
            ACTIVE_STATES,
            SUCCEEDED,
            BatchDispatchError,
            failure_reason,
            is_paused,
        )

        try:
            walked, job = await asyncio.to_thread(self.hook.follow, chain[-1])
        except BatchDispatchError as exc:
            self._errors += 1
            if self._errors >= MAX_POLL_ERRORS:
                return self._event(chain, "error", None, f"{MAX_POLL_ERRORS} status checks failed in a row: {exc}")
            self.log.warning("status check %d failed (will retry): %s", self._errors, exc)
            return None
        self._errors = 0
        chain.extend(walked[1:])
        if job is None:
            return self._event(chain, "error", None, f"AWS Batch job {chain[-1]} not found in {self.hook.region_name}")
        status = job.get("status")
        if status == SUCCEEDED:
            return self._event(chain, "success", status, None)
        if is_paused(job):
            if self._paused_logged != job["jobId"]:
                self.log.info("job %s paused (%s); waiting for its resubmission", job["jobId"], job["statusReason"])
                self._paused_logged = job["jobId"]
            return None
        if status in ACTIVE_STATES:
            return None
        return self._event(chain, "error", status, f"AWS Batch job {job['jobId']} {status}: {failure_reason(job)}")

    def _event(self, chain: list[str], status: str, job_status: str | None, message: str | None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "job_ids": list(chain),
                "job_id": chain[-1],
                "job_status": job_status,
                "message": message,
            }
        )
