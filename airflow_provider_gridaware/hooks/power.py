"""GridPowerHook: a task's measured power from Prometheus (DCGM exporter), for the carbon ledger's energy.

Connection (any type; ``http`` is fine): Host = the Prometheus base URL (``http://prometheus:9090``, or a
host with Port and Schema ``https``), Login/Password = basic auth if needed, Extra:

* ``query``: PromQL giving the task's IT power in watts; ``{dag_id}``, ``{task_id}``, ``{run_id}``,
  ``{map_index}`` and ``{try_number}`` are filled in, e.g.
  ``sum(DCGM_FI_DEV_POWER_USAGE{pod=~"{task_id}-.*"})`` (default: ``sum(DCGM_FI_DEV_POWER_USAGE)``);
* ``step_s``: the sampling step (default 15);
* ``timeout_s``: the request timeout (default 10);
* ``bearer_token``: sent as ``Authorization: Bearer``.

The samples are wall-clock times: with a simulated ``GRIDAWARE_CLOCK`` the energy is not measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow_provider_gridaware.ledger.energy import PowerDraw

DEFAULT_QUERY = "sum(DCGM_FI_DEV_POWER_USAGE)"


class GridPowerHook(BaseHook):
    """Reads a task's power over a run from Prometheus and turns it into the ledger's measured energy.

    :param power_conn_id: the Prometheus connection.
    """

    conn_name_attr = "power_conn_id"
    hook_name = "Grid: measured power (Prometheus / DCGM)"

    def __init__(self, power_conn_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.power_conn_id = power_conn_id

    def _settings(self) -> tuple[str, dict[str, Any], Any, dict[str, str]]:
        conn = self.get_connection(self.power_conn_id)
        extra = conn.extra_dejson if conn.extra else {}
        host = (conn.host or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.power_conn_id!r}: Host must be the Prometheus URL")
        if "://" not in host:
            scheme = conn.schema if conn.schema in ("http", "https") else "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        auth = (conn.login, conn.password or "") if conn.login else None
        headers = {"Authorization": f"Bearer {extra['bearer_token']}"} if extra.get("bearer_token") else {}
        return host, extra, auth, headers

    def get_samples(
        self, start: datetime, end: datetime, *, labels: Mapping[str, Any] | None = None
    ) -> tuple[list[tuple[datetime, float]], float, str]:
        """``(time, watts)`` samples over ``[start, end]``, the step, and the query in words.

        :param start: run start.
        :param end: run end.
        :param labels: values for the query's placeholders (the try's dag_id, task_id ...).
        """
        import httpx

        from airflow_provider_gridaware.ledger.prometheus import power_samples
        from airflow_provider_gridaware.transport.http import tls_context

        host, extra, auth, headers = self._settings()
        query = str(extra.get("query") or DEFAULT_QUERY)
        if labels:
            query = query.replace("{{", "\0").replace("}}", "\1")
            for name, value in labels.items():
                query = query.replace("{" + name + "}", str(value))
            query = query.replace("\0", "{{").replace("\1", "}}")
        step = float(extra.get("step_s") or 15)
        response = httpx.get(
            f"{host}/api/v1/query_range",
            params={"query": query, "start": start.timestamp(), "end": end.timestamp(), "step": f"{step:g}s"},
            auth=auth,
            headers=headers,
            timeout=float(extra.get("timeout_s") or 10),
            verify=tls_context(True),  # httpx would load the CA bundle again for every call
        )
        where = f"Prometheus {self.power_conn_id} ({query})"
        if response.status_code >= 400 and "json" not in response.headers.get("content-type", ""):
            raise ValueError(f"{where}: HTTP {response.status_code}: {response.text[:200]}")
        return power_samples(response.json(), where=where), step, where

    def get_draw(
        self, start: datetime, end: datetime, *, pue: float, labels: Mapping[str, Any] | None = None
    ) -> PowerDraw:
        """The run's measured power (PUE applied), for the ledger.

        :param start: run start.
        :param end: run end.
        :param pue: facility overhead.
        :param labels: values for the query's placeholders.
        """
        from airflow_provider_gridaware.ledger.energy import measured_draw

        samples, step, where = self.get_samples(start, end, labels=labels)
        return measured_draw(samples, start, end, pue=pue, source=where, max_gap_s=3 * step)
