"""Fault injection for the simulator: what can go wrong with a grid API, and when.

A fault applies to one API (``target``) or all of them (``*``), optionally to one path prefix only, for
``count`` requests or until cleared. Modes:

- ``timeout``: answer only after ``delay`` seconds (default 30), longer than a client's read timeout;
- ``error``: answer HTTP ``status`` (default 500);
- ``rate_limit``: answer 429 with ``Retry-After: retry_after`` (default 60 s);
- ``malformed``: answer the real body cut in half (invalid JSON or XML);
- ``stale``: answer data whose newest point is ``stale_hours`` (default 6) old;
- ``empty``: answer the documented shape with no data points;
- ``nan``: answer NaN in place of every value.

On the command line a fault is ``TARGET:MODE[:key=value,...]`` (``ukci:error:status=503,count=2``) or the
same fields as a JSON object.
"""

from __future__ import annotations

import json
import threading
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TARGETS = ("watttime", "electricitymaps", "ukci", "entsoe")
ANY_TARGET = "*"


class FaultMode(str, Enum):
    TIMEOUT = "timeout"
    ERROR = "error"
    RATE_LIMIT = "rate_limit"
    MALFORMED = "malformed"
    STALE = "stale"
    EMPTY = "empty"
    NAN = "nan"


class FaultSpec(BaseModel):
    """One injected fault.

    :param target: ``watttime``, ``electricitymaps``, ``ukci``, ``entsoe`` or ``*`` (every API).
    :param mode: what goes wrong (see the module docstring).
    :param status: HTTP status for ``error`` (default 500) or ``rate_limit`` (default 429).
    :param retry_after: seconds in the ``Retry-After`` header of ``rate_limit`` (default 60).
    :param delay: seconds before a ``timeout`` answer (default 30).
    :param count: how many matching requests the fault hits; ``None`` means until cleared.
    :param path: only requests whose path below the API prefix starts with this (e.g. ``/v3/forecast``).
    :param stale_hours: age of the newest point for ``stale``.
    """

    model_config = ConfigDict(extra="forbid")

    target: str = ANY_TARGET
    mode: FaultMode
    status: int | None = Field(default=None, ge=100, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    delay: float | None = Field(default=None, ge=0)
    count: int | None = Field(default=None, ge=1)
    path: str | None = None
    stale_hours: float = Field(default=6.0, gt=0)

    @field_validator("target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in (*TARGETS, ANY_TARGET):
            raise ValueError(f"target must be one of {', '.join((*TARGETS, ANY_TARGET))}, not {value!r}")
        return value

    def matches(self, target: str, path: str) -> bool:
        """Whether a request to ``path`` (below the API prefix) of API ``target`` is hit by this fault."""
        if self.target not in (ANY_TARGET, target):
            return False
        return self.path is None or path.startswith(self.path)

    @property
    def http_status(self) -> int:
        if self.status is not None:
            return self.status
        return 429 if self.mode is FaultMode.RATE_LIMIT else 500


def describe_validation_error(exc: ValidationError) -> str:
    """One line from a pydantic error: ``field: message; field: message``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def parse_fault_spec(text: str) -> FaultSpec:
    """A fault from ``TARGET:MODE[:key=value,...]`` or a JSON object.

    :param text: e.g. ``ukci:rate_limit:retry_after=120`` or ``{"target": "*", "mode": "timeout"}``.
    :raises ValueError: with one line saying what is wrong.
    """
    text = text.strip()
    fields: dict[str, Any]
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"fault {text!r} is not valid JSON ({exc})") from None
        if not isinstance(fields, dict):
            raise ValueError(f"fault {text!r} must be a JSON object")
    else:
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ValueError(f"fault {text!r} must look like TARGET:MODE[:key=value,...], e.g. ukci:error:status=503")
        fields = {"target": parts[0], "mode": parts[1]}
        for item in parts[2].split(",") if len(parts) == 3 and parts[2] else []:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"fault {text!r}: {item!r} is not key=value")
            fields[key.strip()] = None if value.strip().lower() in ("", "null", "none") else value.strip()
    try:
        return FaultSpec.model_validate(fields)
    except ValidationError as exc:
        raise ValueError(f"fault {text!r}: {describe_validation_error(exc)}") from None


class FaultBook:
    """The active faults, consumed as requests hit them. Thread-safe.

    :param faults: faults active from the start.
    """

    def __init__(self, faults: tuple[FaultSpec, ...] | list[FaultSpec] = ()) -> None:
        self._lock = threading.Lock()
        self._active: list[tuple[FaultSpec, int | None]] = [(f, f.count) for f in faults]

    def add(self, fault: FaultSpec) -> None:
        """Activate ``fault`` (after the ones already active: the first match wins)."""
        with self._lock:
            self._active.append((fault, fault.count))

    def clear(self, target: str | None = None) -> int:
        """Remove every fault, or those of one ``target``; returns how many were removed."""
        with self._lock:
            before = len(self._active)
            self._active = [(f, n) for f, n in self._active if target is not None and f.target != target]
            return before - len(self._active)

    def take(self, target: str, path: str) -> FaultSpec | None:
        """The first fault hitting this request, counting it; ``None`` if the request goes through clean.

        :param target: the API the request is for.
        :param path: the request path below the API prefix.
        """
        with self._lock:
            for index, (fault, remaining) in enumerate(self._active):
                if not fault.matches(target, path):
                    continue
                if remaining is not None:
                    if remaining <= 1:
                        del self._active[index]
                    else:
                        self._active[index] = (fault, remaining - 1)
                return fault
            return None

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready list of active faults with their remaining counts."""
        with self._lock:
            return [{**f.model_dump(mode="json"), "remaining": n} for f, n in self._active]
