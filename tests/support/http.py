"""One HTTP client for the tests' calls to servers on loopback.

``httpx.get()`` and its siblings build a ``Client`` on every call, and each ``Client`` builds a TLS context,
loading the CA bundle (tens of milliseconds of CPU), even for a plain-HTTP URL. The suite's polls and load
tests made that about a fifth of the pytest workers' CPU (py-spy over a whole ``make test``). This client is
built once per process. No keep-alive: every request opens its own connection, as ``httpx.get()`` did, so a
server that was restarted or SIGKILLed is never asked on a connection it left behind.
"""

from __future__ import annotations

import httpx

LOOPBACK = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
