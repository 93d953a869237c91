"""``gridaware demo`` (what ``make demo`` runs), end to end, as a user runs it.

The demo starts its own Airflow 3.3 and simulator (not the session's stack: what is checked is that the
command brings up everything itself), so this test runs the command as a subprocess in a fresh home and
checks what it prints: the example task deferring, the triggerer's decisions, the release inside the
clean window, the daily report step, exit code 0, and that nothing it started is left running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from airflow_provider_gridaware.demo.processes import proc_stat
from airflow_provider_gridaware.times import parse_time
from tests.integration.airflow_stack import VENV_BIN

pytestmark = [pytest.mark.integration, pytest.mark.own_stack, pytest.mark.timeout(900)]

#: Wall seconds the whole demo may take here (Airflow start, a ~1 minute wait for the window, the report).
DEMO_TIMEOUT = 600


def _processes_with_home(home: Path) -> list[int]:
    """Live processes whose environment has ``AIRFLOW_HOME=home`` (the demo's components and runners)."""
    needle = f"AIRFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and proc_stat(int(entry.name)) is not None:
            found.append(int(entry.name))
    return found


def test_make_demo_shows_the_deferral_the_release_and_the_report(tmp_path: Path) -> None:
    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST_"))}
    result = subprocess.run(
        [str(VENV_BIN / "gridaware"), "demo", "--home", str(home)],
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )
    out = result.stdout
    transcript = f"exit {result.returncode}\n--- stdout\n{out}\n--- stderr\n{result.stderr[-6000:]}"
    assert result.returncode == 0, transcript
    lines = out.splitlines()

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
        assert found, f"no line matching {pattern!r}\n{transcript}"
        return found[0]

    # In the order a user sees them: deferred with a plan, decisions in the triggerer, released, success.
    deferred = first(r"retrain_model is deferred")
    plan = first(r"retrain_model: deferring until the job's grid window: waiting .*: starts \S+Z: expected \d+")
    decision = first(r"retrain_model: decision 1 .*: waiting .*: starts \S+Z")
    released = first(r"retrain_model: released: released after waiting .* in GB: expected \d+ gCO2eq/kWh vs \d+")
    success = first(r"retrain_model is success")
    assert max(deferred, plan) < decision < released < success, transcript
    window = re.search(r"clean window was (\S+) to (\S+): the release was inside it\.", out)
    ran = re.search(r"Decision: waited in the triggerer, then ran retrain_model in GB from (\S+) \(simulated\)", out)
    assert window and ran, transcript
    opened, closed, ran_from = (parse_time(text, what="time") for text in (*window.groups(), ran.group(1)))
    assert opened <= ran_from < closed, transcript
    # The report step: the real report, written under the demo's home.
    match = re.search(r"Daily report for (\d{4}-\d{2}-\d{2}): (\S+)", out)
    assert match and Path(match.group(2)).exists(), transcript
    assert Path(match.group(2)).is_relative_to(home / "reports"), transcript
    assert Path(match.group(2)).name == "report.html", transcript
    # The run's energy, estimated from 8 H100s (700 W, PUE 1.2) over the stand-in's ~30 simulated minutes
    # (plus the task's own overhead), and what starting in the window saved: in the headline and the summary.
    headline = re.search(r"report: \S+: 1 try; ([\d.]+) kWh; ([\d.]+) kgCO2e average, saved ([\d.]+) kg", out)
    assert headline, transcript
    summary = json.loads((Path(match.group(2)).parent / "summary.json").read_text())
    assert 8 * 0.7 * 1.2 * 0.5 <= summary["energy_kwh"] < 8 * 0.7 * 1.2 * 0.75, summary
    assert float(headline.group(1)) == round(summary["energy_kwh"], 1)
    (average,) = summary["carbon"]
    assert average["intensity_kind"] == "average" and average["saved_kg"] > 0.5 * average["counterfactual_kg"], summary
    assert re.search(r"Airflow UI: http://127\.0\.0\.1:\d+", out), transcript
    assert not _processes_with_home(home), f"the demo left processes running: {_processes_with_home(home)}"
