"""What a dispatch operator logs on the worker when its window opens: the wait as the trigger released it.

Airflow 3.3's triggerer truncates a try's trigger log when the next trigger of the same try starts on the same
triggerer, so the completion watch replaces the window trigger's decisions: the worker's line must carry them.
"""

from __future__ import annotations

import logging

import pytest

from airflow_provider_gridaware.window import GridWindowMixin


class _Operator(GridWindowMixin):
    log = logging.getLogger("gridaware.test.window_open")


def test_the_wait_its_decisions_and_the_problems_met_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    event = {
        "reason": "released after waiting 1 h 35 min in FR: expected 52 gCO2eq/kWh vs 310 gCO2eq/kWh",
        "replans": 4,
        "problems": ["ukci: timed out after 10 s"],
        "plan": {"zone": "FR", "reason": "starts now: expected 52 gCO2eq/kWh in FR"},
    }
    with caplog.at_level(logging.INFO, logger=_Operator.log.name):
        _Operator().log_window_open(event, "FR")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", f"grid window open in zone FR (4 decisions in the triggerer): {event['reason']}"),
        ("INFO", "released plan: starts now: expected 52 gCO2eq/kWh in FR"),
        ("WARNING", "while waiting: ukci: timed out after 10 s"),
    ]


def test_an_event_without_the_wait_falls_back_to_the_plans_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=_Operator.log.name):
        _Operator().log_window_open({"plan": {"zone": "SE", "reason": "starts now"}, "replans": 1}, "SE")
    assert [r.getMessage() for r in caplog.records] == [
        "grid window open in zone SE (1 decision in the triggerer): starts now"
    ]
