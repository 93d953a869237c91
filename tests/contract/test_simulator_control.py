"""The simulator's control API (/_sim), its fault specs, speed-up, and the ``simulate serve`` command."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from airflow_provider_gridaware.simulator import SimulatorHandle, start_simulator
from airflow_provider_gridaware.simulator.cli import main as simulate_main
from airflow_provider_gridaware.simulator.faults import FaultBook, FaultMode, FaultSpec, parse_fault_spec
from tests.conftest import REPO

UTC = timezone.utc


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with start_simulator() as handle:
        yield handle


@pytest.fixture(autouse=True)
def _no_faults(sim: SimulatorHandle) -> Iterator[None]:
    yield
    sim.clear_faults()


def write_trace(path: Path, zone: str = "ZZ") -> Path:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [f"{(start + timedelta(hours=h)).isoformat()},{zone},{100 + h % 24}" for h in range(24 * 8)]
    path.write_text("time,zone,value\n" + "\n".join(rows) + "\n")
    return path


# -- fault specs -------------------------------------------------------------------------------------------------
def test_fault_spec_forms():
    assert parse_fault_spec("ukci:error") == FaultSpec(target="ukci", mode=FaultMode.ERROR)
    spec = parse_fault_spec("*:rate_limit:retry_after=120,count=2,path=/v3/forecast")
    assert (spec.target, spec.mode, spec.retry_after, spec.count, spec.path) == (
        "*",
        FaultMode.RATE_LIMIT,
        120,
        2,
        "/v3/forecast",
    )
    assert parse_fault_spec('{"target": "entsoe", "mode": "stale", "stale_hours": 3}').stale_hours == 3
    assert spec.http_status == 429 and parse_fault_spec("ukci:error").http_status == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ukci", "TARGET:MODE"),
        ("moon:error", "target must be one of"),
        ("ukci:explode", "mode"),
        ("ukci:error:status", "not key=value"),
        ("ukci:error:count=0", "count"),
        ("ukci:error:colour=red", "colour"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_fault_spec(text)


def test_fault_book_counts_and_matches():
    book = FaultBook([FaultSpec(target="ukci", mode=FaultMode.ERROR, count=2)])
    book.add(FaultSpec(target="*", mode=FaultMode.NAN, path="/v3"))
    assert book.take("watttime", "/login") is None
    assert book.take("watttime", "/v3/forecast").mode is FaultMode.NAN
    assert book.take("ukci", "/intensity").mode is FaultMode.ERROR
    assert book.describe()[0]["remaining"] == 1
    assert book.take("ukci", "/intensity").mode is FaultMode.ERROR
    assert book.take("ukci", "/intensity") is None  # used up
    assert book.clear("ukci") == 0 and book.clear() == 1


# -- control API ---------------------------------------------------------------------------------------------------
def test_state_reports_clock_zones_traces_faults_and_counts(sim):
    sim.add_fault("ukci:rate_limit:count=3")
    requests.get(f"{sim.url}/ukci/intensity", timeout=10)
    state = sim.state()
    assert state["clock"]["anchor"] == "now" and state["clock"]["speedup"] == 1.0
    assert state["zones"]["carbon"] == ["GB"] and state["zones"]["national"] == "GB"
    assert state["zones"]["entsoe_domains"] == {"GB": "10YGB----------A"}
    carbon = state["traces"]["carbon"][0]
    assert carbon["file"].endswith("gb_national_actual_2023-05-26_2023-06-25.csv")
    assert carbon["loop_days"] == 28 and carbon["synthetic"] is False
    assert state["traces"]["price"][0]["synthetic"] is True
    assert "SYNTHETIC" in state["prices"]["note"]
    assert state["faults"][0]["mode"] == "rate_limit" and state["faults"][0]["remaining"] == 2
    assert state["requests"]["ukci"] >= 1


def test_requests_are_counted_per_path_with_times_folded(sim):
    for start in ("2026-12-04T10:00Z", "2026-12-04T10:30Z"):
        requests.get(f"{sim.url}/ukci/intensity/{start}/fw48h", timeout=10)
    requests.get(f"{sim.url}/ukci/intensity/2026-12-04T10:00Z/pt24h", timeout=10)
    counts = sim.state()["requests_by_path"]
    assert counts["/ukci/intensity/{time}/fw48h"] == 2
    assert counts["/ukci/intensity/{time}/pt24h"] == 1


def test_faults_api_validates_and_clears_by_target(sim):
    bad = requests.post(f"{sim.url}/_sim/faults", json={"target": "ukci", "mode": "melt"}, timeout=10)
    assert bad.status_code == 422 and "mode" in bad.json()["error"]
    broken = requests.post(f"{sim.url}/_sim/faults", data="{", timeout=10)
    assert broken.status_code == 422
    sim.add_fault({"target": "ukci", "mode": "error"}, "entsoe:empty")
    assert len(sim.state()["faults"]) == 2
    sim.clear_faults("ukci")
    assert [f["target"] for f in sim.state()["faults"]] == ["entsoe"]
    sim.clear_faults()
    assert sim.state()["faults"] == []
    assert sim.state()["requests"].get("_sim") is None  # the control API is not counted


def test_clock_can_be_set_sped_up_and_advanced(sim):
    target = datetime(2031, 3, 4, 5, 6, tzinfo=UTC)
    try:
        assert sim.set_clock(now=target) >= target
        assert sim.set_clock(advance=timedelta(hours=2)) >= target + timedelta(hours=2)
        payload = requests.get(f"{sim.url}/ukci/intensity", timeout=10).json()
        assert payload["data"][0]["from"] == "2031-03-04T07:00Z"
        sim.set_clock(speedup=3600)
        before = sim.now()
        time.sleep(0.2)
        assert sim.now() - before >= timedelta(minutes=10)  # 0.2 wall seconds = 12 simulated minutes
        bad = requests.post(f"{sim.url}/_sim/clock", json={"speedup": 0}, timeout=10)
        assert bad.status_code == 422 and "positive" in bad.json()["error"]
        assert requests.post(f"{sim.url}/_sim/clock", json={"when": 1}, timeout=10).status_code == 422
    finally:
        sim.set_clock(now=datetime.now(UTC), speedup=1)


def test_speedup_at_start_and_several_traces(tmp_path):
    trace = write_trace(tmp_path / "zz.csv")
    with start_simulator(traces=[trace], speedup=7200) as fast:
        state = fast.state()
        assert state["zones"]["carbon"] == ["ZZ"] and state["zones"]["national"] == "ZZ"
        first = fast.now()
        time.sleep(0.1)
        assert fast.now() - first >= timedelta(minutes=10)
        # The GB API serves the first trace nationally when there is no GB trace.
        assert requests.get(f"{fast.url}/ukci/intensity", timeout=10).json()["data"]


def test_handle_control_errors_are_clear(sim):
    with pytest.raises(ValueError, match="HTTP 422"):
        sim._call("POST", "/_sim/faults", {"mode": "nope"})


def test_simulator_fails_clearly_on_a_bad_trace(tmp_path):
    from airflow_provider_gridaware.signals import SourceConfigError

    with pytest.raises(SourceConfigError, match="no such file"):
        start_simulator(traces=[tmp_path / "missing.csv"])


# -- command line -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--trace", "/nonexistent/trace.csv"], "no such file or folder"),
        (["serve", "--fault", "ukci:boom"], "--fault"),
        (["serve", "--speedup", "0"], "--speedup must be positive"),
        (["serve", "--now", "soon"], "not an ISO 8601"),
        (["serve", "--port", "70000"], "--port must be between"),
        (["serve", "--price-trace", "/nonexistent/p.csv"], "--price-trace"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert simulate_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("gridaware simulate:")


def test_bad_trace_content_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,zone,value\n2024-01-01T00:00Z,ZZ,oops\n")
    assert simulate_main(["serve", "--trace", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad.csv:2" in err and "\n" not in err


def test_port_in_use_is_a_one_line_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert simulate_main(["serve", "--port", str(port)]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


def run_server(
    tmp_path: Path, *extra: str, module: str = "airflow_provider_gridaware.simulator.cli"
) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp_path / "ready"
    argv = [sys.executable, "-m", module]
    argv += ["simulate"] if module == "airflow_provider_gridaware.cli" else []
    argv += ["serve", "--port", "0", "--ready-file", str(ready), *extra]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"simulator did not start: {err.decode()[-2000:]}")
        time.sleep(0.05)
    return process, ready.read_text().strip()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_writes_its_url_and_stops_cleanly_on_a_signal(tmp_path, stop_signal):
    trace = write_trace(tmp_path / "zz.csv")
    process, url = run_server(tmp_path, "--trace", f"{trace}:ZZ", "--fault", "ukci:error:count=1", "--speedup", "60")
    try:
        assert url.startswith("http://127.0.0.1:")
        state = requests.get(f"{url}/_sim/state", timeout=10).json()
        assert state["zones"]["carbon"] == ["ZZ"]
        assert state["clock"]["speedup"] == 60
        assert state["faults"][0]["target"] == "ukci"
        assert requests.get(f"{url}/ukci/intensity", timeout=10).status_code == 500
        assert requests.get(f"{url}/ukci/intensity", timeout=10).status_code == 200
    finally:
        process.send_signal(stop_signal)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert b"listening on" in out and b"stopped" in out
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_sim/state", timeout=2)


def test_gridaware_simulate_serve_entry_point(tmp_path):
    from airflow_provider_gridaware import cli

    try:
        cli.build_parser()
    except (
        ModuleNotFoundError
    ) as exc:  # another subcommand is not written yet; the simulator's own entry is tested above
        pytest.skip(f"the gridaware command does not load yet: {exc}")
    process, url = run_server(tmp_path, module="airflow_provider_gridaware.cli")
    try:
        assert requests.get(f"{url}/ukci/intensity", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_start_simulator_as_a_subprocess(tmp_path):
    trace = write_trace(tmp_path / "zz.csv")
    handle = start_simulator(in_process=False, traces=[f"{trace}:ZZ"], faults=["entsoe:empty"], forecast_error=0)
    try:
        assert handle.pid is not None and handle.grid is None
        state = handle.state()
        assert state["zones"]["carbon"] == ["ZZ"]
        assert state["faults"][0]["target"] == "entsoe"
        assert state["forecast"]["error_fraction_at_24h"] == 0
    finally:
        handle.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(handle.pid, 0)
