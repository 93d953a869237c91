"""Kubernetes Jobs for grid-aware dispatch: create suspended, find by label, suspend/resume, read state.

:class:`GridKubernetesHook` extends the official ``KubernetesHook`` (same ``kubernetes`` connection type,
same connection fields) with what dispatch needs: Jobs as plain dicts (the API's camelCase JSON), merge
patches, label searches that also filter on the client, and errors that name the cluster.

The pure helpers (:func:`job_phase`, :func:`labels_match`, :func:`failure_message`) are shared with the
async side (``triggers/kubernetes.py``), so sync and async code read a Job's state the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict

from airflow_provider_gridaware.dispatch import LABEL_PREFIX, label_selector
from airflow_provider_gridaware.optional_providers import requires_extra
from airflow_provider_gridaware.times import UTC, parse_time

with requires_extra("kubernetes", "GridKubernetesHook"):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

if TYPE_CHECKING:
    from kubernetes.client import BatchV1Api

T = TypeVar("T")

# Kueue admits a Job carrying this label and then owns its ``spec.suspend``.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Set by the suspend operator; the resume operator resumes only Jobs carrying it, never a Job that is
# suspended because its grid window has not opened yet.
ANNOTATION_SUSPENDED_BY = LABEL_PREFIX + "suspended-by"
# Kubernetes resets ``status.startTime`` when a suspended Job resumes: the suspend operator keeps the run
# time and count of the chunks before the suspension here, so the Job's own run time is their sum.
ANNOTATION_RUN_SECONDS = LABEL_PREFIX + "run-seconds"
ANNOTATION_CHUNKS = LABEL_PREFIX + "chunks"
# RFC 7386: the python client would otherwise send a dict body as ``application/json-patch+json``,
# which a real API server rejects.
MERGE_PATCH = "application/merge-patch+json"


class JobPhase(str, Enum):
    """Where a Job stands, from its spec and status conditions."""

    SUSPENDED = "suspended"
    RUNNING = "running"  # unsuspended, not finished (pods may still be pending)
    COMPLETE = "complete"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobPhase.COMPLETE, JobPhase.FAILED)


class KubernetesDispatchError(RuntimeError):
    """A Kubernetes call failed; the message names the cluster, the Job and what the API said."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class JobRef(BaseModel):
    """Where one dispatched Job lives: what the task state store keeps across retries and deferrals.

    :param conn_id: the Airflow ``kubernetes`` connection of its cluster.
    :param namespace: its namespace.
    :param name: its name.
    :param zone: the grid zone of that cluster.
    """

    model_config = ConfigDict(frozen=True)

    conn_id: str
    namespace: str
    name: str
    zone: str

    def __str__(self) -> str:
        return f"Job {self.namespace}/{self.name} in cluster {self.conn_id!r} (zone {self.zone})"


def _true_conditions(job: Mapping[str, Any]) -> set[str]:
    conditions = (job.get("status") or {}).get("conditions") or []
    # The API sends status "True"/"False"/"Unknown" as strings: a present "False" condition does not count.
    return {str(c.get("type")) for c in conditions if str(c.get("status")) == "True"}


def job_phase(job: Mapping[str, Any]) -> JobPhase:
    """The phase of a Job given as API JSON (camelCase keys)."""
    conditions = _true_conditions(job)
    if "Failed" in conditions:
        return JobPhase.FAILED
    if "Complete" in conditions:
        return JobPhase.COMPLETE
    if (job.get("spec") or {}).get("suspend"):
        return JobPhase.SUSPENDED
    return JobPhase.RUNNING


def earlier_chunks(job: Mapping[str, Any]) -> tuple[float, int]:
    """Run seconds and count of the Job's chunks before its last resume (from the suspend operator's annotations)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return float(annotations.get(ANNOTATION_RUN_SECONDS) or 0.0), int(annotations.get(ANNOTATION_CHUNKS) or 0)
    except ValueError:
        return 0.0, 0


def running_chunk_seconds(job: Mapping[str, Any], now: datetime) -> float | None:
    """How long the Job's current chunk has run (since ``status.startTime``), or ``None`` if it has not started."""
    start = (job.get("status") or {}).get("startTime")
    if not start or job_phase(job) is not JobPhase.RUNNING:
        return None
    return max(0.0, (now - parse_time(start, what="Job startTime")).total_seconds())


