"""CPU an idle Airflow 3.3 stack burns, per component, with the DAGs the integration tests load.

Run: .venv/bin/python benchmarks/bench_idle_stack.py [--interval 10 --interval 120] [--seconds 150]

Starts the stack ``make demo`` and the integration tests use (``airflow_provider_gridaware.demo.stack``:
api-server, scheduler, dag-processor, triggerer on SQLite, LocalExecutor) with ``example_dags/`` and
``tests/integration/dags/`` (14 files), once per ``[dag_processor] min_file_process_interval`` given,
waits 30 s after it is healthy, then reads each component's CPU time (its own and its reaped children's,
from ``/proc``) over ``--seconds``. Nothing runs: this is the cost of a stack that waits, which the test
session pays for every stack it keeps up (the shared one lives for the whole integration layer). Without
``--interval`` it measures Airflow's interval the stack ships with.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(interval: str | None, seconds: float) -> dict[str, float]:
    from airflow_provider_gridaware.demo.stack import EXAMPLE_DAGS, AirflowStack

    home = Path(tempfile.mkdtemp(prefix="bench-idle-stack-")) / "home"
    home.mkdir()
    extra = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": interval} if interval else {}
    stack = AirflowStack(home, extra_env=extra, dag_sources=(EXAMPLE_DAGS, REPO / "tests" / "integration" / "dags"))
    stack.start(timeout=180)
    try:
        time.sleep(30)  # past the first parse of every file
        before = {name: cpu_seconds(process.pid) for name, process in stack.processes.items()}
        time.sleep(seconds)
        return {name: cpu_seconds(process.pid) - before[name] for name, process in stack.processes.items()}
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", action="append", help="min_file_process_interval in seconds (repeatable)")
    parser.add_argument("--seconds", type=float, default=150.0, help="measured window (default 150)")
    args = parser.parse_args()
    files = [*(REPO / "example_dags").glob("*.py"), *(REPO / "tests" / "integration" / "dags").glob("*.py")]
    print(f"idle stack with {len(files)} DAG files (example_dags/, tests/integration/dags/)")
    for interval in args.interval or [None]:
        used = measure(interval, args.seconds)
        total = sum(used.values())
        shown = ", ".join(f"{name} {value:.1f}" for name, value in used.items())
        label = interval or "shipped default"
        print(
            f"min_file_process_interval {label}: CPU s in {args.seconds:.0f} s: {shown}; all {total:.1f} "
            f"({total / args.seconds:.0%} of a core)"
        )


if __name__ == "__main__":
    main()
