"""The stores the store benchmarks run against: a SQLite file, or a throw-away database on the loopback PostgreSQL.

A sibling module, not a benchmark: the benchmarks run as scripts, so their folder is first on ``sys.path``.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def sqlite_store() -> Iterator[str]:
    """The URL of a SQLite file in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite:///{Path(folder) / 'gridaware.db'}"


@contextmanager
def postgres_store() -> Iterator[str]:
    """The URL of a throw-away database on the loopback PostgreSQL, dropped afterwards."""
    sys.path.insert(0, str(REPO))  # the throw-away database helper lives with the tests
    from tests.support.postgres import throwaway_database

    with throwaway_database("gridaware_bench") as url:
        yield url


#: The ``--backend`` choices: each opens a store and yields its URL.
STORES: dict[str, Callable[[], AbstractContextManager[str]]] = {"sqlite": sqlite_store, "postgres": postgres_store}
