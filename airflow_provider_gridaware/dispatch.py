"""What every dispatch operator shares: where work may run, how it is labelled, and the checkpoint contract.

Dispatch operators (Kubernetes Jobs, AWS Batch) carry the grid-aware decision to where the work runs.
They share three things, kept here so the grid-event DAG and the carbon ledger can rely on them:

- **targets**: places the work may run, each labelled with its grid zone and an optional penalty (data
  egress, queue depth) in the planner's normalised units: a zone must be that much better to be chosen;
- **labels / annotations / tags**: every external job records its priority class, zone, plan and DAG/run/task
  ids under the ``gridaware.io/`` prefix, so it can be found (and paused by priority class) later;
- **the checkpoint contract**: environment variables that tell the workload where to checkpoint, that
  SIGTERM means "checkpoint now", how long it has, and which attempt it is.

No Airflow or cloud SDK import here: operators and hooks use it; the workload helper reads only the
standard-library :mod:`~airflow_provider_gridaware.checkpoint_contract`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The checkpoint contract (see docs/dispatch.md): what the workload reads from its environment. The names
# live in a module without imports, so the workload helper stays standard-library only.
from airflow_provider_gridaware.checkpoint_contract import (
    ENV_ATTEMPT,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_GRACE_SECONDS,
    ENV_CHECKPOINT_ON_SIGTERM,
    ENV_JOB_ID,
    ENV_ZONE,
)

LABEL_PREFIX = "gridaware.io/"
# Set on everything we create: selecting on it never touches jobs we do not manage.
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_PRIORITY_CLASS = LABEL_PREFIX + "priority-class"
LABEL_ZONE = LABEL_PREFIX + "zone"
LABEL_DAG_ID = LABEL_PREFIX + "dag-id"
LABEL_TASK_ID = LABEL_PREFIX + "task-id"
# Run ids contain ':' and '+', which label values may not: the label is a sanitised form, the annotation exact.
LABEL_RUN_ID = LABEL_PREFIX + "run-id"
# One logical job across terminate-and-resubmit (AWS Batch) or relocation (Kubernetes): what the ledger counts.
ANNOTATION_JOB_ID = LABEL_PREFIX + "job-id"
ANNOTATION_RUN_ID = LABEL_PREFIX + "run-id"
ANNOTATION_PLAN = LABEL_PREFIX + "plan"
ANNOTATION_ATTEMPT = LABEL_PREFIX + "attempt"
# Which copy of a relocated job is the live one: each move writes the next generation (see docs/kubernetes.md).
ANNOTATION_GENERATION = LABEL_PREFIX + "generation"


_LABEL_VALUE_MAX = 63
_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def label_value(text: str) -> str:
    """``text`` as a valid Kubernetes label value (<= 63 chars of ``[A-Za-z0-9._-]``, alphanumeric ends).

    Distinct inputs stay distinct: when characters are replaced or the text is cut, a short hash of the
    original is appended (``manual__2026-01-01T00:00:00+00:00`` -> ``manual__2026-01-01T00_00_00_00_00-3f2a9c1b``).
    """
    cleaned = _LABEL_BAD.sub("_", text).strip("._-")
    if cleaned == text and len(text) <= _LABEL_VALUE_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    head = cleaned[: _LABEL_VALUE_MAX - len(digest) - 1].rstrip("._-")
    return f"{head}-{digest}" if head else digest


class DispatchTarget(BaseModel):
    """A place the work may run, labelled with the grid zone whose signal applies there.

    :param zone: the grid zone, in the naming of the signal connection (``DE``, ``GB``, ``CAISO_NORTH`` ...).
    :param penalty: added to the planner's normalised objective for this zone (1.0 = the typical signal
        level): what moving the work there costs (data egress, queue depth). 0 by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    zone: str = Field(min_length=1)
    penalty: float = 0.0


def targets_by_zone(targets: Sequence[DispatchTarget], *, what: str) -> dict[str, DispatchTarget]:
    """``{zone: target}`` in the given order (the first is the home zone); one target per zone."""
    if not targets:
        raise ValueError(f"{what}: give at least one target")
    by_zone: dict[str, DispatchTarget] = {}
    for target in targets:
        if target.zone in by_zone:
            raise ValueError(f"{what}: two targets for zone {target.zone!r}; give one per zone")
        by_zone[target.zone] = target
    return by_zone


def zone_penalties(targets: Sequence[DispatchTarget]) -> dict[str, float]:
    """The planner's ``zone_penalty`` from the targets' penalties (zero penalties left out)."""
    return {t.zone: t.penalty for t in targets if t.penalty}


def job_labels(*, priority_class: str, zone: str, dag_id: str, task_id: str, run_id: str) -> dict[str, str]:
    """Selectable labels (Kubernetes labels, AWS tags) for one dispatched job."""
    return {
        LABEL_MANAGED: "true",
        LABEL_PRIORITY_CLASS: priority_class,
        LABEL_ZONE: label_value(zone),
        LABEL_DAG_ID: label_value(dag_id),
        LABEL_TASK_ID: label_value(task_id),
        LABEL_RUN_ID: label_value(run_id),
    }


def job_annotations(
    *,
    job_id: str,
    run_id: str,
    attempt: int,
    decision: Mapping[str, Any] | None,
    generation: int | None = None,
) -> dict[str, str]:
    """Exact, non-selectable facts: the logical job id, the run id, the attempt, the plan (JSON) and, for
    jobs that may be relocated, the copy's generation."""
    annotations = {ANNOTATION_JOB_ID: job_id, ANNOTATION_RUN_ID: run_id, ANNOTATION_ATTEMPT: str(attempt)}
    if generation is not None:
        annotations[ANNOTATION_GENERATION] = str(generation)
    if decision is not None:
        annotations[ANNOTATION_PLAN] = json.dumps(decision, separators=(",", ":"), sort_keys=True, default=str)
    return annotations


def label_selector(selector: Mapping[str, str] | str | None) -> str:
    """A Kubernetes label selector string from a mapping (equality terms) or a string, always scoped to
    jobs we manage."""
    if selector is None:
        terms: list[str] = []
    elif isinstance(selector, str):
        terms = [t.strip() for t in selector.split(",") if t.strip()]
    else:
        terms = [f"{k}={v}" for k, v in selector.items()]
    managed = f"{LABEL_MANAGED}=true"
    if managed not in terms:
        terms.insert(0, managed)
    return ",".join(terms)


class CheckpointContract(BaseModel):
    """What the workload is told about checkpointing (delivered as environment variables).

    :param path: where to write and read checkpoints (a mounted volume, ``s3://...``); ``None``: no
        checkpointing is promised, pauses restart the work from scratch.
    :param grace_period_seconds: time between SIGTERM ("checkpoint now") and SIGKILL.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | None = None
    grace_period_seconds: int = Field(default=120, ge=0)

    def env(self, *, job_id: str, attempt: int, zone: str) -> dict[str, str]:
        env = {
            ENV_JOB_ID: job_id,
            ENV_ATTEMPT: str(attempt),
            ENV_ZONE: zone,
            ENV_CHECKPOINT_ON_SIGTERM: "1" if self.path else "0",
            ENV_CHECKPOINT_GRACE_SECONDS: str(self.grace_period_seconds),
        }
        if self.path:
            env[ENV_CHECKPOINT_DIR] = self.path
        return env
