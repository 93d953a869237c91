"""Source adapters: pure request builders and payload parsers, one module per API (no Airflow, no I/O).

Each adapter describes an exchange as a *flow*: a generator that yields
:class:`~airflow_provider_gridaware.transport.HttpRequest` objects and receives
:class:`~airflow_provider_gridaware.transport.HttpResponse` objects, then returns a validated
:class:`~airflow_provider_gridaware.signals.SignalSeries`. The same flow is driven by the sync side
(operators, CLI) and the async side (triggers), so parsing is written once.
"""

from __future__ import annotations
