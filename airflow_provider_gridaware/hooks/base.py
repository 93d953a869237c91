"""Base class for every grid signal hook: connection -> settings -> transport -> source flow."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from airflow_provider_gridaware.hooks.store import record_signal, record_signal_soon
from airflow_provider_gridaware.signals.errors import GridSignalError
from airflow_provider_gridaware.sources.flow import SignalQuery, arun_flow, run_flow
from airflow_provider_gridaware.sources.settings import SourceSettings, build_base_url
from airflow_provider_gridaware.transport.breaker import get_breaker
from airflow_provider_gridaware.transport.http import HttpTransport, redact_url

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import Flow


class HttpSettingsMixin(BaseHook):
    """Connection -> :class:`SourceSettings` -> one :class:`HttpTransport` per hook, sync and async.

    For hooks over an HTTP source: they implement ``settings_from_connection`` and set
    ``gridaware_conn_id`` and ``_transport = None`` in ``__init__``.
    """

    gridaware_conn_id: str
    _transport: HttpTransport | None

    def settings_from_connection(self, conn: Connection) -> SourceSettings:
        raise NotImplementedError

    def get_settings(self) -> SourceSettings:
        return self.settings_from_connection(self.get_connection(self.gridaware_conn_id))

    async def aget_settings(self) -> SourceSettings:
        return self.settings_from_connection(await self.aget_connection(self.gridaware_conn_id))

    def transport_for(self, settings: SourceSettings) -> HttpTransport:
        """The transport of this connection (timeouts, retries, circuit breaker), built once per hook."""
        if self._transport is None:
            self._transport = transport_from_settings(settings)
        return self._transport


class GridSignalHook(HttpSettingsMixin):
    """Reads one grid signal source through an Airflow connection, sync and async.

    Subclasses set the class attributes and implement :meth:`signal_flow`; everything else (settings,
    timeouts, retries, circuit breaker, secret masking) is shared.

    :param gridaware_conn_id: the Airflow connection to read.
    """

    conn_name_attr = "gridaware_conn_id"
    default_conn_name: ClassVar[str] = "gridaware_default"
    conn_type: ClassVar[str] = ""
    hook_name: ClassVar[str] = ""
    #: name of the source in series and errors (``watttime``, ``entsoe`` ...).
    source_name: ClassVar[str] = ""
    #: where the public API lives when the connection leaves Host empty.
    default_base_url: ClassVar[str] = ""
    #: the signal kinds this source can serve; the first is the default.
    supported_kinds: ClassVar[tuple[SignalKind, ...]] = ()
    #: whether the source states when its forecasts were issued (else ``issued_at`` is the fetch time).
    states_issue_time: bool = True

    def __init__(self, gridaware_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gridaware_conn_id = gridaware_conn_id or self.default_conn_name
        self._transport: HttpTransport | None = None

    # -- connection -> settings ----------------------------------------------------------------------
    def settings_from_connection(self, conn: Connection) -> SourceSettings:
        extra = conn.extra_dejson if conn.extra else {}
        return SourceSettings(
            conn_id=conn.conn_id,
            base_url=build_base_url(conn.host, conn.schema, conn.port, self.default_base_url),
            login=conn.login or None,
            password=conn.password or None,
            extra=extra,
        )

    # -- the one thing a source implements -------------------------------------------------------------
    def signal_flow(self, settings: SourceSettings, query: SignalQuery) -> Flow[SignalSeries]:
        """The exchange that answers ``query``: yields requests, returns a validated series."""
        raise NotImplementedError

    def resolve_query(self, query: SignalQuery) -> SignalQuery:
        """Fill the default kind and refuse kinds the source cannot serve."""
        from dataclasses import replace

        from airflow_provider_gridaware.signals.errors import SourceConfigError

        kind = query.kind or self.supported_kinds[0]
        if kind not in self.supported_kinds:
            served = ", ".join(k.value for k in self.supported_kinds)
            raise SourceConfigError(
                f"{self.source_name} serves {served}, not {kind.value}", source=self.gridaware_conn_id
            )
        return replace(query, kind=kind)

    # -- public API: sync ----------------------------------------------------------------------------
    def get_signal(self, query: SignalQuery) -> SignalSeries:
        """Fetch and validate the series that answers ``query`` (blocking), and archive it."""
        series = self.fetch_signal(query)
        record_signal(series, issue_time_stated=self.states_issue_time)
        return series

    def fetch_signal(self, query: SignalQuery) -> SignalSeries:
        """What :meth:`get_signal` returns, without archiving it (override this, not ``get_signal``)."""
        query = self.resolve_query(query)
        settings = self.get_settings()
        return run_flow(self.signal_flow(settings, query), self.transport_for(settings))

    def get_forecast(
        self,
        zone: str,
        *,
        kind: SignalKind | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> SignalSeries:
        """Values ahead of now for ``zone`` (a forecast, or firm day-ahead prices)."""
        return self.get_signal(SignalQuery(zone, kind, True, start, end))

    def get_actuals(
        self,
        zone: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        kind: SignalKind | None = None,
    ) -> SignalSeries:
        """Measured (settled) values for ``zone`` over ``[start, end)``; the source's default range if omitted."""
        return self.get_signal(SignalQuery(zone, kind, False, start, end))

    # -- public API: async (triggers) ------------------------------------------------------------------
    async def aget_signal(self, query: SignalQuery) -> SignalSeries:
        """Async twin of :meth:`get_signal`; never blocks the event loop (archiving runs in the background)."""
        series = await self.afetch_signal(query)
        record_signal_soon(series, issue_time_stated=self.states_issue_time)
        return series

    async def afetch_signal(self, query: SignalQuery) -> SignalSeries:
        """Async twin of :meth:`fetch_signal`."""
        query = self.resolve_query(query)
        settings = await self.aget_settings()
        return await arun_flow(self.signal_flow(settings, query), self.transport_for(settings))

    async def aget_forecast(
        self,
        zone: str,
        *,
        kind: SignalKind | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> SignalSeries:
        return await self.aget_signal(SignalQuery(zone, kind, True, start, end))

    async def aget_actuals(
        self,
        zone: str,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        kind: SignalKind | None = None,
    ) -> SignalSeries:
        return await self.aget_signal(SignalQuery(zone, kind, False, start, end))

    # -- Airflow UI "Test" button -----------------------------------------------------------------------
    #: zone used by :meth:`test_connection` when the connection's extra has no ``test_zone``.
    test_zone: ClassVar[str] = ""

    def test_connection(self) -> tuple[bool, str]:
        """Fetch one small series; report what came back or exactly what failed."""
        settings = None
        try:
            settings = self.get_settings()
            zone = settings.get_str("test_zone", self.test_zone) or self.test_zone
            series = self.get_forecast(zone)
        except GridSignalError as exc:
            return False, self.test_failure_message(exc, settings)
        return True, f"{len(series)} {series.kind.value} points for {series.zone} in {series.unit}"

    def test_failure_message(self, exc: GridSignalError, settings: SourceSettings | None) -> str:
        """What :meth:`test_connection` reports for ``exc``: the host tested, not the connection id.

        Airflow's UI "Test" button runs the hook on a throwaway copy of the form under a random
        connection id (``XgP2Fi3y``), which means nothing to the user; the host they typed does.

        :param exc: the failure, its message already free of secrets.
        :param settings: the connection's settings, ``None`` if reading them failed.
        """
        message = str(exc)
        tag = f"[{exc.source}] "
        if exc.source == self.gridaware_conn_id and message.startswith(tag):
            message = message[len(tag) :]
        if settings is None or not settings.base_url:
            return message
        host = settings.base_url
        if "://" in host:  # no user:password@ or token query from the Host field
            host = redact_url(host, secrets=[settings.password or ""])
        return message if host in message else f"{host}: {message}"

    def get_conn(self) -> HttpTransport:
        return self.transport_for(self.get_settings())


def transport_from_settings(settings: SourceSettings) -> HttpTransport:
    """A transport with the connection's timeouts, retries, TLS choice, circuit breaker and password masked.

    :param settings: the connection's settings.
    """
    return HttpTransport(
        settings.conn_id,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        verify=settings.verify,
        retry=settings.retry_policy,
        breaker=get_breaker(
            settings.conn_id,
            failure_threshold=settings.circuit_failure_threshold,
            reset_seconds=settings.circuit_reset_seconds,
        ),
        secrets=[s for s in (settings.password,) if s],
    )
