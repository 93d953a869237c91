"""Hook that reads grid signals from CSV traces: for demos, tests and offline runs (no HTTP at all)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.errors import GridSignalError, SourceConfigError
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import replay
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.times import current_clock

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import SignalQuery
    from airflow_provider_gridaware.traces.trace import TraceSet


def _provider_now() -> datetime:
    return current_clock().now()


class GridReplayHook(GridSignalHook):
    """Grid signals replayed from CSV traces through an Airflow connection, sync and async.

    Connection (type ``gridaware_replay``): Host is a CSV file or a folder of CSVs, optionally
    ``FILE:ZONE`` (empty: the bundled GB national carbon-intensity trace, zone ``GB``). Extras: ``kind``
    (``carbon_intensity`` or ``price``), ``metric`` (``average``/``marginal``), ``unit``, ``currency``,
    ``anchor`` (``now`` shifts the trace by whole days to the present and loops; ``fixed`` keeps its
    times), ``horizon_hours`` (forecast reach, default 48), ``forecast_error`` (error at 24 h as a fraction
    of the zone's typical value, default 0.05; 0 = perfect) and ``seed``.

    A forecast is issued at ``now`` rounded down to the trace step and covers the next ``horizon_hours``;
    actuals are the trace's points that ended before ``now``.

    :param gridaware_conn_id: connection of type ``gridaware_replay``.
    :param clock: where "now" comes from (default: the provider's clock, ``GRIDAWARE_CLOCK``: the real UTC time
        unless a simulated one is set for every component, as ``make demo`` and the accelerated tests do, so
        the trace lines up with the time the planner plans at); pass a fixed clock in tests.
    """

    default_conn_name = "gridaware_replay_default"
    conn_type = "gridaware_replay"
    hook_name = "Grid: replay of CSV traces"
    source_name = replay.SOURCE
    supported_kinds = (SignalKind.CARBON_INTENSITY, SignalKind.PRICE)

    def __init__(
        self, gridaware_conn_id: str | None = None, *, clock: Callable[[], datetime] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(gridaware_conn_id, **kwargs)
        self.clock: Callable[[], datetime] = clock or _provider_now

    def settings_from_connection(self, conn: Connection) -> SourceSettings:
        # Host is a path, not a URL: keep it exactly as written.
        return SourceSettings(
            conn_id=conn.conn_id,
            base_url=(conn.host or "").strip(),
            extra=conn.extra_dejson if conn.extra else {},
        )

    def _resolve(self, settings: SourceSettings, query: SignalQuery) -> replay.ReplaySettings:
        config = replay.ReplaySettings.from_settings(settings)
        if query.kind is not None and query.kind is not config.kind:
            raise SourceConfigError(
                f"this connection replays {config.kind.value}, not {query.kind.value} (set extra 'kind')",
                source=settings.conn_id,
            )
        return config

    def fetch_signal(self, query: SignalQuery) -> SignalSeries:
        """The forecast or actual series answering ``query``, from the trace (blocking file read on first use)."""
        settings = self.get_settings()
        config = self._resolve(settings, query)
        traces = replay.load_cached(config.trace)
        return replay.replay_signal(traces, config, query, self.clock())

    async def afetch_signal(self, query: SignalQuery) -> SignalSeries:
        """Async twin of :meth:`fetch_signal`: loading and slicing run in a worker thread, off the event loop."""
        settings = await self.aget_settings()
        config = self._resolve(settings, query)
        now = self.clock()

        def load_and_slice() -> SignalSeries:
            # Building a long series is CPU work too: keep all of it off the triggerer's loop.
            return replay.replay_signal(replay.load_cached(config.trace), config, query, now)

        return await asyncio.to_thread(load_and_slice)

    def get_traces(self) -> TraceSet:
        """The loaded traces of this connection (every zone)."""
        config = replay.ReplaySettings.from_settings(self.get_settings())
        return replay.load_cached(config.trace)

    def test_connection(self) -> tuple[bool, str]:
        """Load the trace and read a forecast for its first zone (or the extra ``test_zone``)."""
        settings = None
        try:
            settings = self.get_settings()
            traces = self.get_traces()
            zone = settings.get_str("test_zone") or traces.zones[0]
            series = self.get_forecast(zone)
        except GridSignalError as exc:
            return False, self.test_failure_message(exc, settings)
        return True, f"{len(series)} {series.kind.value} points for {series.zone} in {series.unit}"

    def get_conn(self) -> TraceSet:  # type: ignore[override]
        return self.get_traces()
