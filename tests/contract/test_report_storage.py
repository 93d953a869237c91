"""The daily report written to S3 (moto_server on loopback) through an Airflow AWS connection, no s3fs."""

from __future__ import annotations

from datetime import date

import pytest

from airflow_provider_gridaware.ledger.file import InMemoryLedger
from airflow_provider_gridaware.operators import carbon_report
from airflow_provider_gridaware.operators.carbon_report import CarbonReportConfigError, write_report
from airflow_provider_gridaware.reporting.daily import build_daily_report, day_bounds
from airflow_provider_gridaware.reporting.render import render_report_files
from tests.contract.conftest import CONN
from tests.support.ledger_day import fixed_day_records
from tests.support.moto_server import MotoServer

pytest.importorskip("airflow.providers.amazon", reason="the [aws] extra writes s3:// through S3Hook")
BUCKET = "carbon-reports"


def test_the_report_lands_in_s3(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carbon_report, "_has_s3fs", lambda: False)  # the locked botocore rules s3fs out
    s3 = aws.client("s3", "eu-west-2")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    day = date(2026, 12, 1)
    report = build_daily_report(day, InMemoryLedger(fixed_day_records()).records(*day_bounds(day)))
    files = render_report_files(report, draw_charts=lambda r: {"charts/intensity-GB.png": b"\x89PNG fake"})

    location = write_report(files, f"s3://{BUCKET}/daily/{day}/", CONN)

    assert location == f"s3://{BUCKET}/daily/{day}"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="daily/")["Contents"]
    assert {o["Key"] for o in listed} == {f"daily/{day}/{name}" for name in files}
    for name, data in files.items():
        assert s3.get_object(Bucket=BUCKET, Key=f"daily/{day}/{name}")["Body"].read() == data


def test_an_s3_url_without_a_bucket_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(carbon_report, "_has_s3fs", lambda: False)
    with pytest.raises(CarbonReportConfigError, match="names no bucket"):
        write_report({"report.html": b""}, "s3:///daily", None)
