"""How ``make test`` shares the suite between two xdist workers.

The layers that run real Airflow stacks (``tests/integration``, ``tests/distributed``) and the packaging layer
(a build and two virtualenv installs) form **one** work unit: one worker runs them in the order their conftests
give (integration tests that start the shared stack and its waiting scenarios first, then the tests collecting
the scenarios, then the tests with an Airflow of their own, packaging, distributed). Two shared stacks or two
waiting-scenario sets would each slow the other's wall-clock windows on a 2-core machine. The other worker
takes the unit, contract and docs layers, one module at a time, and the first one to run out of work takes
the rest: so the unit layer now overlaps the whole Airflow layer instead of only its waits.

This is ``--dist loadscope`` with one more rule, written as a scheduler because the mark-based way
(``xdist_group`` with ``--dist loadgroup``) does nothing on pytest 9.2: xdist 3.8 still renames node ids to
carry the group, and pytest 9.2's structured node ids ignore that (pytest-dev/pytest-xdist#1386, open).
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

#: Test paths (relative to the rootdir) that form the one serial unit.
SERIAL_LAYERS = ("tests/integration/", "tests/distributed/", "tests/packaging/")
SERIAL_SCOPE = "airflow layers"


class AirflowLayersScheduling(LoadScopeScheduling):
    """Load-scope scheduling (a module is a unit), with every Airflow-layer test in one unit, sent first."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        # The Airflow unit is the longest by far and must start first; collection order already puts it first
        # (tests/integration/conftest.py), so xdist's default of queueing the units with most tests first is off.
        config.option.loadscopereorder = False
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        if nodeid.startswith(SERIAL_LAYERS):
            return SERIAL_SCOPE
        return super()._split_scope(nodeid)
