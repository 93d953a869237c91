"""The demo's pure parts: where the clean window goes, whose home it wipes, the report step's guard."""

from __future__ import annotations

import io
import socket
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.demo import run as demo_run
from airflow_provider_gridaware.demo.processes import StackError
from airflow_provider_gridaware.demo.run import (
    HOME_MARKER,
    Narrator,
    prepare_home,
    shorten_repeated_reason,
    usable_port,
    window_lead,
    write_daily_report,
)
from airflow_provider_gridaware.times import ScaledClock

UTC = timezone.utc


@pytest.mark.parametrize(
    ("now", "at_least", "opens"),
    [
        (
            datetime(2026, 12, 4, 14, 33, 20, tzinfo=UTC),
            timedelta(minutes=50),
            datetime(2026, 12, 4, 15, 29, tzinfo=UTC),
        ),
        (datetime(2026, 12, 4, 14, 41, tzinfo=UTC), timedelta(minutes=50), datetime(2026, 12, 4, 15, 59, tzinfo=UTC)),
        (datetime(2026, 12, 4, 14, 40, tzinfo=UTC), timedelta(minutes=50), datetime(2026, 12, 4, 15, 29, tzinfo=UTC)),
        (datetime(2026, 12, 4, 23, 50, tzinfo=UTC), timedelta(minutes=10), datetime(2026, 12, 4, 23, 59, tzinfo=UTC)),
    ],
)
def test_the_window_opens_a_minute_before_a_half_hour_at_least_the_lead_ahead(
    now: datetime, at_least: timedelta, opens: datetime
) -> None:
    lead = window_lead(now, at_least)
    assert now + lead == opens
    # The half-hour period the planner starts in lies wholly inside the window, and the lead is respected
    # up to the minute's head start.
    assert lead >= at_least - timedelta(minutes=1)


def test_prepare_home_wipes_only_an_earlier_demo(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prepare_home(home)
    (home / "airflow.db").write_text("old")
    prepare_home(home)
    assert (home / HOME_MARKER).exists() and not (home / "airflow.db").exists()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(StackError, match="was not made by the demo"):
        prepare_home(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_a_taken_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = usable_port(port)
    assert other != port and other > 0
    assert usable_port(0) > 0


def test_a_failing_report_command_fails_the_demo_with_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `gridaware` that fails like a broken report would.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    script = fake_bin / "gridaware"
    script.write_text('#!/bin/sh\necho "report: no ledger at $AIRFLOW_HOME" >&2\nexit 3\n')
    script.chmod(0o755)
    monkeypatch.setattr(demo_run, "VENV_BIN", fake_bin)
    say = Narrator(ScaledClock(0.0, 0.0, 60.0), io.StringIO())
    with pytest.raises(StackError, match=r"exited 3:[\s\S]*no ledger at /somewhere"):
        write_daily_report(date(2026, 12, 4), tmp_path / "reports", {"AIRFLOW_HOME": "/somewhere"}, say)


def test_a_release_reason_already_narrated_is_pointed_to_not_repeated() -> None:
    reason = "released after waiting 1 h 51 min in GB: expected 14 gCO2eq/kWh vs 111 gCO2eq/kWh, 87% lower"
    narrated = ["deferring until the job's grid window: waiting 1 h 51 min: starts 2026-12-06T04:00:00Z"]
    # The trigger's line comes first and is printed whole.
    assert shorten_repeated_reason(f"released: {reason}", narrated) == f"released: {reason}"
    narrated.append(f"released: {reason}")
    assert shorten_repeated_reason(f"grid window open: {reason}", narrated) == "grid window open: as above"
    narrated.append(f"grid window open: {reason}")
    running = f"running in GB from 2026-12-06T04:00:00Z (best_now): {reason}"
    assert shorten_repeated_reason(running, narrated) == "running in GB from 2026-12-06T04:00:00Z (best_now): as above"
    # Another reason, or a short one, is printed as it is.
    other = "released after waiting 2 h in GB: expected 20 gCO2eq/kWh vs 111 gCO2eq/kWh, 82% lower"
    assert shorten_repeated_reason(f"grid window open: {other}", narrated) == f"grid window open: {other}"
    assert shorten_repeated_reason("ran in: GB", ["released: GB"]) == "ran in: GB"
