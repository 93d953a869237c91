"""A small mutual-TLS GET client for an IEEE 2030.5 server, over requests.

TLS: our client certificate, the connection's CA only (no public roots), the host name checked unless
the connection pins the server certificate's SHA-256 instead. A pin mismatch, a refused handshake or an
untrusted server end the call at once (no retry: they do not heal by waiting) with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_gridaware.signals.errors import (
    SourceAuthError,
    SourceConfigError,
    SourceRequestError,
    SourceUnavailableError,
)

if TYPE_CHECKING:
    import requests

SEP_XML = "application/sep+xml"


def normalise_sha256(value: str, *, source: str | None = None) -> str:
    """A SHA-256 certificate fingerprint as 64 lower-case hex digits (colons and spaces allowed in ``value``)."""
    digits = "".join(ch for ch in value if ch not in ": \t\n").lower()
    if len(digits) != 64 or any(ch not in "0123456789abcdef" for ch in digits):
        raise SourceConfigError(
            f"server fingerprint {value!r} is not a SHA-256 digest (64 hex digits, colons allowed)", source=source
        )
    return digits


def certificate_sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one 2030.5 server.

    :param source: names errors (``ieee2030_5:<conn id>``).
    :param base_url: ``https://host:port``.
    :param dcap_path: the DeviceCapability's path.
    :param cert_pem: our client certificate (PEM).
    :param key_pem: its private key (PEM).
    :param ca_pem: the CA bundle the server's certificate must chain to.
    :param server_fingerprint: the server certificate's SHA-256 (64 hex digits), or ``None``.
    :param check_hostname: check the server certificate's name (skipped when pinned: the pin is stricter).
    :param end_device: our EndDevice's LFDI or SFDI.
    :param page_size: list items per page.
    :param connect_timeout: seconds to connect.
    :param read_timeout: seconds to wait for an answer.
    """

    source: str
    base_url: str
    dcap_path: str = "/dcap"
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)
    server_fingerprint: str | None = None
    check_hostname: bool = True
    end_device: str | None = None
    page_size: int = 25
    connect_timeout: float = 5.0
    read_timeout: float = 10.0

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode() if self.ca_pem else None
        )
        context.check_hostname = self.check_hostname and not self.server_fingerprint
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_pem and self.key_pem:
            try:
                _load_cert_chain(context, self.cert_pem, self.key_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise SourceConfigError(
                    f"cannot load the client certificate or key: {exc}", source=self.source
                ) from None
        return context


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    # ssl wants files: write them private to this process, load, delete.
    with tempfile.TemporaryDirectory(prefix="gridaware-2030-5-") as folder:
        cert_path, key_path = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for path, data in ((cert_path, cert_pem), (key_path, key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path)


class Sep2Client:
    """GETs resources of one server over one keep-alive session.

    :param settings: the server and our TLS identity.
    """

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session: requests.Session | None = None

    def _make_session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter

        if not self.settings.base_url.lower().startswith("https://"):
            raise SourceConfigError(
                f"{self.settings.base_url}: IEEE 2030.5 runs over TLS; the server URL must be https://",
                source=self.settings.source,
            )
        context = self.settings.ssl_context()
        pin = self.settings.server_fingerprint

        class MutualTlsAdapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                kwargs["ssl_context"] = context
                if pin:
                    # urllib3 compares the peer certificate's digest after the handshake (chain still verified).
                    kwargs["assert_fingerprint"] = pin
                super().init_poolmanager(*args, **kwargs)

        session = requests.Session()
        session.trust_env = False  # no proxy or CA bundle from the environment between us and the server
        session.mount("https://", MutualTlsAdapter())
        session.headers["Accept"] = SEP_XML
        return session

    def get(self, href: str) -> bytes:
        """The body of ``href`` (a path, with query); a typed error naming it otherwise."""
        import requests

        if self._session is None:
            self._session = self._make_session()
        url = f"{self.settings.base_url}{href if href.startswith('/') else '/' + href}"
        source = self.settings.source
        try:
            response = self._session.get(url, timeout=(self.settings.connect_timeout, self.settings.read_timeout))
        except requests.exceptions.SSLError as exc:
            text = str(exc)
            if "Fingerprints did not match" in text:
                raise SourceAuthError(
                    f"GET {href}: the server's certificate does not match the pinned SHA-256 "
                    f"{self.settings.server_fingerprint}: refused",
                    source=source,
                ) from None
            raise SourceAuthError(f"GET {href}: TLS handshake failed: {_short(text)}", source=source) from None
        except requests.exceptions.Timeout:
            raise SourceUnavailableError(f"GET {href}: no answer in time", source=source) from None
        except requests.RequestException as exc:
            raise SourceUnavailableError(
                f"GET {href}: {type(exc).__name__}: {_short(str(exc))}", source=source
            ) from None
        if response.status_code in (401, 403):
            raise SourceAuthError(
                f"GET {href} -> HTTP {response.status_code} (is this client's certificate registered?)", source=source
            )
        if response.status_code >= 500:
            raise SourceUnavailableError(f"GET {href} -> HTTP {response.status_code}", source=source)
        if response.status_code >= 400 or response.status_code == 204:
            raise SourceRequestError(
                f"GET {href} -> HTTP {response.status_code}", source=source, status=response.status_code
            )
        return response.content

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _short(text: str) -> str:
    # requests nests urllib3's reason in a long repr; the innermost reason is what a reader needs.
    marker = "SSLError("
    if marker in text:
        text = text[text.rfind(marker) + len(marker) :]
    return text.strip("()'\" ")[:200]
