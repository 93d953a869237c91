"""The workload's side of the checkpoint contract: import this inside the training container.

Standard library only, so it can be vendored into any image::

    from airflow_provider_gridaware.workload import Checkpointing

    ckpt = Checkpointing.from_env()
    state = ckpt.load() or init_state()
    for step in range(state["step"], total_steps):
        train_one_step(state)
        if ckpt.stop_requested:          # SIGTERM: the grid asked us to pause
            ckpt.save(state)
            ckpt.exit_for_pause()
    ckpt.save(state)

SIGTERM from Kubernetes (Job suspended, pod deleted) or AWS Batch (job terminated) means "checkpoint
now": the handler only sets a flag, and the loop saves at the next safe point within
``grace_period_seconds``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_gridaware import checkpoint_contract as contract

CHECKPOINT_FILE = "gridaware-checkpoint.json"
# Exit code for "paused on request": 143 = 128 + SIGTERM, what a process killed by SIGTERM reports.
PAUSED_EXIT_CODE = 143


@dataclass
class Checkpointing:
    """The contract as read from the environment, plus a SIGTERM flag.

    :param directory: where checkpoints live (``None``: checkpointing not configured).
    :param job_id: the logical job (stable across pauses, resubmissions and relocations).
    :param attempt: 1 on the first run, +1 after each resume.
    :param zone: the grid zone the work runs in.
    :param grace_period_seconds: time between SIGTERM and SIGKILL.
    """

    directory: Path | None
    job_id: str = "adhoc"
    attempt: int = 1
    zone: str | None = None
    grace_period_seconds: int = 0
    stop_requested: bool = field(default=False, init=False)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, *, handle_sigterm: bool = True) -> Checkpointing:
        env = dict(os.environ if environ is None else environ)
        directory = env.get(contract.ENV_CHECKPOINT_DIR)
        ckpt = cls(
            directory=Path(directory) if directory else None,
            job_id=env.get(contract.ENV_JOB_ID, "adhoc"),
            attempt=int(env.get(contract.ENV_ATTEMPT, "1") or 1),
            zone=env.get(contract.ENV_ZONE),
            grace_period_seconds=int(env.get(contract.ENV_CHECKPOINT_GRACE_SECONDS, "0") or 0),
        )
        if handle_sigterm and env.get(contract.ENV_CHECKPOINT_ON_SIGTERM) == "1":
            signal.signal(signal.SIGTERM, ckpt._on_sigterm)
        return ckpt

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Only a flag: saving inside a signal handler could interrupt a half-written tensor.
        self.stop_requested = True

    @property
    def path(self) -> Path | None:
        return None if self.directory is None else self.directory / CHECKPOINT_FILE

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (temp file + rename): a kill mid-write never leaves a torn checkpoint."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as handle:
            json.dump(state, handle)
            tmp = Path(handle.name)
        tmp.replace(self.path)

    def load(self) -> dict[str, Any] | None:
        """The last checkpoint, or ``None`` on a first run."""
        if self.path is None or not self.path.exists():
            return None
        loaded: dict[str, Any] = json.loads(self.path.read_text())
        return loaded

    def exit_for_pause(self) -> None:
        """Leave after a requested checkpoint, with the exit code of a SIGTERM'd process."""
        sys.exit(PAUSED_EXIT_CODE)
