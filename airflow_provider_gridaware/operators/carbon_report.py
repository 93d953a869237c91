"""The daily carbon report as an Airflow task: finalise a day's ledger records and write the report.

:class:`DailyCarbonReportOperator` reads the day's records from the ledger, the zones' actual curves from
the forecast archive (optionally fetching them through grid-signal connections first), hands each record
to the ledger's finaliser, and writes ``report.html`` (charts under ``charts/``), ``records.csv`` and
``summary.json`` to an ``ObjectStoragePath``; then, optionally, a notifier sends it. Everything the report
computes lives in :mod:`airflow_provider_gridaware.reporting` (no Airflow there).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_gridaware.ledger.slo import SLOS_KEY, SustainabilitySlo, parse_slos, slos_from

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier, Context

    from airflow_provider_gridaware.ledger.records import LedgerReader
    from airflow_provider_gridaware.reporting.collect import PausedWorkSource
    from airflow_provider_gridaware.reporting.daily import Finaliser


class CarbonReportConfigError(ValueError):
    """A report parameter that cannot be used (a bad date or output folder)."""


def report_day(report_date: str | date | None, context: Mapping[str, Any]) -> date:
    """The UTC day to report: ``report_date`` if given, else the last complete day before the run's data
    interval end (an ``@daily`` run at 00:00 reports the day that just ended; a manual run, yesterday).

    :param report_date: ``YYYY-MM-DD`` (or a date), or ``None``.
    :param context: the task context.
    """
    if isinstance(report_date, date):
        return report_date
    if report_date:
        try:
            return date.fromisoformat(report_date.strip())
        except ValueError:
            raise CarbonReportConfigError(f"report_date {report_date!r} is not a date like 2026-12-01") from None
    from airflow_provider_gridaware.times import UTC

    end = context.get("data_interval_end") or context.get("logical_date") or datetime.now(UTC)
    return (end.astimezone(UTC) - timedelta(days=1)).date()


def _has_s3fs() -> bool:
    import importlib.util

    return importlib.util.find_spec("s3fs") is not None


def write_report(files: Mapping[str, bytes], output_dir: str, conn_id: str | None) -> str:
    """Write the report's files under ``output_dir``; returns where they are (a URL).

    ``s3://`` goes through the amazon provider's ``S3Hook`` unless ``s3fs`` is installed (it conflicts with
    the botocore the amazon provider pins); every other scheme (``file://``, ``gs://`` with ``gcsfs`` ...)
    through ``ObjectStoragePath``. A plain path is a local folder.

    :param files: relative name -> bytes.
    :param output_dir: the day's folder.
    :param conn_id: the storage connection (AWS, GCP ...), if any.
    """
    from airflow_provider_gridaware.reporting.render import write_report_files

    if "://" not in output_dir:
        output_dir = f"file://{Path(output_dir).expanduser().resolve()}"
    if output_dir.startswith("s3://") and not _has_s3fs():
        write_report_files(files, _S3Folder.at(output_dir, conn_id))
    else:
        from airflow.sdk import ObjectStoragePath

        write_report_files(files, ObjectStoragePath(output_dir, conn_id=conn_id))
    return output_dir.rstrip("/")


class _S3Folder:
    """An ``s3://bucket/prefix`` folder written through the amazon provider's ``S3Hook`` (no s3fs needed)."""

    def __init__(self, hook: Any, bucket: str, prefix: str) -> None:
        self.hook, self.bucket, self.prefix = hook, bucket, prefix.strip("/")

    @classmethod
    def at(cls, url: str, conn_id: str | None) -> _S3Folder:
        from airflow_provider_gridaware.optional_providers import requires_extra

        with requires_extra("aws", "DailyCarbonReportOperator writing to s3://"):
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise CarbonReportConfigError(f"output_dir {url!r} names no bucket")
        return cls(S3Hook(aws_conn_id=conn_id) if conn_id else S3Hook(), bucket, prefix)

    def __truediv__(self, name: str) -> _S3Object:
        return _S3Object(self, f"{self.prefix}/{name}" if self.prefix else name)

    def mkdir(self, **_: Any) -> None:
        """S3 has no folders: nothing to create."""


class _S3Object:
    def __init__(self, folder: _S3Folder, key: str) -> None:
        self.folder, self.key = folder, key

    @property
    def parent(self) -> _S3Folder:
        return self.folder

    def write_bytes(self, data: bytes) -> None:
        self.folder.hook.load_bytes(data, key=self.key, bucket_name=self.folder.bucket, replace=True)


class DailyCarbonReportOperator(BaseOperator):
    """Finalise one day's ledger records with actuals and write the daily carbon report.

    Writes ``report.html`` (with ``charts/intensity-<zone>.png``), ``records.csv`` and ``summary.json``
    into ``output_dir``, logs the headline and returns the summary (with ``location``) as its XCom.

    :param report_date: the UTC day, ``YYYY-MM-DD`` (templated); default: the last complete day before the
        run's data interval end.
    :param output_dir: the day's folder, an ``ObjectStoragePath`` URL or a local path (templated; ``{day}``
        and ``{airflow_home}`` are filled in); default ``<[gridaware] report_location>/{day}``
        (``file://$AIRFLOW_HOME/gridaware/reports/{day}``), where the Grid page lists the reports.
    :param output_conn_id: the connection for ``output_dir`` (``aws_default`` for ``s3://`` ...); default,
        when ``output_dir`` is not given, ``[gridaware] report_conn_id``.
    :param store_conn_id: the provider's store (ledger, forecast archive, grid events); default as
        :class:`~airflow_provider_gridaware.hooks.store.GridStoreHook`.
    :param ledger: read records from this reader instead of the ledger store (a
        :class:`~airflow_provider_gridaware.ledger.file.LedgerFile`, for instance).
    :param ledger_file: read records from this ledger file (JSON; templated) instead of the ledger store.
    :param finaliser: recomputes a record from its zones' actual series and stores the result; default the
        ledger's own (:func:`~airflow_provider_gridaware.hooks.carbon_report.ledger_finaliser`).
    :param actuals_conn_ids: zone -> grid-signal connection: fetch the day's actuals through it first (they
        are archived); without it the archive's actuals are used.
    :param dag_ids: report only these DAGs (templated).
    :param paused_work: ``(since, until) -> [PausedWork]``: what the grid-event response did that day;
        default: read from the response record in the store, when this build has one.
    :param notifier: an Airflow notifier (``SmtpNotifier``, ``SlackNotifier`` ...) called once the files
        are written; its templates see ``carbon_report`` (the summary, plus ``location`` and ``html``).
    :param slos: the sustainability SLOs the report shows, each measured over its window ending with the
        day (:class:`~airflow_provider_gridaware.ledger.slo.SustainabilitySlo` or the JSON form
        ``SustainabilitySloOperator`` takes); default: ``[gridaware] slos``, as on the Grid page; ``[]``: none.
    :param dag_tags: each DAG's tags, for SLOs set per tag (a worker cannot read Airflow's metadata
        database); without them such an SLO is reported as not judged, saying why.
    :param airflow_conn_id: a connection to Airflow's api-server (URL, user, password): the day's tries of
        grid-aware tasks are reconciled with the ledger store, and the report names each succeeded try
        without a record (a lost write); default: no reconciliation.
    """

    template_fields: Sequence[str] = ("report_date", "output_dir", "ledger_file", "dag_ids")
    ui_color = "#d8f3dc"

    def __init__(
        self,
        *,
        report_date: str | None = None,
        output_dir: str | None = None,
        output_conn_id: str | None = None,
        store_conn_id: str | None = None,
        ledger: LedgerReader | None = None,
        ledger_file: str | None = None,
        finaliser: Finaliser | None = None,
        actuals_conn_ids: Mapping[str, str] | None = None,
        dag_ids: Sequence[str] | None = None,
        paused_work: PausedWorkSource | None = None,
        notifier: BaseNotifier | None = None,
        slos: Sequence[SustainabilitySlo | Mapping[str, Any]] | None = None,
        dag_tags: Mapping[str, Sequence[str]] | None = None,
        airflow_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if ledger is not None and ledger_file:
            raise CarbonReportConfigError(f"task {self.task_id!r}: give ledger or ledger_file, not both")
        self.report_date = report_date
        self.output_dir = output_dir
        self.output_conn_id = output_conn_id
        self.store_conn_id = store_conn_id
        self.ledger = ledger
        self.ledger_file = ledger_file
        self.finaliser = finaliser
        self.actuals_conn_ids = dict(actuals_conn_ids or {})
        self.dag_ids = list(dag_ids) if dag_ids is not None else None
        self.paused_work = paused_work
        self.notifier = notifier
        # Parsed now: a bad SLO fails at DAG parse time, naming it (as SustainabilitySloOperator does).
        self.slos = None if slos is None else slos_from(slos, f"task {self.task_id!r}: slos")
        self.dag_tags = {dag: list(tags) for dag, tags in (dag_tags or {}).items()}
        self.airflow_conn_id = airflow_conn_id

    def _slos(self) -> list[SustainabilitySlo]:
        if self.slos is not None:
            return self.slos
        from airflow_provider_gridaware.hooks.store import _config

        return parse_slos(_config(SLOS_KEY))

    def _ledger(self) -> LedgerReader:
        if self.ledger is not None:
            return self.ledger
        if self.ledger_file:
            from airflow_provider_gridaware.ledger.file import LedgerFile

            return LedgerFile(self.ledger_file)
        from airflow_provider_gridaware.hooks.carbon_report import open_ledger_reader

        return open_ledger_reader(self.store_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gridaware.hooks.carbon_report import (
            airflow_home,
            fetch_day_actuals,
            ledger_finaliser,
            reconcile_day,
            report_location,
            response_paused_work,
        )
        from airflow_provider_gridaware.hooks.store import GridStoreHook
        from airflow_provider_gridaware.reporting.collect import collect_daily_report
        from airflow_provider_gridaware.reporting.render import HTML_FILE, JSON_FILE, render_report_files

        day = report_day(self.report_date, context)
        output_conn_id = self.output_conn_id
        if self.output_dir is None:
            location, location_conn_id = report_location()
            output_dir = f"{location}/{day.isoformat()}"
            output_conn_id = output_conn_id or location_conn_id
        else:
            output_dir = self.output_dir.format(day=day.isoformat(), airflow_home=airflow_home())
        ledger = self._ledger()
        store = GridStoreHook(self.store_conn_id)
        fetched, notes = fetch_day_actuals(self.actuals_conn_ids, day) if self.actuals_conn_ids else ({}, [])
        if self.airflow_conn_id:
            if self.ledger is not None or self.ledger_file:
                notes.append("Not reconciled with Airflow's tries: the records were read from a ledger file.")
            else:
                notes += reconcile_day(self.airflow_conn_id, day, store.get_url(), self.dag_ids)
        report = collect_daily_report(
            day,
            ledger,
            archive=store.get_archive(),
            event_store=store.get_event_store(),
            finaliser=self.finaliser or ledger_finaliser(None if self.ledger or self.ledger_file else store.get_url()),
            paused_work=self.paused_work or response_paused_work(store.get_url()),
            fetched_actuals=fetched,
            dag_ids=self.dag_ids,
            extra_notes=notes,
            slos=self._slos(),
            dag_tags=self.dag_tags or None,
        )
        files = render_report_files(report)
        location = write_report(files, output_dir, output_conn_id)
        self.log.info("Carbon report %s written to %s: %s", day, location, report.headline())
        for note in report.quality_notes:
            self.log.info("Data quality: %s", note)
        summary: dict[str, Any] = json.loads(files[JSON_FILE])
        summary["location"] = location
        if self.notifier is not None:
            notify_context: dict[str, Any] = dict(context)
            notify_context["carbon_report"] = {**summary, "html": files[HTML_FILE].decode("utf-8")}
            self.notifier(notify_context)
        return summary
