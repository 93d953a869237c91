"""Where the daily carbon report reads from, seen from Airflow: the ledger, the archive, actuals through hooks.

:func:`open_ledger_reader` opens the ledger the way the rest of the provider does
(:mod:`~airflow_provider_gridaware.hooks.ledger_reader`); :func:`ledger_finaliser` recomputes records from
actuals and writes them back. Pass a reader explicitly (the operator's ``ledger``, ``gridaware report
--ledger-file``) to report from elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from typing import TYPE_CHECKING

from airflow_provider_gridaware.reporting.daily import day_bounds

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerReader, LedgerRecord
    from airflow_provider_gridaware.reporting.collect import PausedWorkSource
    from airflow_provider_gridaware.reporting.daily import Finaliser
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.ui.reports import StorageFolder

log = logging.getLogger(__name__)


def ledger_finaliser(url: str | None) -> Finaliser:
    """The ledger's finaliser: a record recomputed from the day's actuals and, when the ledger is the store
    at ``url``, written back there (a later report or the Grid page then reads the finalised version).

    :param url: the store holding the ledger; ``None`` when the records come from elsewhere (a ledger
        file): they are finalised for the report only.
    """
    from airflow_provider_gridaware.ledger.figures import finalise

    def finalise_on(record: LedgerRecord, actuals: Mapping[str, SignalSeries]) -> LedgerRecord:
        return finalise(record, list(actuals.values()))  # the series themselves (not per-zone ZoneSignals)

    if url is None:
        return finalise_on
    from airflow_provider_gridaware.hooks.store import shared_ledger_store

    ledger = shared_ledger_store(url)

    def finalise_and_store(record: LedgerRecord, actuals: Mapping[str, SignalSeries]) -> LedgerRecord:
        return ledger.write(finalise_on(record, actuals))

    return finalise_and_store


def response_paused_work(url: str) -> PausedWorkSource | None:
    """What the grid-event response paused and resumed, read from its record in the store at ``url``.

    ``None`` when this build has no response record: the report then says what was paused is not shown.

    :param url: the store's SQLAlchemy URL.
    """
    from airflow_provider_gridaware.hooks import store as store_hooks
    from airflow_provider_gridaware.reporting.collect import paused_work_from_holds

    opener = getattr(store_hooks, "shared_response_store", None)
    if opener is None:
        return None
    responses = opener(url)
    return lambda since, until: paused_work_from_holds(responses.records(), since, until)


def open_ledger_reader(store_conn_id: str | None = None) -> LedgerReader:
    """The ledger in the provider's store (the same store as the forecast archive).

    :param store_conn_id: a ``postgres`` or ``sqlite`` connection; default as
        :class:`~airflow_provider_gridaware.hooks.store.GridStoreHook` (``$GRIDAWARE_STORE_URL``, config,
        SQLite under ``AIRFLOW_HOME``).
    :raises LedgerUnavailableError: the configured ledger reader cannot be opened.
    """
    from airflow_provider_gridaware.hooks import ledger_reader
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return ledger_reader.open_ledger_reader(GridStoreHook(store_conn_id).get_url())


def fetch_day_actuals(conn_ids: Mapping[str, str], day: date) -> tuple[dict[str, SignalSeries], list[str]]:
    """The day's actual carbon intensity of each zone, fetched through its grid-signal connection (and so
    archived); a fetch that fails is a data-quality note, and the report falls back on the archive.

    :param conn_ids: zone -> grid-signal connection id (``{"GB": "gridaware_ukci_default"}``).
    :param day: the UTC day.
    :returns: zone -> actuals, and notes on the fetches that failed.
    """
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.errors import GridSignalError
    from airflow_provider_gridaware.signals.units import SignalKind

    since, until = day_bounds(day)
    fetched: dict[str, SignalSeries] = {}
    notes: list[str] = []
    for zone, conn_id in sorted(conn_ids.items()):
        try:
            hook = hook_for_connection(conn_id)
            fetched[zone] = hook.get_actuals(zone, since, until, kind=SignalKind.CARBON_INTENSITY)
        except GridSignalError as exc:
            log.warning("Could not fetch the actuals of %s through %s: %s", zone, conn_id, exc)
            notes.append(
                f"{zone}: fetching actuals through {conn_id} failed ({type(exc).__name__}: {exc}); archive used."
            )
    return fetched, notes


def reconcile_day(airflow_conn_id: str, day: date, store_url: str, dag_ids: Sequence[str] | None = None) -> list[str]:
    """Data-quality notes from reconciling the ledger with the tries Airflow ran that day: which tries of
    grid-aware tasks whose task instance ended that day have no ledger record. Never raises: a failed
    reconciliation is itself a note.

    :param airflow_conn_id: the connection to Airflow's api-server (see ``AirflowApiHook``).
    :param day: the UTC day.
    :param store_url: the store holding the ledger.
    :param dag_ids: only these DAGs.
    """
    from airflow_provider_gridaware.hooks.airflow_api import AirflowApiError, AirflowApiHook
    from airflow_provider_gridaware.hooks.store import shared_ledger_store
    from airflow_provider_gridaware.ledger.reconcile import reconcile

    since, until = day_bounds(day)
    hook = AirflowApiHook(airflow_conn_id)
    try:
        tries = hook.ended_tries(since, until, dag_ids=dag_ids)
        result = reconcile(tries, shared_ledger_store(store_url).keys(t.key for t in tries))
    except (AirflowApiError, ValueError, KeyError) as exc:
        log.warning("Could not reconcile the ledger with Airflow's tries through %s: %s", airflow_conn_id, exc)
        return [f"Reconciling with Airflow's tries through {airflow_conn_id} failed ({type(exc).__name__}: {exc})."]
    finally:
        hook.close()
    notes = [f"Reconciled with Airflow: {result.describe()}."]
    for missing in result.missing[:20]:
        key = missing.key
        notes.append(f"No ledger record for {key.dag_id}/{key.task_id} try {key.try_number} ({key.run_id}).")
    if len(result.missing) > 20:
        notes.append(f"... and {len(result.missing) - 20} more succeeded tries without a record.")
    return notes


#: ``[gridaware] report_location`` when unset: ``{airflow_home}`` is filled in.
DEFAULT_REPORT_LOCATION = "file://{airflow_home}/gridaware/reports"


def airflow_home() -> str:
    """``$AIRFLOW_HOME`` (default ``~/airflow``), resolved."""
    import os
    from pathlib import Path

    return str(Path(os.environ.get("AIRFLOW_HOME") or "~/airflow").expanduser().resolve())


def report_location() -> tuple[str, str | None]:
    """Where the daily reports live, one folder per day, and the storage connection to read them with:
    ``[gridaware] report_location`` (default ``file://$AIRFLOW_HOME/gridaware/reports``) and
    ``[gridaware] report_conn_id``."""
    from airflow_provider_gridaware.hooks.store import _config

    location = (_config("report_location") or DEFAULT_REPORT_LOCATION).format(airflow_home=airflow_home())
    return location.rstrip("/"), _config("report_conn_id")


def open_report_location(url: str, conn_id: str | None = None) -> StorageFolder:
    """The report location as a folder to read: a local ``Path`` for ``file://`` and plain paths, else an
    ``ObjectStoragePath`` (``s3://`` then needs ``s3fs``, ``gs://`` needs ``gcsfs``).

    :param url: the location.
    :param conn_id: its storage connection.
    """
    from pathlib import Path

    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url, conn_id=conn_id)
