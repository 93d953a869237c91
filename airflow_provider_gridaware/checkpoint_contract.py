"""The checkpoint contract's environment variable names, shared by the operators and the workload.

Standard library only (nothing at all is imported): :mod:`airflow_provider_gridaware.workload` runs inside
training images that have neither Airflow nor pydantic, and :mod:`airflow_provider_gridaware.dispatch`
builds the same variables on the Airflow side. See docs/dispatch.md.
"""

from __future__ import annotations

#: The logical job id, stable across pauses, resubmissions and relocations.
ENV_JOB_ID = "GRIDAWARE_JOB_ID"
#: Where to write and read checkpoints; unset when checkpointing is not promised.
ENV_CHECKPOINT_DIR = "GRIDAWARE_CHECKPOINT_DIR"
#: ``1``: SIGTERM means "checkpoint now" (a pause), not "die".
ENV_CHECKPOINT_ON_SIGTERM = "GRIDAWARE_CHECKPOINT_ON_SIGTERM"
#: Seconds between SIGTERM and SIGKILL.
ENV_CHECKPOINT_GRACE_SECONDS = "GRIDAWARE_CHECKPOINT_GRACE_SECONDS"
#: 1 on the first run, +1 after each resume.
ENV_ATTEMPT = "GRIDAWARE_ATTEMPT"
#: The grid zone the work runs in.
ENV_ZONE = "GRIDAWARE_ZONE"
