"""The local grid simulator: replays traces through the real APIs' URL paths and payload shapes.

Importing this package is cheap (no FastAPI, uvicorn or numpy): the server modules load only when a
simulator starts. See ``docs/simulator.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gridaware.simulator.server import SimulatorHandle, start_simulator

__all__ = ["SimulatorHandle", "start_simulator"]


def __getattr__(name: str) -> Any:
    # Lazy: ``from airflow_provider_gridaware.simulator import start_simulator`` loads the server module only then.
    if name in __all__:
        from airflow_provider_gridaware.simulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
