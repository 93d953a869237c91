"""The workload's side of the checkpoint contract, run as a real process that gets a real SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_gridaware.workload import CHECKPOINT_FILE, PAUSED_EXIT_CODE, Checkpointing

LOOP = """
import time
from pathlib import Path
from airflow_provider_gridaware.workload import Checkpointing
ckpt = Checkpointing.from_env()
state = ckpt.load() or {"step": 0}
Path(__import__("os").environ["READY"]).write_text(str(state["step"]))
while state["step"] < 10_000_000:
    state["step"] += 1
    if ckpt.stop_requested:
        ckpt.save(state)
        ckpt.exit_for_pause()
    time.sleep(0.001)
ckpt.save(state)
"""


def _run_until_ready(tmp_path: Path, attempt: int) -> tuple[subprocess.Popen[bytes], Path]:
    ready = tmp_path / f"ready-{attempt}"
    env = {
        **os.environ,
        "READY": str(ready),
        "GRIDAWARE_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
        "GRIDAWARE_CHECKPOINT_ON_SIGTERM": "1",
        "GRIDAWARE_ATTEMPT": str(attempt),
    }
    proc = subprocess.Popen([sys.executable, "-c", LOOP], env=env)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, "workload died before it was ready"
        assert time.monotonic() < deadline, "workload never became ready"
        time.sleep(0.05)
    return proc, ready


def test_sigterm_checkpoints_and_the_next_attempt_resumes(tmp_path):
    proc, ready = _run_until_ready(tmp_path, attempt=1)
    assert ready.read_text() == "0"
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == PAUSED_EXIT_CODE
    saved = json.loads((tmp_path / "ckpt" / CHECKPOINT_FILE).read_text())
    assert saved["step"] > 0
    proc2, ready2 = _run_until_ready(tmp_path, attempt=2)
    try:
        assert int(ready2.read_text()) == saved["step"]  # resumed from the checkpoint, not from zero
    finally:
        proc2.kill()
        proc2.wait()
    assert not list((tmp_path / "ckpt").glob("*.tmp"))  # atomic writes leave no temp files


def test_without_a_checkpoint_dir_nothing_is_written(tmp_path):
    ckpt = Checkpointing.from_env({}, handle_sigterm=False)
    assert ckpt.path is None
    ckpt.save({"step": 1})
    assert ckpt.load() is None
    env = {"GRIDAWARE_CHECKPOINT_DIR": str(tmp_path), "GRIDAWARE_ATTEMPT": "3", "GRIDAWARE_ZONE": "FR"}
    read = Checkpointing.from_env(env, handle_sigterm=False)
    assert (read.attempt, read.zone, read.directory) == (3, "FR", tmp_path)


def test_workload_imports_only_the_standard_library():
    # It is vendored into training images without Airflow or pydantic: importing it must load nothing else.
    code = (
        "import sys, json; before = set(sys.modules); import airflow_provider_gridaware.workload;"
        " print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    ours = {m for m in loaded if m.split(".")[0] == "airflow_provider_gridaware"}
    foreign = [m for m in loaded if m not in ours and m.split(".")[0] not in sys.stdlib_module_names]
    assert not foreign, f"the workload helper imported {foreign[:8]}"
    assert ours == {
        "airflow_provider_gridaware",
        "airflow_provider_gridaware.workload",
        "airflow_provider_gridaware.checkpoint_contract",
    }
