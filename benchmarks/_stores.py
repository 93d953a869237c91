"""The stores the store benchmarks run against: a SQLite file, or a throw-away database on the loopback PostgreSQL.

A sibling module, not a benchmark: the benchmarks run as scripts, so their folder is first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
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


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend sqlite --backend postgres``: the stores a benchmark runs against (default: both)."""
    parser.add_argument("--backend", action="append", choices=tuple(STORES), help="default: both")


def on_each_store(backends: Sequence[str] | None, heading: str, bench: Callable[[str], None]) -> None:
    """Run ``bench(url)`` against a fresh store of each backend (default: all), each under ``backend: heading``.
    A backend that cannot be reached is reported as skipped: a machine without PostgreSQL still reports SQLite."""
    from sqlalchemy.exc import OperationalError

    for backend in backends or list(STORES):
        print(f"\n{backend}: {heading}")
        try:
            with STORES[backend]() as url:
                bench(url)
        except (OperationalError, ImportError) as exc:
            print(f"  skipped ({type(exc).__name__}: {str(exc).splitlines()[0]})")
