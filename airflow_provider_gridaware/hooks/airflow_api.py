"""Airflow's own REST API v2, for what the Task SDK does not offer a task: pausing and unpausing DAGs, and
listing the tries that ran (the carbon ledger's reconciliation).

The connection (any type, e.g. ``http``) holds the api-server's URL (Host, e.g. ``http://airflow-api:8080``)
and a user's Login / Password; a token is taken from ``POST /auth/token`` and renewed when the API answers
401. The user needs permission to edit the DAGs it pauses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from datetime import datetime

    import httpx

    from airflow_provider_gridaware.ledger.reconcile import ExecutedTry

DEFAULT_TIMEOUT_S = 30.0
_PAGE = 100


class AirflowApiError(RuntimeError):
    """An Airflow REST API call failed; the message says which call, where, and what the API answered."""


class AirflowApiHook(BaseHook):
    """A small client of Airflow's REST API v2: list DAGs by tag, pause and unpause them.

    :param airflow_conn_id: the connection holding the api-server URL and a user's credentials.
    :param timeout: seconds per request.
    """

    conn_name_attr = "airflow_conn_id"
    default_conn_name = "gridaware_airflow_api"
    hook_name = "Airflow REST API (grid-event response)"

    def __init__(self, airflow_conn_id: str = default_conn_name, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__()
        self.airflow_conn_id = airflow_conn_id
        self.timeout = timeout
        self._token: str | None = None
        self._token_lock = threading.Lock()

    @cached_property
    def _settings(self) -> tuple[str, str, str]:
        conn = self.get_connection(self.airflow_conn_id)
        host = (conn.host or "").rstrip("/")
        if not host:
            raise AirflowApiError(f"connection {self.airflow_conn_id!r}: Host must be the api-server's URL")
        if "://" not in host:
            host = f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else "")
        if not conn.login or not conn.password:
            raise AirflowApiError(f"connection {self.airflow_conn_id!r}: Login and Password of an Airflow user needed")
        return host, conn.login, conn.password

    @cached_property
    def _client(self) -> httpx.Client:
        import httpx

        return httpx.Client(base_url=self._settings[0], timeout=self.timeout)

    def _login(self) -> str:
        host, login, password = self._settings
        response = self._client.post("/auth/token", json={"username": login, "password": password})
        if response.status_code not in (200, 201):
            raise AirflowApiError(
                f"POST {host}/auth/token as {login!r} answered {response.status_code}: {response.text[:500]}"
            )
        return str(response.json()["access_token"])

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call (``path`` from the server root); the parsed JSON. A 401 takes a new token once."""
        import httpx

        for attempt in (1, 2):
            with self._token_lock:
                if self._token is None:
                    self._token = self._login()
                token = self._token
            try:
                response = self._client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"{method} {self._settings[0]}{path}: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 401 and attempt == 1:
                with self._token_lock:
                    self._token = None
                continue
            if response.status_code >= 400:
                raise AirflowApiError(
                    f"{method} {self._settings[0]}{path} answered {response.status_code}: {response.text[:500]}"
                )
            return response.json() if response.content else None
        raise AssertionError("unreachable")

    def list_dags(self, *, tags: list[str], paused: bool | None = None) -> Iterator[dict[str, Any]]:
        """DAGs carrying any of ``tags`` (and in that pause state, if given), page by page."""
        params: dict[str, Any] = {"tags": tags, "tags_match_mode": "any"}
        if paused is not None:
            params["paused"] = str(paused).lower()

        def page(offset: int) -> Any:
            return self.request("GET", "/api/v2/dags", params={**params, "limit": _PAGE, "offset": offset})

        yield from _pages(page, "dags")

    def get_dag(self, dag_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v2/dags/{_q(dag_id)}")
        return result

    def set_paused(self, dag_id: str, paused: bool) -> Mapping[str, Any]:
        """Pause or unpause one DAG; the DAG as the API returns it."""
        result: Mapping[str, Any] = self.request(
            "PATCH", f"/api/v2/dags/{_q(dag_id)}", params={"update_mask": "is_paused"}, json={"is_paused": paused}
        )
        return result

    def list_task_instances(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Task instances across DAGs and runs (``POST .../taskInstances/list``), page by page.

        :param filters: fields of the API's batch body (``end_date_gte``, ``state``, ``dag_ids`` ...); datetimes
            as ISO strings.
        """

        def page(offset: int) -> Any:
            body = {**filters, "page_offset": offset, "page_limit": _PAGE}
            return self.request("POST", "/api/v2/dags/~/dagRuns/~/taskInstances/list", json=body)

        yield from _pages(page, "task_instances")

    def task_instance_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance (its history and the current one)."""
        mapped = f"/{map_index}" if map_index >= 0 else ""
        path = f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}{mapped}/tries"
        page = self.request("GET", path)
        return list(page.get("task_instances") or [])

    def ended_tries(
        self,
        since: datetime,
        until: datetime,
        *,
        dag_ids: Sequence[str] | None = None,
        operators: Collection[str] | None = None,
    ) -> list[ExecutedTry]:
        """The tries of ledger-writing tasks whose task instance ended in ``[since, until)`` (each earlier try
        of such a task instance too), for reconciliation with the ledger.

        :param since: start (UTC).
        :param until: exclusive end.
        :param dag_ids: only these DAGs.
        :param operators: the ledger-writing task types (default: the provider's).
        """
        from airflow_provider_gridaware.ledger.reconcile import LEDGER_OPERATORS, executed_try
        from airflow_provider_gridaware.times import format_time

        kinds = LEDGER_OPERATORS if operators is None else frozenset(operators)
        filters: dict[str, Any] = {"end_date_gte": format_time(since), "end_date_lt": format_time(until)}
        if dag_ids:
            filters["dag_ids"] = list(dag_ids)
        found: dict[Any, ExecutedTry] = {}
        for row in self.list_task_instances(**filters):
            if row.get("operator_name") not in kinds and row.get("operator") not in kinds:
                continue
            rows = [row]
            if int(row.get("try_number") or 0) > 1:
                rows = self.task_instance_tries(
                    row["dag_id"], row["dag_run_id"], row["task_id"], int(row.get("map_index", -1))
                )
            for item in rows:
                executed = executed_try({**item, "dag_run_id": item.get("dag_run_id", row["dag_run_id"])}, kinds)
                if executed is not None:
                    found[executed.key] = executed
        return sorted(found.values(), key=lambda t: (t.key.dag_id, t.key.run_id, t.key.task_id, t.key.try_number))

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _pages(fetch: Callable[[int], Any], items_key: str) -> Iterator[dict[str, Any]]:
    """Every item of a paged collection: ``fetch(offset)`` returns one page (``items_key``, ``total_entries``)."""
    offset = 0
    while True:
        page = fetch(offset)
        items = page.get(items_key) or []
        yield from items
        offset += len(items)
        if not items or offset >= int(page.get("total_entries") or 0):
            return
