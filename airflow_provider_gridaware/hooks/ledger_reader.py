"""The one way the provider's Airflow side opens the ledger for reading (the Grid page, the SLO operator).

``[gridaware] ledger_reader`` names a callable (``module:callable``) that takes the store's URL and returns
a :class:`~airflow_provider_gridaware.ledger.records.LedgerReader`; by default the store's own
``LedgerStore``. Nothing is imported until a reader is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.records import LedgerReader

#: The config key naming a callable that returns the ledger's reader.
LEDGER_READER_KEY = "ledger_reader"
DEFAULT_LEDGER_READER = "airflow_provider_gridaware.store.ledger:LedgerStore"


class LedgerUnavailableError(RuntimeError):
    """No ledger can be read (not installed yet, or misconfigured); the message says which and why."""


def open_ledger_reader(store_url: str | None = None) -> LedgerReader:
    """The ledger's reader: ``[gridaware] ledger_reader`` called with the store's URL (default: where the
    hooks' store lives), by default the store's ``LedgerStore``.

    :param store_url: the store to read (default: :class:`~airflow_provider_gridaware.hooks.store.GridStoreHook`'s).
    :raises LedgerUnavailableError: the named module or callable does not exist, or opening failed.
    """
    from airflow_provider_gridaware.hooks.store import GridStoreHook, _config

    path = _config(LEDGER_READER_KEY) or DEFAULT_LEDGER_READER
    module_name, _, attribute = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LedgerUnavailableError(
            f"no ledger reader {path!r} ({exc}); set [gridaware] {LEDGER_READER_KEY} to module:callable"
        ) from None
    try:
        reader: LedgerReader = factory(store_url or GridStoreHook().get_url())
    except Exception as exc:
        raise LedgerUnavailableError(f"the ledger reader {path!r} failed to open: {exc}") from exc
    return reader
