"""What the tests' grid-event DAGs share: the asset a grid-event watcher feeds, and their ``@dag`` arguments.

Not a DAG file but a module beside them: the stack links every ``*.py`` of this folder into its DAGs folder,
which Airflow puts on ``sys.path`` when it parses a DAG file or runs one of its tasks, so the DAG files
import it as ``_grid_event_dags``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher

from airflow_provider_gridaware.actuators import ResponseTargets
from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger

#: ``@dag`` arguments of a test DAG that is on as soon as it is parsed (the test does not unpause it).
ON_AT_ONCE: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "is_paused_upon_creation": False,
}


def grid_events(
    name: str, *, cursor_name: str, source: str, tail_interval: float, respond: ResponseTargets | None = None
) -> Asset:
    """``gridaware://grid-events/<name>``, fed by its watcher ``grid_events_<name>`` (``-`` as ``_``): a
    :class:`GridEventTrigger` in the triggerer tailing the store's events of ``source`` from its beginning
    (and applying the response to ``respond`` before each asset event, if given)."""
    return Asset(
        f"gridaware://grid-events/{name}",
        watchers=[
            AssetWatcher(
                name=f"grid_events_{name.replace('-', '_')}",
                trigger=GridEventTrigger(
                    cursor_name=cursor_name,
                    from_seq=0,
                    sources=[source],
                    tail_interval=tail_interval,
                    respond=respond,
                ),
            )
        ],
    )
