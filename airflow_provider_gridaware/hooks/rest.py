"""Hook for a custom REST/JSON grid signal API (a utility's own price or carbon endpoint)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_gridaware.hooks.base import GridSignalHook
from airflow_provider_gridaware.signals.units import SignalKind
from airflow_provider_gridaware.sources import rest

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.sources.flow import Flow, SignalQuery
    from airflow_provider_gridaware.sources.settings import SourceSettings


class GridRestHook(GridSignalHook):
    """Any JSON API that lists time-stamped carbon or price values, mapped by the connection's extras.

    The connection says where (``forecast_path``, ``actual_path``), how to authenticate (``auth_type``:
    none, api_key, bearer, oauth2_client_credentials), where the points are (``records_path``,
    ``time_field``, ``end_field``, ``value_field``) and what they mean (``kind``, ``metric``, ``unit`` or
    ``unit_field``, ``currency``, ``timezone`` for naive local times). See
    :class:`airflow_provider_gridaware.sources.rest.RestSourceConfig`.

    :param gridaware_conn_id: connection of type ``gridaware_rest``; Host is the API's base URL, Login
        the OAuth2 client id, Password the API key, bearer token or client secret.
    """

    default_conn_name = "gridaware_rest_default"
    conn_type = "gridaware_rest"
    hook_name = "Grid: custom REST/JSON source"
    source_name = rest.SOURCE
    default_base_url = ""
    # The kind is the connection's (extra field 'kind'); the flow refuses a query for another one.
    supported_kinds = tuple(SignalKind)
    # Without the extra 'issued_at_field' a forecast is stamped with its fetch time (set per connection below).
    states_issue_time = False

    def resolve_query(self, query: SignalQuery) -> SignalQuery:
        """Leave the kind open: it comes from the connection, which is read (async-safely) later.

        :param query: the caller's query.
        """
        return query

    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        """The exchange for ``query``; see :func:`airflow_provider_gridaware.sources.rest.signal_flow`.

        :param settings: the connection's settings.
        :param query: zone, range and forecast flag.
        """
        self.states_issue_time = bool(settings.extra.get("issued_at_field"))
        # Access tokens obtained during the flow are redacted by this hook's transport from then on.
        return rest.signal_flow(settings, query, on_secret=self.transport_for(settings).add_secret)