def failure_message(job: Mapping[str, Any]) -> str:
    """``reason: message`` of the Job's Failed condition (empty when it has none)."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and str(condition.get("status")) == "True":
            return ": ".join(str(part) for part in (condition.get("reason"), condition.get("message")) if part)
    return ""


_SET_TERM = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    """Top-level terms of a selector (commas inside ``in (a,b)`` do not split)."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def labels_match(labels: Mapping[str, str] | None, selector: str) -> bool:
    """Whether ``labels`` satisfy a Kubernetes label selector (equality, set-based and existence terms)."""
    labels = labels or {}
    for term in _split_selector(selector):
        if match := _SET_TERM.match(term):
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if (op == "in") != (key in labels and labels[key] in values):
                return False
        elif "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def api_error_message(exc: Exception) -> str:
    """What the API server said: the Status ``message`` (e.g. a 422's field errors) or the raw reason."""
    import json

    body = getattr(exc, "body", None)
    if body:
        try:
            status = json.loads(body)
        except (TypeError, ValueError):
            return str(body)[:2000]
        if isinstance(status, Mapping) and status.get("message"):
            causes = ((status.get("details") or {}).get("causes")) or []
            text = str(status["message"])
            missing = [c for c in causes if c.get("field") and str(c.get("field")) not in text]
            fields = "; ".join(f"{c.get('field')}: {c.get('message')}" for c in missing)
            return f"{text} ({fields})" if fields else text
    return f"{getattr(exc, 'status', '')} {getattr(exc, 'reason', '') or exc}".strip()


