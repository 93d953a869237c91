"""KubernetesJobCompletionTrigger: wait in the triggerer until a dispatched Job completes or fails.

Why not the official ``KubernetesJobTrigger``: it counts any present condition as final (a status
``"False"`` condition included), reports a Failed Job without a reason as a success, and ends with an
exception when the Job is deleted or the API blips once. This one reads the Job through the same
:func:`~airflow_provider_gridaware.hooks.kubernetes.job_phase` as the operator, tolerates transient
errors, and reports a deleted Job as such. A Job paused by a grid event simply keeps it waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_gridaware.optional_providers import requires_extra

with requires_extra("kubernetes", "KubernetesJobCompletionTrigger"):
    from airflow_provider_gridaware.hooks.kubernetes import earlier_chunks, failure_message, job_phase
from airflow_provider_gridaware.triggers.resume_guard import hold_until


class JobWatchRequest(BaseModel):
    """Everything the trigger needs, serialised as one typed object.

    :param conn_id: the Airflow ``kubernetes`` connection of the Job's cluster.
    :param namespace: the Job's namespace.
    :param name: the Job's name.
    :param zone: the grid zone of that cluster (echoed in the event).
    :param decision: the grid decision the Job was released with (echoed in the event, for the ledger).
    :param poll_seconds: time between status reads.
    :param max_consecutive_errors: API failures in a row before giving up with an ``error`` event.
    :param not_before: wall-clock epoch seconds before which no event fires (the resume guard: the task
        resumes on a worker; see :mod:`~airflow_provider_gridaware.triggers.resume_guard`).
    """

    model_config = ConfigDict(frozen=True)

    conn_id: str
    namespace: str
    name: str
    zone: str
    decision: dict[str, Any] | None = None
    poll_seconds: float = Field(default=10.0, gt=0)
    max_consecutive_errors: int = Field(default=30, ge=1)
    not_before: float | None = None


class KubernetesJobCompletionTrigger(BaseTrigger):
    """Fires once the Job is complete, failed, or gone.

    The event: ``{"status": "complete"|"failed"|"missing"|"error", "message", "conn_id", "namespace",
    "name", "zone", "decision", "start_time", "completion_time", "earlier_chunks"}`` (``earlier_chunks``: run
    seconds and count of the chunks before the last resume).

    :param request: the :class:`JobWatchRequest` (or its JSON form).
    """

    def __init__(self, request: JobWatchRequest | dict[str, Any]) -> None:
        super().__init__()
        self.request = request if isinstance(request, JobWatchRequest) else JobWatchRequest.model_validate(request)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"request": self.request.model_dump(mode="json")})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        req = self.request
        hook = AsyncKubernetesHook(conn_id=req.conn_id)
        errors = 0
        while True:
            try:
                job = await read_job_async(hook, req.namespace, req.name)
            except Exception as exc:  # network blips, API restarts: keep waiting, but not forever
                errors += 1
                self.log.warning(
                    "reading Job %s/%s in %s failed (%d/%d): %s",
                    req.namespace,
                    req.name,
                    req.conn_id,
                    errors,
                    req.max_consecutive_errors,
                    exc,
                )
                if errors >= req.max_consecutive_errors:
                    await hold_until(req.not_before)
                    yield self._event("error", f"giving up after {errors} failed reads: {exc}", None)
                    return
                await asyncio.sleep(req.poll_seconds)
                continue
            errors = 0
            if job is None:
                await hold_until(req.not_before)
                yield self._event("missing", "the Job was deleted before it finished", None)
                return
            phase = job_phase(job)
            if phase.finished:
                message = failure_message(job) if phase.value == "failed" else "Job completed"
                await hold_until(req.not_before)
                yield self._event(phase.value, message, job)
                return
            self.log.info("Job %s/%s in %s: %s", req.namespace, req.name, req.conn_id, phase.value)
            await asyncio.sleep(req.poll_seconds)

    def _event(self, status: str, message: str, job: dict[str, Any] | None) -> TriggerEvent:
        req = self.request
        job_status = (job or {}).get("status") or {}
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "conn_id": req.conn_id,
                "namespace": req.namespace,
                "name": req.name,
                "zone": req.zone,
                "decision": req.decision,
                "start_time": job_status.get("startTime"),
                "completion_time": job_status.get("completionTime"),
                # Chunks run before grid-event suspensions (Kubernetes resets startTime on resume).
                "earlier_chunks": list(earlier_chunks(job or {})),
            }
        )


async def read_job_async(hook: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The Job as API JSON via an ``AsyncKubernetesHook``, or ``None`` if it does not exist."""
    from kubernetes_asyncio import client as async_client

    async with hook.get_conn() as api:
        try:
            job = await async_client.BatchV1Api(api).read_namespaced_job_status(name=name, namespace=namespace)
        except async_client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(api.sanitize_for_serialization(job))
