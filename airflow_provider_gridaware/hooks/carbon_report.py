"""Where the daily carbon report reads from, seen from Airflow: the ledger, the archive, actuals through hooks.

:func:`open_ledger_reader` is the one seam to the ledger store: it imports
``airflow_provider_gridaware.store.ledger.LedgerStore`` when called, and says clearly when this build has
no ledger store. Pass a reader explicitly (the operator's ``ledger``, ``gridaware report --ledger-file``) to
report from elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING

from airflow_provider_gridaware.reporting.daily import day_bounds

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerReader
    from airflow_provider_gridaware.reporting.collect import PausedWorkSource
    from airflow_provider_gridaware.reporting.daily import Finaliser
    from airflow_provider_gridaware.signals.models import SignalSeries

log = logging.getLogger(__name__)

LEDGER_STORE_MODULE = "airflow_provider_gridaware.store.ledger"


class LedgerStoreMissingError(RuntimeError):
    """This build of the provider has no ledger store to read records from."""


def ledger_reader_for_url(url: str) -> LedgerReader:
    """The ledger store at a SQLAlchemy URL, as a :class:`~airflow_provider_gridaware.ledger.records.LedgerReader`.

    :param url: the store's URL.
    :raises LedgerStoreMissingError: the ledger store module is not in this build.
    """
    import importlib

    try:
        module = importlib.import_module(LEDGER_STORE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != LEDGER_STORE_MODULE:
            raise
        raise LedgerStoreMissingError(
            f"the ledger store ({LEDGER_STORE_MODULE}.LedgerStore) is missing from this build of the provider: "
            "nothing records ledger records yet; report from a ledger file instead "
            "(gridaware report --ledger-file, or the operator's ledger=LedgerFile(...))"
        ) from None
    reader: LedgerReader = module.LedgerStore(url)
    return reader


def ledger_finaliser() -> Finaliser | None:
    """The ledger's own finaliser (recompute a record from actuals and store it), used when none is given.

    ``None`` while this build has no ledger store: records are reported as written, and the report's
    data-quality notes say which are not finalised.
    """
    return None


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
    :raises LedgerStoreMissingError: the ledger store module is not in this build.
    """
    from airflow_provider_gridaware.hooks.store import GridStoreHook

    return ledger_reader_for_url(GridStoreHook(store_conn_id).get_url())


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
