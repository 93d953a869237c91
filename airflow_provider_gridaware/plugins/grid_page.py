"""The provider's Airflow plugin: the Grid page's app on the api-server and its entry in the navigation.

Registered through the ``airflow.plugins`` entry point. The FastAPI app is built on the first request it
serves, so every other Airflow process that loads plugins (scheduler, workers, triggerer, DAG parsing)
pays nothing for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from fastapi import FastAPI

#: Where the app is mounted, and the page's route in Airflow's UI (``/plugin/gridaware``).
URL_PREFIX = "/gridaware"
URL_ROUTE = "gridaware"


class LazyGridApp:
    """An ASGI app that builds the Grid page's FastAPI app on its first call."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None
        self._lock = threading.Lock()

    def app(self) -> FastAPI:
        """The FastAPI app (built once)."""
        with self._lock:
            if self._app is None:
                from airflow_provider_gridaware.plugins.app import create_app

                self._app = create_app()
            return self._app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        await self.app()(scope, receive, send)


class GridawarePlugin(AirflowPlugin):
    """The Grid page: zones, waiting tasks and why, grid events and 30-day savings (``docs/ui.md``)."""

    name = "gridaware"
    fastapi_apps = [{"app": LazyGridApp(), "url_prefix": URL_PREFIX, "name": "Grid awareness"}]
    external_views = [
        {
            "name": "Grid",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": URL_ROUTE,
            "icon": f"{URL_PREFIX}/static/icon.svg",
            "icon_dark_mode": f"{URL_PREFIX}/static/icon-dark.svg",
        }
    ]
