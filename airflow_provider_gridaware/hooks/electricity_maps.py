"""Hook for Electricity Maps v3: average (location-based) carbon intensity of consumption per zone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import electricity_maps
from airflow_provider_gridaware.sources.flow import arun_flow, run_flow

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings


class ElectricityMapsHook(GridSignalHook):
    """Average carbon intensity (gCO2eq/kWh) of the electricity consumed in an Electricity Maps zone.

    Forecasts come from ``/v3/carbon-intensity/forecast`` (paid plans), issued at its ``updatedAt``.
    Actuals come from ``/v3/carbon-intensity/history`` (the last 24 hours) when no start is given, else
    from ``/v3/carbon-intensity/past-range`` in 10-day requests. Hours without a value are gaps.
    The connection's ``emission_factor_type`` extra (``lifecycle`` or ``direct``) is sent as
    ``emissionFactorType``.

    :param gridaware_conn_id: connection of type ``gridaware_electricitymaps``: Password is the API token
        (sent as the ``auth-token`` header); Host may point at a mirror or the local simulator, and
        defaults to the public API.
    """

    default_conn_name = "gridaware_electricitymaps_default"
    conn_type = "gridaware_electricitymaps"
    hook_name = "Grid: Electricity Maps v3"
    source_name = electricity_maps.SOURCE
    default_base_url = electricity_maps.DEFAULT_BASE_URL
    supported_kinds = (SignalKind.CARBON_INTENSITY,)
    test_zone = "DE"

    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        return electricity_maps.signal_flow(settings, query)

    def get_latest(self, zone: str) -> SignalSeries:
        """The last known carbon intensity of ``zone``, as a one-point actual series of its hour.

        :param zone: the Electricity Maps zone key (``DE``, ``ES`` ...).
        """
        settings = self.get_settings()
        return run_flow(electricity_maps.latest_flow(settings, zone), self.transport_for(settings))

    async def aget_latest(self, zone: str) -> SignalSeries:
        """Async twin of :meth:`get_latest`.

        :param zone: the Electricity Maps zone key (``DE``, ``ES`` ...).
        """
        settings = await self.aget_settings()
        return await arun_flow(electricity_maps.latest_flow(settings, zone), self.transport_for(settings))

    def test_connection(self) -> tuple[bool, str]:
        """Fetch the latest value of the test zone: the one endpoint every plan includes (forecasts are paid)."""
        settings = None
        try:
            settings = self.get_settings()
            zone = settings.get_str("test_zone", self.test_zone) or self.test_zone
            series = self.get_latest(zone)
        except GridSignalError as exc:
            return False, self.test_failure_message(exc, settings)
        return True, f"latest carbon intensity for {series.zone}: {series.values[0]:g} {series.unit}"
