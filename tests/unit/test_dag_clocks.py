"""The DAG files the shared test stack runs read the provider's clock, never the wall clock.

The shared stack runs on a clock shifted from the wall clock by up to 2.5 minutes (docs/testing.md, "The
shared stack's clock"), as the demo and the grid-event scenario run on accelerated ones: a job time taken
from ``datetime.now()`` in a DAG lands in the planner's future or past (seen: the resume-race DAG's critical
jobs waited for an earliest start the wall clock had put ahead; the test took 203 s instead of 55). Checked on
the source (``ast``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FOLDERS = [
    REPO / "example_dags",
    REPO / "tests" / "integration" / "dags",
    REPO / "tests" / "integration" / "scenario_dags",
]
#: Calls that read the wall clock: (the object's name, the attribute called).
WALL_CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("pendulum", "now"), ("time", "time")}


def wall_clock_calls(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` for every wall-clock read in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if (name, node.func.attr) in WALL_CLOCK_CALLS:
                found.append((node.lineno, f"{name}.{node.func.attr}()"))
    return found


def test_the_check_finds_each_way_of_reading_the_wall_clock() -> None:
    source = "import datetime, time, pendulum\na = datetime.datetime.now()\nb = time.time()\nc = pendulum.now('UTC')\n"
    assert wall_clock_calls(source) == [(2, "datetime.now()"), (3, "time.time()"), (4, "pendulum.now()")]
    assert (
        wall_clock_calls("from airflow_provider_gridaware.times import current_clock\nx = current_clock().now()\n")
        == []
    )


@pytest.mark.parametrize(
    "path", sorted(p for folder in DAG_FOLDERS for p in folder.glob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_dag_files_take_now_from_the_providers_clock(path: Path) -> None:
    found = wall_clock_calls(path.read_text())
    assert not found, (
        f"{path.relative_to(REPO)} reads the wall clock at {found}: use "
        "airflow_provider_gridaware.times.current_clock().now() (the stacks run on shifted or accelerated clocks)"
    )
