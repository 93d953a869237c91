"""Typed reads of a connection's extra fields, with errors that name the field and the connection.

Shared by the hooks whose connections carry TLS material and tuning numbers in their extras
(OpenADR 2.0b, IEEE 2030.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.signals.errors import SourceConfigError


class ConnectionExtra:
    """One connection's extras.

    :param extra: the parsed extra JSON.
    :param source: ``<protocol>:<conn id>``, named in every error.
    """

    def __init__(self, extra: Mapping[str, Any], source: str) -> None:
        self.extra = extra
        self.source = source

    def text(self, key: str) -> str | None:
        """The field stripped, or ``None`` when absent or empty."""
        value = self.extra.get(key)
        return str(value).strip() if value not in (None, "") else None

    def pem(self, inline_key: str, file_key: str, what: str) -> bytes | None:
        """PEM text given inline, else read from the file named in ``file_key``, else ``None``.

        :param inline_key: the field holding the PEM itself.
        :param file_key: the field holding a path to it.
        :param what: what the file is, for the error.
        """
        inline, path = self.text(inline_key), self.text(file_key)
        if inline:
            return inline.encode()
        if path:
            try:
                return Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise SourceConfigError(
                    f"cannot read the {what} {path!r}: {exc.strerror}", source=self.source
                ) from None
        return None

    def positive_number(self, key: str, default: float) -> float:
        """The field as a positive number, ``default`` when absent."""
        value = self.extra.get(key)
        if value in (None, ""):
            return default
        try:
            result = float(value)
        except (TypeError, ValueError):
            result = -1.0
        if result <= 0:
            raise SourceConfigError(f"extra field {key!r} must be a positive number, not {value!r}", source=self.source)
        return result
