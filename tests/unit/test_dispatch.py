"""The pieces every dispatch operator shares: label values, selectors, targets and the checkpoint contract."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from airflow_provider_gridaware.dispatch import (
    ANNOTATION_PLAN,
    ENV_CHECKPOINT_DIR,
    ENV_CHECKPOINT_ON_SIGTERM,
    LABEL_MANAGED,
    CheckpointContract,
    DispatchTarget,
    job_annotations,
    job_labels,
    label_selector,
    label_value,
    targets_by_zone,
    zone_penalties,
)

VALID_LABEL = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")


@pytest.mark.parametrize(
    "text",
    [
        "train",
        "manual__2026-01-01T00:00:00+00:00",
        "scheduled__2026-11-26T00:00:00.123456+00:00",
        "x" * 200,
        "--weird--",
        "é",
        "a/b:c",
    ],
)
def test_label_values_are_valid_kubernetes_labels(text):
    assert VALID_LABEL.match(label_value(text)), label_value(text)


def test_label_value_keeps_valid_text_and_distinguishes_sanitised_ones():
    assert label_value("train_model.v2") == "train_model.v2"
    a = label_value("manual__2026-01-01T00:00:00+00:00")
    b = label_value("manual__2026-01-01T00:00:00-00:00")
    assert a != b
    assert label_value("y" * 64) != label_value("y" * 65)


def test_job_labels_mark_the_job_managed_and_selectable():
    labels = job_labels(priority_class="batch", zone="DE", dag_id="d", task_id="t", run_id="manual__1:2")
    assert labels[LABEL_MANAGED] == "true"
    assert all(VALID_LABEL.match(v) for v in labels.values())


def test_annotations_carry_the_exact_plan_as_json():
    annotations = job_annotations(job_id="d/r/t", run_id="r", attempt=2, decision={"plan": {"zone": "DE"}})
    assert json.loads(annotations[ANNOTATION_PLAN]) == {"plan": {"zone": "DE"}}
    assert "gridaware.io/plan" not in job_annotations(job_id="j", run_id="r", attempt=1, decision=None)


def test_annotations_carry_the_generation_only_when_given():
    assert (
        job_annotations(job_id="j", run_id="r", attempt=1, decision=None, generation=3)["gridaware.io/generation"]
        == "3"
    )
    assert "gridaware.io/generation" not in job_annotations(job_id="j", run_id="r", attempt=1, decision=None)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, "gridaware.io/managed=true"),
        ({"gridaware.io/priority-class": "batch"}, "gridaware.io/managed=true,gridaware.io/priority-class=batch"),
        ("gridaware.io/zone in (DE,FR)", "gridaware.io/managed=true,gridaware.io/zone in (DE,FR)"),
        ("gridaware.io/managed=true,a=b", "gridaware.io/managed=true,a=b"),
    ],
)
def test_selectors_are_always_scoped_to_managed_jobs(selector, expected):
    assert label_selector(selector) == expected


def test_targets_need_one_per_zone_and_give_penalties():
    targets = [DispatchTarget(zone="DE"), DispatchTarget(zone="FR", penalty=0.2)]
    assert list(targets_by_zone(targets, what="op")) == ["DE", "FR"]
    assert zone_penalties(targets) == {"FR": 0.2}
    with pytest.raises(ValueError, match="two targets for zone 'DE'"):
        targets_by_zone([DispatchTarget(zone="DE"), DispatchTarget(zone="DE")], what="op")
    with pytest.raises(ValueError, match="at least one"):
        targets_by_zone([], what="op")
    with pytest.raises(ValidationError):
        DispatchTarget(zone="")


def test_checkpoint_contract_env():
    env = CheckpointContract(path="/ckpt", grace_period_seconds=30).env(job_id="j", attempt=2, zone="DE")
    assert env[ENV_CHECKPOINT_DIR] == "/ckpt"
    assert env[ENV_CHECKPOINT_ON_SIGTERM] == "1"
    assert env["GRIDAWARE_ATTEMPT"] == "2"
    without = CheckpointContract().env(job_id="j", attempt=1, zone="DE")
    assert ENV_CHECKPOINT_DIR not in without
    assert without[ENV_CHECKPOINT_ON_SIGTERM] == "0"
