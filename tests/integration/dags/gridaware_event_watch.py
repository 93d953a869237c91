"""A DAG scheduled by grid events: an AssetWatcher runs GridEventTrigger in the real triggerer.

The watcher tails the provider's store from its beginning on first start (``from_seq=0``) (here the SQLite file under AIRFLOW_HOME); every new event state
stored (by a poller, the relay, or the test) becomes an asset event that starts one run of this DAG.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from airflow_provider_gridaware.triggers.grid_event import GridEventTrigger

GRID_EVENTS = Asset(
    "gridaware://grid-events/it",
    watchers=[
        AssetWatcher(
            name="grid_events_it",
            trigger=GridEventTrigger(cursor_name="it-watch", from_seq=0, sources=["webhook:it"], tail_interval=0.5),
        )
    ],
)


@dag(
    dag_id="gridaware_event_watch",
    schedule=[GRID_EVENTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["gridaware-test"],
)
def gridaware_event_watch() -> None:
    @task
    def react(**context: Any) -> list[dict[str, Any]]:
        seen = []
        for asset_event in context["triggering_asset_events"][GRID_EVENTS]:
            payload = asset_event.extra["payload"]
            seen.append({"event_id": payload["event_id"], "seq": payload["seq"], "status": payload["status"]})
        print(f"grid events: {seen}")
        return seen

    react()


gridaware_event_watch()
