"""A small OpenADR 3 VTN on loopback: programs, events and subscriptions in the fixture shapes, behind OAuth2.

What it does as a real VTN would: ``GET /auth/server`` names the token URL; ``POST /auth/token`` grants
client-credentials tokens (form body or HTTP Basic) that expire; a missing, wrong or expired token gets
401; list endpoints page with ``skip``/``limit`` (limit above 50 is a 400); events filter by
``programID``; every change of an event stamps ``modificationDateTime`` and notifies the subscriptions
whose program matches by POSTing a notification (with the subscription's bearer token) to its callback.
Tests drive it in-process (``add_event``, ``modify_event``, ``delete_event``, ``expire_tokens``).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

UTC = timezone.utc
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openadr3"
MAX_LIMIT = 50


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class OpenADR3VTN:
    """An OpenADR 3 VTN speaking ``version`` 3.0.1 or 3.1 shapes at ``url``.

    :param client_id: the one client allowed.
    :param client_secret: its secret.
    :param token_seconds: lifetime of each token (``expires_in``).
    :param version: ``3.0.1`` or ``3.1``: the shape of targets (and 3.1's event ``duration``).
    :param discovery: serve ``GET /auth/server`` (3.1); 3.0.1 VTNs answer 404.
    """

    def __init__(
        self,
        client_id: str = "ven-client",
        client_secret: str = "ven-secret",
        *,
        token_seconds: float = 3600.0,
        version: str = "3.1",
        discovery: bool = True,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_seconds = token_seconds
        self.version = version
        self.discovery = discovery
        self.programs: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.token_grants = 0
        self.notifications_sent: list[tuple[str, int]] = []
        self._ids = 0
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/openadr3/{self.version}"

    def __enter__(self) -> OpenADR3VTN:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- what tests do -------------------------------------------------------------------------------
    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def add_program(self, name: str) -> str:
        with self._lock:
            program_id = self._next_id("program")
            now = _stamp(datetime.now(UTC))
            self.programs.append(
                {
                    "id": program_id,
                    "createdDateTime": now,
                    "modificationDateTime": now,
                    "objectType": "PROGRAM",
                    "programName": name,
                }
            )
            return program_id

    def add_event(
        self,
        program_id: str,
        *,
        start: datetime,
        step: timedelta = timedelta(minutes=15),
        raw: dict[str, Any] | None = None,
    ) -> str:
        """An event in the fixture's shape for ``program_id``, its intervals moved to begin at ``start``."""
        with self._lock:
            event = copy.deepcopy(raw) if raw is not None else self._from_fixture(start, step)
            event_id = (event.get("id") if raw is not None else None) or self._next_id("event")
            now = _stamp(datetime.now(UTC))
            event.update(id=event_id, programID=program_id, createdDateTime=now, modificationDateTime=now)
            self.events[event_id] = event
        self._notify("POST", event)
        return event_id

    def _from_fixture(self, start: datetime, step: timedelta) -> dict[str, Any]:
        event = fixture(f"example_event_{'3.1' if self.version.startswith('3.1') else '3.0.1'}.json")
        minutes = int(step.total_seconds() // 60)
        event["intervalPeriod"] = {"start": _stamp(start), "duration": f"PT{minutes}M", "randomizeStart": None}
        for index, interval in enumerate(event["intervals"]):
            interval["intervalPeriod"] = {
                "start": _stamp(start + index * step),
                "duration": f"PT{minutes}M",
                "randomizeStart": None,
            }
        return event

    def modify_event(self, event_id: str, change: Any) -> None:
        """Apply ``change(event)`` and stamp the modification (a BL client's PUT)."""
        with self._lock:
            event = self.events[event_id]
            change(event)
            event["modificationDateTime"] = _stamp(datetime.now(UTC))
            snapshot = copy.deepcopy(event)
        self._notify("PUT", snapshot)

    def delete_event(self, event_id: str) -> None:
        with self._lock:
            event = self.events.pop(event_id)
        self._notify("DELETE", event)

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (expired or revoked early)."""
        with self._lock:
            self.tokens.clear()

    def paths(self, method: str = "GET") -> list[str]:
        return [path for m, path, _ in self.requests if m == method]

    # -- notifications -------------------------------------------------------------------------------
    def _notify(self, operation: str, event: dict[str, Any]) -> None:
        with self._lock:
            subscriptions = [copy.deepcopy(s) for s in self.subscriptions.values()]
        for subscription in subscriptions:
            if subscription.get("programID") not in (None, event.get("programID")):
                continue
            for target in subscription.get("objectOperations") or []:
                if "EVENT" not in target.get("objects", []) or operation not in target.get("operations", []):
                    continue
                body = json.dumps({"objectType": "EVENT", "operation": operation, "object": event}).encode()
                request = urllib.request.Request(target["callbackUrl"], data=body, method="POST")
                request.add_header("Content-Type", "application/json")
                if target.get("bearerToken"):
                    request.add_header("Authorization", f"Bearer {target['bearerToken']}")
                try:
                    with urllib.request.urlopen(request, timeout=5) as response:
                        status = response.status
                except urllib.error.HTTPError as exc:
                    status = exc.code
                self.notifications_sent.append((target["callbackUrl"], status))

    # -- HTTP ----------------------------------------------------------------------------------------
    def _authorised(self, headers: Any) -> bool:
        value = headers.get("Authorization") or ""
        if not value.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self.tokens.get(value[len("Bearer ") :])
        return expiry is not None and time.monotonic() < expiry

    def _grant(self, headers: Any, form: dict[str, str]) -> tuple[int, Any]:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = headers.get("Authorization") or ""
        if basic.startswith("Basic "):
            decoded = base64.b64decode(basic[len("Basic ") :]).decode()
            client_id, _, secret = (unquote_plus(p) for p in decoded.partition(":"))
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if client_id != self.client_id or secret != self.client_secret:
            return 400, {"error": "invalid_client", "error_description": "unknown client or wrong secret"}
        token = secrets.token_urlsafe(16)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_seconds
            self.token_grants += 1
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_seconds}

    @staticmethod
    def _page(items: list[Any], query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            skip = int(query.get("skip", ["0"])[0])
            limit = int(query.get("limit", [str(MAX_LIMIT)])[0])
        except ValueError:
            return 400, {"title": "skip and limit must be integers"}
        if limit > MAX_LIMIT or limit < 0 or skip < 0:
            return 400, {"title": f"limit must be 0..{MAX_LIMIT}"}
        return 200, items[skip : skip + limit]

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> tuple[int, Any]:
        prefix = urlsplit(self.url).path
        if not path.startswith(prefix):
            return 404, {"title": "not found"}
        path = path[len(prefix) :]
        if path == "/auth/server" and method == "GET":
            return (200, {"tokenURL": f"{self.url}/auth/token"}) if self.discovery else (404, {"title": "not found"})
        if path == "/auth/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self._grant(headers, form)
        if not self._authorised(headers):
            return 401, {"title": "Unauthorized", "detail": "missing, unknown or expired token"}
        with self._lock:
            if path == "/programs" and method == "GET":
                return self._page(list(self.programs), query)
            if path == "/events" and method == "GET":
                program = query.get("programID", [None])[0]
                events = [e for e in self.events.values() if program is None or e.get("programID") == program]
                return self._page(copy.deepcopy(events), query)
            if path == "/subscriptions" and method == "GET":
                name = query.get("clientName", [None])[0]
                found = [s for s in self.subscriptions.values() if name is None or s["clientName"] == name]
                return self._page(copy.deepcopy(found), query)
            if path == "/subscriptions" and method == "POST":
                subscription = json.loads(body)
                subscription_id = self._next_id("subscription")
                now = _stamp(datetime.now(UTC))
                subscription.update(
                    id=subscription_id, createdDateTime=now, modificationDateTime=now, objectType="SUBSCRIPTION"
                )
                self.subscriptions[subscription_id] = subscription
                return 201, subscription
            if path.startswith("/subscriptions/"):
                subscription_id = path.rsplit("/", 1)[1]
                if subscription_id not in self.subscriptions:
                    return 404, {"title": "no such subscription"}
                if method == "PUT":
                    updated = {**self.subscriptions[subscription_id], **json.loads(body)}
                    updated["modificationDateTime"] = _stamp(datetime.now(UTC))
                    self.subscriptions[subscription_id] = updated
                    return 200, updated
                if method == "DELETE":
                    return 200, self.subscriptions.pop(subscription_id)
                if method == "GET":
                    return 200, self.subscriptions[subscription_id]
        return 404, {"title": f"no route {method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vtn = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = parse_qs(parts.query)
                with vtn._lock:
                    vtn.requests.append((self.command, parts.path, query))
                status, payload = vtn._route(self.command, parts.path, query, self.headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
