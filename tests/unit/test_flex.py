"""``gridaware flex --json``: the fleet's planned power and sheddable power, against a case computed by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from airflow_provider_gridaware.cli import main
from airflow_provider_gridaware.planning.flexibility import FleetWork

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)

FLEET = [
    # running, stops within 10 min: shed within 15 and 60, not 5
    {"name": "A", "zone": "GB", "priority_class": "flexible", "power_kw": 100, "running": True,
     "start": "2026-12-04T11:00:00Z", "end": "2026-12-04T12:40:00Z", "interruptible": True, "stop_within_s": 600},
    # critical: never shed
    {"name": "B", "zone": "GB", "priority_class": "critical", "power_kw": 50, "running": True,
     "start": "2026-12-04T11:30:00Z", "end": "2026-12-04T13:30:00Z", "interruptible": True},
    # waiting, starts 12:10 and may be held until 14:00: shed within 15 and 60
    {"name": "C", "zone": "GB", "priority_class": "batch", "power_kw": 200,
     "start": "2026-12-04T12:10:00Z", "end": "2026-12-04T12:50:00Z", "latest_start": "2026-12-04T14:00:00Z"},
    # waiting, starts 12:30 but must start by 12:45: cannot be held past 13:00, so never shed
    {"name": "D", "zone": "DE", "priority_class": "flexible", "power_kw": 80,
     "start": "2026-12-04T12:30:00Z", "end": "2026-12-04T13:30:00Z", "latest_start": "2026-12-04T12:45:00Z"},
    # running, not interruptible: never shed
    {"name": "E", "zone": "DE", "priority_class": "batch", "power_kw": 40, "running": True,
     "start": "2026-12-04T11:00:00Z", "end": "2026-12-04T14:00:00Z"},
    # running, stops within a minute: shed within 5, 15 and 60
    {"name": "F", "zone": "GB", "priority_class": "batch", "power_kw": 30, "running": True,
     "start": "2026-12-04T10:00:00Z", "end": "2026-12-04T12:20:00Z", "interruptible": True, "stop_within_s": 60},
]  # fmt: skip


def run_flex(tmp_path, capsys, *extra: str) -> dict:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps(FLEET))
    assert main(["flex", "--json", "--fleet", str(fleet), "--at", "2026-12-04T12:00:00Z", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_flex_json_matches_the_hand_computed_case(tmp_path, capsys):
    report = run_flex(tmp_path, capsys, "--hours", "1")
    gb, de = report["zones"]["GB"], report["zones"]["DE"]
    # 15-min means: A 100 until 12:40, B 50, C 200 from 12:10 to 12:50, F 30 until 12:20
    assert [t for t, _ in gb["planned_kw"]] == [f"2026-12-04T12:{m:02d}:00Z" for m in (0, 15, 30, 45)]
    assert [kw for _, kw in gb["planned_kw"]] == pytest.approx(
        [100 + 50 + 200 * 5 / 15 + 30, 100 + 50 + 200 + 30 * 5 / 15, 100 * 10 / 15 + 50 + 200, 50 + 200 * 5 / 15],
        abs=1e-3,
    )
    assert [kw for _, kw in de["planned_kw"]] == [40, 40, 120, 120]
    assert (gb["power_now_kw"], de["power_now_kw"]) == (180, 40)
    assert gb["shed_kw"] == {
        "critical": {"5": 0, "15": 0, "60": 0},
        "flexible": {"5": 0, "15": 100, "60": 100},
        "batch": {"5": 30, "15": 230, "60": 230},
    }
    assert de["shed_kw"] == {cls: {"5": 0, "15": 0, "60": 0} for cls in ("critical", "flexible", "batch")}
    assert report["work"] == 6


def test_flex_defaults_to_48_hours_in_15_minute_steps(tmp_path, capsys):
    report = run_flex(tmp_path, capsys)
    assert len(report["zones"]["GB"]["planned_kw"]) == 48 * 4
    assert report["zones"]["GB"]["planned_kw"][-1][0] == "2026-12-06T11:45:00Z"


def test_bad_fleet_input_is_named(tmp_path, capsys):
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps([{**FLEET[0], "priority_class": "urgent"}]))
    assert main(["flex", "--json", "--fleet", str(fleet)]) == 1
    assert "fleet work 'A': A: priority_class must be one of" in capsys.readouterr().err
    with pytest.raises(ValueError, match="end 2026-12-04T12:00:00Z is not after start"):
        FleetWork("x", "GB", "batch", 1, NOW, NOW)


def test_steps_sit_on_their_own_boundaries(tmp_path, capsys):
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps(FLEET))
    assert main(["flex", "--json", "--fleet", str(fleet), "--at", "2026-12-04T12:07:30Z", "--hours", "1"]) == 0
    gb = json.loads(capsys.readouterr().out)["zones"]["GB"]
    assert [t for t, _ in gb["planned_kw"]] == [f"2026-12-04T12:{m:02d}:00Z" for m in (0, 15, 30, 45)]
    # 12:00-12:15 holds A, B and F throughout and C from 12:10: the same figures as at 12:00
    assert gb["planned_kw"][0][1] == pytest.approx(100 + 50 + 200 * 5 / 15 + 30, abs=1e-3)
