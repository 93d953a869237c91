"""The "Grid decision" extra link on every grid-aware task: its decision on the Grid page.

Airflow 3 computes the URL on the worker when a try ends or defers, and keeps it in XCom; the page then
shows the task's wait (or, once released, its ledger records) highlighted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: Where the Grid page's app is mounted on the api-server (``plugins.grid_page.URL_PREFIX``).
GRID_PAGE_PATH = "/gridaware/"


def grid_decision_url(base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The Grid page focused on one task instance.

    :param base_url: the api-server's public base URL (``[api] base_url``); empty gives a relative URL.
    """
    query = urlencode({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index})
    return f"{base_url.rstrip('/')}{GRID_PAGE_PATH}?{query}"


class GridDecisionLink(BaseOperatorLink):
    """Links a grid-aware task to its decision on the Grid page."""

    name = "Grid decision"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
        return grid_decision_url(base_url, ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
