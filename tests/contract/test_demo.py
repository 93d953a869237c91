"""``gridaware demo`` (what ``make demo`` runs): every source read through its hook, then ``decide()``."""

from __future__ import annotations

import json

import pytest

from airflow_provider_gridaware.cli import main


def test_demo_reads_every_source_and_shows_the_decision(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("GRIDAWARE_ARCHIVE", "0")
    assert main(["demo", "--signals", "--hours", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {r["source"] for r in rows} == {"ukci", "electricity_maps", "watttime", "entsoe", "replay"}
    for row in rows:
        assert row["decision"] in ("release", "wait") and row["reason"]
        if row["decision"] == "wait":
            assert "waiting" in row["reason"] or "no usable signal" in row["reason"]
