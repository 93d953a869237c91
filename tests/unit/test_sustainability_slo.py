"""Sustainability SLOs from the ledger: measured by hand-computed cases, and the notifier alert fires on a
breach and stays silent while the SLO holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.sdk import BaseNotifier

from airflow_provider_gridaware.ledger.slo import SloMetric, SustainabilitySlo, evaluate
from airflow_provider_gridaware.operators.sustainability_slo import SloBreachedError, SustainabilitySloOperator
from tests.support.ledger import InMemoryLedger, record

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def ledger() -> InMemoryLedger:
    day = timedelta(days=1)
    return InMemoryLedger(
        [
            # "train": 100 kWh at 120 and 300 kWh at 200 g/kWh -> mean 180, 72 kg; one of two runs cleaner
            record("train", NOW - 2 * day, energy_kwh=100, intensity=120, counterfactual_intensity=250),
            record("train", NOW - 5 * day, energy_kwh=300, intensity=200, counterfactual_intensity=180),
            record("train", NOW - 40 * day, energy_kwh=1000, intensity=900),  # outside 30 days
            record("etl", NOW - 1 * day, energy_kwh=50, intensity=100, counterfactual_intensity=300),
            record("train", NOW - 3 * day, kind="marginal", energy_kwh=100, intensity=700),  # never mixed in
        ]
    )


def test_each_metric_matches_a_hand_computed_case():
    records = ledger().records(NOW - timedelta(days=30), NOW + timedelta(seconds=1))
    mean = evaluate(SustainabilitySlo("mean", SloMetric.MEAN_INTENSITY, 190, dag_ids=("train",)), records)
    assert (mean.value, mean.runs, mean.breached) == (pytest.approx(180.0), 2, False)
    monthly = evaluate(SustainabilitySlo("kg", "kg_per_month", 50, dag_ids=("train",)), records)
    assert (monthly.value, monthly.breached) == (pytest.approx(72.0), True)
    weekly = evaluate(
        SustainabilitySlo("kg7", "kg_per_month", 50, dag_ids=("train",), period=timedelta(days=15)), records
    )
    assert weekly.value == pytest.approx(144.0)  # the same emissions over half the period: twice per 30 days
    share = evaluate(
        SustainabilitySlo("clean", "clean_share", 0.75, tags=("ml",)), records, {"train": ["ml"], "etl": ["ml"]}
    )
    assert (share.value, share.runs, share.dag_ids, share.breached) == (pytest.approx(2 / 3), 3, ("etl", "train"), True)
    assert (
        "BREACHED: 67% of runs in cleaner windows over 3 run(s) in the last 30 days (target at least 75%"
        in share.describe()
    )
    unjudged = evaluate(SustainabilitySlo("few", "mean_intensity", 1, dag_ids=("etl",), min_runs=3), records)
    assert (unjudged.value, unjudged.breached) == (None, False)


def test_bad_slos_are_refused_with_their_name():
    with pytest.raises(ValueError, match="SLO 'x': give dag_ids or tags"):
        SustainabilitySlo("x", "mean_intensity", 100)
    with pytest.raises(ValueError, match="SLO 'y': a clean_share target is a share between 0 and 1"):
        SustainabilitySlo("y", "clean_share", 80, dag_ids=("a",))
    with pytest.raises(ValueError, match="SLO 'z': 'gco2' is not a valid SloMetric"):
        SustainabilitySlo.from_dict({"name": "z", "metric": "gco2", "target": 1, "dag_ids": ["a"]})


class RecordingNotifier(BaseNotifier):
    """A notifier double: keeps what it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def notify(self, context: Any) -> None:
        self.sent.append(context["slo_breach"])


def run_check(slos: list[dict[str, Any]], monkeypatch, **kwargs: Any) -> tuple[RecordingNotifier, list[dict[str, Any]]]:
    notifier = RecordingNotifier()
    operator = SustainabilitySloOperator(task_id="slo", slos=slos, notifiers=notifier, **kwargs)
    monkeypatch.setattr(operator, "ledger", ledger)
    return notifier, operator.execute({"dag_run": None})  # type: ignore[arg-type]


def test_the_notifier_fires_on_a_breach(monkeypatch):
    notifier, statuses = run_check(
        [{"name": "train-monthly", "metric": "kg_per_month", "target": 50, "dag_ids": ["train"]}], monkeypatch
    )
    assert notifier.sent == [statuses[0]["text"]]
    assert notifier.sent[0].startswith("SLO train-monthly BREACHED: 72.0 kgCO2eq per 30 days")


def test_the_notifier_stays_silent_while_the_slos_hold(monkeypatch):
    notifier, statuses = run_check(
        [
            {"name": "train-monthly", "metric": "kg_per_month", "target": 100, "dag_ids": ["train"]},
            {"name": "ml-clean", "metric": "clean_share", "target": 0.6, "tags": ["ml"]},
        ],
        monkeypatch,
        dag_tags={"train": ["ml"], "etl": ["ml", "nightly"]},
    )
    assert notifier.sent == []
    assert [s["breached"] for s in statuses] == [False, False]


def test_fail_on_breach_fails_the_task_after_notifying(monkeypatch):
    with pytest.raises(SloBreachedError, match="SLO train-mean BREACHED: 180 gCO2eq/kWh"):
        run_check(
            [{"name": "train-mean", "metric": "mean_intensity", "target": 150, "dag_ids": ["train"]}],
            monkeypatch,
            fail_on_breach=True,
        )


def test_tag_slos_need_the_dags_tags():
    with pytest.raises(ValueError, match=r"SLOs \['ml'\] are set per tag: give dag_tags"):
        SustainabilitySloOperator(
            task_id="slo", slos=[{"name": "ml", "metric": "clean_share", "target": 0.5, "tags": ["ml"]}]
        )


def test_the_slo_window_ends_at_the_providers_clock(monkeypatch):
    # The ledger records runs on the provider's clock: on a simulated one (the demo's) the window must end at
    # its now, not the wall clock's, or it holds runs that have not happened yet on that clock, or misses some.
    from airflow_provider_gridaware.times import CLOCK_ENV, ScaledClock

    earlier = NOW - timedelta(days=3)  # "train" ran 2 days before NOW (after this clock) and 5 days before
    monkeypatch.setenv(CLOCK_ENV, ScaledClock(earlier.timestamp(), datetime.now(timezone.utc).timestamp(), 1.0).spec())
    _, statuses = run_check(
        [{"name": "train-monthly", "metric": "kg_per_month", "target": 50, "dag_ids": ["train"]}],
        monkeypatch,
    )
    assert statuses[0]["text"].startswith("SLO train-monthly BREACHED: 60.0 kgCO2eq per 30 days"), statuses
