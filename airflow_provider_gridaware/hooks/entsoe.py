"""Hook for ENTSO-E day-ahead prices (Transparency Platform, documentType A44)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import entsoe

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings


class EntsoePriceHook(GridSignalHook):
    """Day-ahead electricity prices per bidding zone, in the currency ENTSO-E states (EUR/MWh mostly).

    Zones are EIC codes (``10YCZ-CEPS-----N``) or bidding-zone short names (``DE-LU``, ``FR``, ``DK1``,
    ``NO5``, ``IT-North`` ...). ``get_forecast`` returns today's and (after the auction, about 12:45 CET)
    tomorrow's firm prices as an ``actual`` series stamped with ``issued_at``; ``get_actuals`` returns
    past prices over any range. The security token never appears in a log line or an error.

    :param gridaware_conn_id: connection of type ``gridaware_entsoe``; Password holds the security token,
        Host may point at a mirror or the local simulator and defaults to the public API.
    """

    default_conn_name = "gridaware_entsoe_default"
    conn_type = "gridaware_entsoe"
    hook_name = "Grid: ENTSO-E day-ahead prices"
    source_name = entsoe.SOURCE
    default_base_url = entsoe.DEFAULT_BASE_URL
    supported_kinds = (SignalKind.PRICE,)
    test_zone = "DE-LU"

    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        """The A44 exchange for ``query``; see :func:`airflow_provider_gridaware.sources.entsoe.signal_flow`.

        :param settings: the connection's settings.
        :param query: zone, range and forecast flag.
        """
        return entsoe.signal_flow(settings, query)
