"""The distributed and packaging layers run last in a one-process session.

The distributed stack (seven Airflow processes on PostgreSQL and Redis, on accelerated time) and the packaging
test (a build and two virtualenv installs) competed for the 2 cores with the integration layer's waiting
scenarios, whose windows are placed on the wall clock: run beside them in one process (before the idle stacks
stopped re-parsing every 10 s), the scenarios missed their windows. Placed after every other test, they start
once the integration waits are over. ``make test``'s workers run them beside the waits instead, one own-stack
module per worker at a time (``tests/support/scheduling.py``).

The distributed run's figures (``record_property``) are printed in the terminal summary, so a CI log has them
(``tests/support/session_report.py``).
"""

from __future__ import annotations

import pytest

LAST = ("packaging", "distributed")


def _order(item: pytest.Item) -> int:
    return next((i + 1 for i, name in enumerate(LAST) if item.get_closest_marker(name) is not None), 0)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # After tests/integration/conftest.py's own ordering (trylast): a stable sort keeps the rest as it was.
    items.sort(key=_order)
