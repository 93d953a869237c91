"""A local IEEE 2030.5 server over mutual TLS: serves a resource tree of XML, pages lists, records GETs.

Plain resources are served as given; a list resource is built from its items page by page
(``?s=&l=``, with ``all``/``results``), so a client's paging is exercised for real.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

NSDECL = 'xmlns="urn:ieee:std:2030.5:ns" xmlns:csipaus="https://csipaus.org/ns/v1.3"'


@dataclass
class ListResource:
    """A list: its tag, items (XML of each item, without namespace declarations) and attributes."""

    tag: str
    items: list[str]
    poll_rate: int | None = None

    def page(self, href: str, start: int, limit: int) -> bytes:
        chosen = self.items[start : start + limit]
        rate = f' pollRate="{self.poll_rate}"' if self.poll_rate else ""
        head = f'<{self.tag} {NSDECL} href="{href}" all="{len(self.items)}" results="{len(chosen)}"{rate}>'
        return (head + "".join(chosen) + f"</{self.tag}>").encode()


@dataclass
class Sep2Server:
    """Serves ``resources`` (path -> XML bytes or :class:`ListResource`) at ``https://127.0.0.1:<port>``.

    :param cert_path: the server certificate; :param key_path: its key; :param ca_path: the CA clients
        must chain to (a client without a certificate is refused in the handshake).
    """

    cert_path: Path
    key_path: Path
    ca_path: Path
    resources: dict[str, bytes | ListResource] = field(default_factory=dict)
    gets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                with server._lock:
                    server.gets.append(self.path)
                    resource = server.resources.get(parts.path)
                if resource is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(resource, ListResource):
                    query = parse_qs(parts.query)
                    start = int(query.get("s", ["0"])[0])
                    limit = int(query.get("l", ["1000"])[0])
                    body = resource.page(parts.path, start, limit)
                else:
                    body = resource
                self.send_response(200)
                self.send_header("Content-Type", "application/sep+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        context.load_verify_locations(self.ca_path)
        context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no connection
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"https://{host}:{port}"

    def fetched(self, path: str) -> int:
        """How many GETs asked for ``path`` (any page)."""
        with self._lock:
            return sum(1 for g in self.gets if urlsplit(g).path == path)

    def __enter__(self) -> Sep2Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
