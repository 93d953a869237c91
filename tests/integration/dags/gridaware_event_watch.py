"""A DAG scheduled by grid events: an AssetWatcher runs GridEventTrigger in the real triggerer.

The watcher tails the provider's store from its beginning on first start (``from_seq=0``) (here the SQLite file under AIRFLOW_HOME); every new event state
stored (by a poller, the relay, or the test) becomes an asset event that starts one run of this DAG.
"""

from __future__ import annotations

from typing import Any

from _grid_event_dags import ON_AT_ONCE, grid_events
from airflow.sdk import dag, task

GRID_EVENTS = grid_events("it", cursor_name="it-watch", source="webhook:it", tail_interval=0.5)


@dag(dag_id="gridaware_event_watch", schedule=[GRID_EVENTS], tags=["gridaware-test"], **ON_AT_ONCE)
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