def _raw_json(response: Any, what: str) -> dict[str, Any]:
    """The API's JSON as sent (camelCase), without the client's model round trip: building a ``V1Job`` and
    serialising it back costs more CPU than the call itself, and a pass over a fleet makes hundreds."""
    import json

    try:
        parsed = json.loads(response.data)
    except (TypeError, ValueError) as exc:
        raise KubernetesDispatchError(f"{what}: the API server answered something that is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise KubernetesDispatchError(f"{what}: the API server answered {type(parsed).__name__}, not an object")
    return parsed


class GridKubernetesHook(KubernetesHook):
    """The official ``KubernetesHook`` plus what grid-aware dispatch needs from a cluster's Jobs.

    Uses the standard ``kubernetes`` connection (``kube_config``, ``kube_config_path``, ``in_cluster``,
    ``cluster_context``, ``namespace`` ...). Every method takes and returns Jobs as API JSON dicts and
    raises :class:`KubernetesDispatchError` naming the cluster when the connection is missing, the
    cluster cannot be reached, or the API refuses the call.

    :param conn_id: the Airflow ``kubernetes`` connection of the cluster.
    """

    hook_name = "Kubernetes (grid-aware dispatch)"

    def __init__(self, conn_id: str, **kwargs: Any) -> None:
        super().__init__(conn_id=conn_id, **kwargs)

    @cached_property
    def _batch(self) -> BatchV1Api:
        from kubernetes.client import BatchV1Api

        return BatchV1Api(api_client=self.api_client)

    def allow_concurrent_calls(self, calls: int) -> None:
        """Keep a connection per call for ``calls`` calls in flight at once (e.g. a response pass's threads).

        The client's urllib3 pool holds ``connection_pool_maxsize`` connections per host (5 per CPU by
        default, 4 if unset): more threads than that open a connection each time and drop it again ("Connection
        pool is full"), a TCP and TLS handshake per call to a real API server. Only the pool is rebuilt, from
        the client's own configuration (TLS, proxy, keepalive socket options unchanged).

        :param calls: calls in flight at once.
        """
        from kubernetes.client import rest

        client = self.api_client
        if (client.configuration.connection_pool_maxsize or 4) >= calls:
            return
        client.configuration.connection_pool_maxsize = calls
        client.rest_client.pool_manager.clear()
        client.rest_client = rest.RESTClientObject(client.configuration, maxsize=calls)

    def _host(self) -> str:
        try:
            return str(self.api_client.configuration.host)
        except Exception:  # the connection itself is what failed: say so in the caller's message
            return "?"

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one API call; turn every failure into a :class:`KubernetesDispatchError` that names the cluster."""
        from airflow.exceptions import AirflowNotFoundException
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return call()
        except AirflowNotFoundException as exc:
            raise KubernetesDispatchError(
                f"{what}: the Airflow connection {self.conn_id!r} (type kubernetes) is not defined"
            ) from exc
        except ApiException as exc:
            raise KubernetesDispatchError(
                f"{what}: cluster {self.conn_id!r} ({self._host()}) answered {exc.status}: {api_error_message(exc)}",
                status=exc.status,
            ) from exc
        except (Urllib3Error, OSError) as exc:
            raise KubernetesDispatchError(
                f"{what}: cluster {self.conn_id!r} ({self._host()}) is unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    def _as_dict(self, obj: Any) -> dict[str, Any]:
        return dict(self.api_client.sanitize_for_serialization(obj))

    def create_job_from_dict(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Job from its API JSON; returns the Job as stored."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name")
        created = self._call(
            f"creating Job {namespace}/{name}",
            lambda: self._batch.create_namespaced_job(namespace=namespace, body=dict(body)),
        )
        return self._as_dict(created)

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job (with status), or ``None`` if it does not exist."""
        try:
            job = self._call(
                f"reading Job {namespace}/{name}",
                lambda: self._batch.read_namespaced_job_status(name=name, namespace=namespace),
            )
        except KubernetesDispatchError as exc:
            if exc.status == 404:
                return None
            raise
        return self._as_dict(job)

    def list_jobs(self, namespace: str | None, selector: Mapping[str, str] | str | None) -> list[dict[str, Any]]:
        """Jobs we manage matching ``selector`` (in ``namespace``, or in all namespaces when ``None``).

        The selector goes to the API server *and* is applied again here: a server (or an emulator, or a
        proxy) that ignores ``labelSelector`` must never make us touch Jobs outside the selection.
        """
        query = label_selector(selector)
        where = f"namespace {namespace}" if namespace else "all namespaces"
        if namespace:
            listed = self._call(
                f"listing Jobs ({query}) in {where}",
                lambda: self._batch.list_namespaced_job(
                    namespace=namespace, label_selector=query, _preload_content=False
                ),
            )
        else:
            listed = self._call(
                f"listing Jobs ({query}) in {where}",
                lambda: self._batch.list_job_for_all_namespaces(label_selector=query, _preload_content=False),
            )
        jobs = list(_raw_json(listed, f"listing Jobs in {where} of cluster {self.conn_id!r}").get("items") or [])
        return [job for job in jobs if labels_match((job.get("metadata") or {}).get("labels"), query)]

    def patch_job(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch (RFC 7386) a Job; returns the patched Job."""
        patched = self._call(
            f"patching Job {namespace}/{name}",
            lambda: self._batch.patch_namespaced_job(
                name=name, namespace=namespace, body=dict(body), _content_type=MERGE_PATCH, _preload_content=False
            ),
        )
        return _raw_json(patched, f"patching Job {namespace}/{name} in cluster {self.conn_id!r}")

    def delete_job(self, namespace: str, name: str, *, propagation_policy: str = "Background") -> bool:
        """Delete a Job and (by default, in the background) its pods; ``False`` if it was already gone."""
        from kubernetes.client import V1DeleteOptions

        try:
            self._call(
                f"deleting Job {namespace}/{name}",
                lambda: self._batch.delete_namespaced_job(
                    name=name, namespace=namespace, body=V1DeleteOptions(propagation_policy=propagation_policy)
                ),
            )
        except KubernetesDispatchError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def set_suspended(
        self, *, suspend: bool, namespace: str | None, selector: Mapping[str, str] | str | None, reason: str
    ) -> list[dict[str, Any]]:
        """Suspend (or resume) every matching Job we manage; one change record per Job.

        Suspending deletes the Job's running pods: each gets SIGTERM and its grace period (the
        checkpoint contract). Resuming touches only Jobs this method suspended (they carry
        ``gridaware.io/suspended-by``), never one still waiting for its grid window. Finished Jobs
        are left alone; a Job already in the wanted state is reported ``unchanged``.
        """
        changes = []
        for job in self.list_jobs(namespace, selector):
            change = self.change_suspension(job, suspend=suspend, reason=reason, namespace=namespace)
            changes.append(change)
            self.log.info(
                "%s/%s in %s: %s (%s)",
                change["namespace"],
                change["name"],
                self.conn_id,
                change["action"],
                change["reason"],
            )
        return changes

    def change_suspension(
        self, job: Mapping[str, Any], *, suspend: bool, reason: str, namespace: str | None = None
    ) -> dict[str, Any]:
        """Suspend (or resume) one Job as listed; the change record :meth:`set_suspended` returns for it.

        The same rules as :meth:`set_suspended`: finished Jobs and Jobs already in the wanted state are
        ``unchanged``; only a Job carrying ``gridaware.io/suspended-by`` is resumed.
        """
        meta = job.get("metadata") or {}
        ns, name = str(meta.get("namespace") or namespace or "default"), str(meta.get("name"))
        phase = job_phase(job)
        annotations = meta.get("annotations") or {}
        action, why = "unchanged", ""
        if phase.finished:
            why = f"finished ({phase.value}): left alone"
        elif suspend and phase is JobPhase.SUSPENDED:
            why = "already suspended"
        elif not suspend and phase is JobPhase.RUNNING:
            why = "already running"
        elif not suspend and ANNOTATION_SUSPENDED_BY not in annotations:
            why = "suspended but not by a grid event (waiting for its grid window): left alone"
        elif suspend:
            marks = {ANNOTATION_SUSPENDED_BY: reason}
            ran = running_chunk_seconds(job, datetime.now(UTC))
            if ran is not None:
                seconds, chunks = earlier_chunks(job)
                marks.update({ANNOTATION_RUN_SECONDS: f"{seconds + ran:.3f}", ANNOTATION_CHUNKS: str(chunks + 1)})
            self.patch_job(ns, name, {"metadata": {"annotations": marks}, "spec": {"suspend": True}})
            action, why = "suspended", reason
        else:
            self.patch_job(
                ns, name, {"metadata": {"annotations": {ANNOTATION_SUSPENDED_BY: None}}, "spec": {"suspend": False}}
            )
            action, why = "resumed", f"{reason} (was suspended by: {annotations[ANNOTATION_SUSPENDED_BY]})"
        return {"cluster": self.conn_id, "namespace": ns, "name": name, "action": action, "reason": why}
