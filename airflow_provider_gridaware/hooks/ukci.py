"""Hook for the GB Carbon Intensity API (no credentials needed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import ukci

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings


class UKCarbonIntensityHook(GridSignalHook):
    """Average carbon intensity for Great Britain, national (``GB``) or regional (``GB-1`` .. ``GB-17``).

    Forecasts come from ``/intensity/{from}/fw48h`` (96 half-hours); actuals from
    ``/intensity/{from}/{to}``, settled periods only.

    :param gridaware_conn_id: connection of type ``gridaware_ukci``; Host may point at a mirror or the
        local simulator, and defaults to the public API.
    """

    default_conn_name = "gridaware_ukci_default"
    conn_type = "gridaware_ukci"
    hook_name = "Grid: GB Carbon Intensity"
    source_name = ukci.SOURCE
    default_base_url = ukci.DEFAULT_BASE_URL
    supported_kinds = (SignalKind.CARBON_INTENSITY,)
    test_zone = "GB"
    # The API states no issue time: forecasts are stamped with the half hour they were fetched in.
    states_issue_time = False

    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        return ukci.signal_flow(settings, query)
