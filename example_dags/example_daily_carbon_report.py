"""Write the daily carbon report every night: what the grid-aware tasks used, emitted, paid and saved.

What it shows:

* ``DailyCarbonReportOperator`` on an ``@daily`` schedule: each run reports the UTC day that just ended
  (the last complete day before the run's data interval end; a manual run reports yesterday);
* the day's ledger records finalised with actuals (the zones' actual carbon intensity from the forecast
  archive, fetched first through ``gridaware_ukci_default`` for GB), then ``report.html`` with a chart
  per zone, ``records.csv`` and ``summary.json`` written to
  ``$AIRFLOW_HOME/gridaware/reports/<day>/`` (set ``output_dir="s3://bucket/carbon/{day}"`` and
  ``output_conn_id="aws_default"`` for S3);
* the summary (with ``location``) as the task's XCom, the headline in its log, and an optional notifier
  (here: an e-mail through the ``smtp_default`` connection when ``GRIDAWARE_REPORT_EMAIL`` is set).

Savings are counted against the counterfactual "had it started when it was released to wait, in its home
zone"; the report states the method. See ``docs/report.md``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import BaseNotifier, dag

from airflow_provider_gridaware.operators.carbon_report import DailyCarbonReportOperator


def _email_notifier() -> BaseNotifier | None:
    """An e-mail with the headline and where the report is, if an address is configured (else no notifier)."""
    address = os.environ.get("GRIDAWARE_REPORT_EMAIL")
    if not address:
        return None
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=address,
        subject="Carbon report {{ carbon_report.day }}: {{ carbon_report.headline }}",
        html_content="<p>{{ carbon_report.headline }}</p><p>The report: {{ carbon_report.location }}/report.html</p>",
    )


@dag(
    dag_id="example_daily_carbon_report",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example", "report"],
    doc_md=__doc__,
)
def example_daily_carbon_report() -> None:
    DailyCarbonReportOperator(
        task_id="carbon_report",
        actuals_conn_ids={"GB": "gridaware_ukci_default"},
        notifier=_email_notifier(),
    )


example_daily_carbon_report()
