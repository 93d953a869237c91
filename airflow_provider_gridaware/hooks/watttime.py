"""Hook for WattTime v3: marginal (MOER) or average (AOER) emissions, and the 0-100 signal index."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.log import mask_secret

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import watttime
from airflow_provider_gridaware.sources.flow import arun_flow, run_flow

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings
    from airflow_provider_gridaware.sources.watttime import TokenCallback


class WattTimeHook(GridSignalHook):
    """Carbon signals for a WattTime region (``CAISO_NORTH``, ``PJM_DC`` ...).

    Kind ``carbon_intensity`` (default) reads ``/v3/forecast`` (5-minute points up to 72 h ahead) and
    ``/v3/historical``, converted from lbs CO2/MWh to gCO2eq/kWh. The metric follows the connection's
    ``signal_type`` extra: ``co2_moer`` (default) is marginal, ``co2_aoer`` average. Kind ``carbon_index``
    reads ``/v3/signal-index``, the current value as a 0-100 percentile (actuals only; there is no index
    forecast).

    Tokens from ``/login`` are shared by every hook in the process and reused for 25 minutes; each token
    is masked in Airflow's logs and redacted from error messages.

    :param gridaware_conn_id: connection of type ``gridaware_watttime``: Login and Password are the WattTime
        account; Host may point at a mirror or the local simulator, and defaults to the public API.
    """

    default_conn_name = "gridaware_watttime_default"
    conn_type = "gridaware_watttime"
    hook_name = "Grid: WattTime v3"
    source_name = watttime.SOURCE
    default_base_url = watttime.DEFAULT_BASE_URL
    supported_kinds = (SignalKind.CARBON_INTENSITY, SignalKind.CARBON_INDEX)
    test_zone = "CAISO_NORTH"  # the one region whose forecast the free plan includes

    def token_callback(self, settings: SourceSettings) -> TokenCallback:
        """A callback that redacts each new token from this hook's messages and masks it in Airflow's logs.

        :param settings: the connection settings whose transport must learn the tokens.
        """
        transport = self.transport_for(settings)

        def register(token: str) -> None:
            if token in transport.secrets:
                return  # already known: spare the supervisor a message per request
            transport.add_secret(token)
            mask_secret(token)

        return register

    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        return watttime.signal_flow(settings, query, on_token=self.token_callback(settings))

    # -- region lookup -----------------------------------------------------------------------------------
    def region_from_location(self, latitude: float, longitude: float) -> str:
        """The WattTime region (for the connection's ``signal_type``) that covers a location.

        :param latitude: degrees north, -90..90.
        :param longitude: degrees east, -180..180.
        """
        settings = self.get_settings()
        flow = watttime.region_flow(settings, latitude, longitude, self.token_callback(settings))
        return run_flow(flow, self.transport_for(settings))

    async def aregion_from_location(self, latitude: float, longitude: float) -> str:
        """Async twin of :meth:`region_from_location`.

        :param latitude: degrees north, -90..90.
        :param longitude: degrees east, -180..180.
        """
        settings = await self.aget_settings()
        flow = watttime.region_flow(settings, latitude, longitude, self.token_callback(settings))
        return await arun_flow(flow, self.transport_for(settings))

    # -- forecast vintages (backtests) -----------------------------------------------------------------------
    def get_forecast_history(
        self, zone: str, start: datetime, end: datetime, *, horizon_hours: int = watttime.DEFAULT_HORIZON_HOURS
    ) -> list[SignalSeries]:
        """Forecasts as they were issued in ``[start, end)``: one series per ``generated_at``, oldest first.

        Needs a paid WattTime plan, except for ``CAISO_NORTH``.

        :param zone: the WattTime region.
        :param start: earliest issue time (timezone-aware).
        :param end: issue times before this are returned (timezone-aware).
        :param horizon_hours: length of each vintage, 0..72 hours.
        """
        settings = self.get_settings()
        flow = watttime.forecast_history_flow(
            settings, zone, start, end, horizon=horizon_hours, on_token=self.token_callback(settings)
        )
        return run_flow(flow, self.transport_for(settings))

    async def aget_forecast_history(
        self, zone: str, start: datetime, end: datetime, *, horizon_hours: int = watttime.DEFAULT_HORIZON_HOURS
    ) -> list[SignalSeries]:
        """Async twin of :meth:`get_forecast_history`.

        :param zone: the WattTime region.
        :param start: earliest issue time (timezone-aware).
        :param end: issue times before this are returned (timezone-aware).
        :param horizon_hours: length of each vintage, 0..72 hours.
        """
        settings = await self.aget_settings()
        flow = watttime.forecast_history_flow(
            settings, zone, start, end, horizon=horizon_hours, on_token=self.token_callback(settings)
        )
        return await arun_flow(flow, self.transport_for(settings))
