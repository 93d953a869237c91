"""Ledger records as JSON: one record as a plain dict, and a :class:`LedgerReader` over a JSON file.

The file form lets a sustainability team re-render a day's report from an export, lets the report's tests
use a fixed hand-written day, and is what ``gridaware report --ledger-file`` reads. Pure: no Airflow.

A file is either a JSON list of records, an object ``{"records": [...]}``, or JSON lines (one record a
line, ``.jsonl``). A record's times are ISO 8601 with a zone; unknown keys are an error (a misspelt field
must not silently drop a figure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.ledger.records import (
    EnergyMethod,
    LedgerRecord,
    RunFigures,
    TryKey,
    ValueBasis,
    latest_versions,
)
from airflow_provider_gridaware.times import format_time, parse_time

_RUN_TIMES = ("start", "end")
_RECORD_TIMES = ("planned_start", "planned_end", "deadline", "recorded_at")


class LedgerFileError(ValueError):
    """A ledger file or record that cannot be read; the message names the file, the record and the field."""


def record_to_dict(record: LedgerRecord) -> dict[str, Any]:
    """A JSON-ready dict of ``record`` (times as ISO 8601 UTC with ``Z``).

    :param record: the record.
    """

    def run(figures: RunFigures | None) -> dict[str, Any] | None:
        if figures is None:
            return None
        out = {f.name: getattr(figures, f.name) for f in fields(figures)}
        for name in _RUN_TIMES:
            out[name] = format_time(out[name])
        return out

    out: dict[str, Any] = {f.name: getattr(record, f.name) for f in fields(record)}
    out["key"] = {f.name: getattr(record.key, f.name) for f in fields(record.key)}
    out["actual"] = run(record.actual)
    out["counterfactual"] = run(record.counterfactual)
    out["energy_method"] = record.energy_method.value
    out["basis"] = record.basis.value
    out["notes"] = list(record.notes)
    out["expected_signals"] = dict(record.expected_signals)
    for name in _RECORD_TIMES:
        out[name] = format_time(out[name]) if out[name] is not None else None
    return out


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, (str, datetime)):
        raise LedgerFileError(f"{what}: expected an ISO 8601 time, got {value!r}")
    try:
        return parse_time(value, what=what)
    except ValueError as exc:
        raise LedgerFileError(str(exc)) from None


def _checked(data: Any, cls: type, what: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise LedgerFileError(f"{what}: expected an object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LedgerFileError(f"{what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dict(data)


def _run_from_dict(data: Any, what: str) -> RunFigures:
    values = _checked(data, RunFigures, what)
    for name in _RUN_TIMES:
        if name not in values:
            raise LedgerFileError(f"{what}: field {name!r} is missing")
        values[name] = _time(values[name], f"{what}.{name}")
    if "zone" not in values:
        raise LedgerFileError(f"{what}: field 'zone' is missing")
    try:
        return RunFigures(**values)
    except TypeError as exc:
        raise LedgerFileError(f"{what}: {exc}") from None


def record_from_dict(data: Any, *, what: str = "record") -> LedgerRecord:
    """The :class:`LedgerRecord` of a dict made by :func:`record_to_dict` (or written by hand).

    :param data: the dict.
    :param what: where it came from, for error messages (``file.json record 3``).
    :raises LedgerFileError: a missing or unknown field, a bad time or enum value.
    """
    values = _checked(data, LedgerRecord, what)
    for name in ("key", "operator", "priority_class", "state", "actual"):
        if name not in values:
            raise LedgerFileError(f"{what}: field {name!r} is missing")
    key = _checked(values["key"], TryKey, f"{what}.key")
    try:
        values["key"] = TryKey(**key)
    except TypeError as exc:
        raise LedgerFileError(f"{what}.key: {exc}") from None
    values["actual"] = _run_from_dict(values["actual"], f"{what}.actual")
    if values.get("counterfactual") is not None:
        values["counterfactual"] = _run_from_dict(values["counterfactual"], f"{what}.counterfactual")
    for name in _RECORD_TIMES:
        if values.get(name) is not None:
            values[name] = _time(values[name], f"{what}.{name}")
    try:
        if "energy_method" in values:
            values["energy_method"] = EnergyMethod(values["energy_method"])
        if "basis" in values:
            values["basis"] = ValueBasis(values["basis"])
    except ValueError as exc:
        raise LedgerFileError(f"{what}: {exc}") from None
    values["notes"] = tuple(values.get("notes") or ())
    values["expected_signals"] = {str(k): float(v) for k, v in (values.get("expected_signals") or {}).items()}
    return LedgerRecord(**values)


def read_ledger_file(path: str | Path) -> list[LedgerRecord]:
    """Every record in a ledger file (all versions, as written).

    :param path: a ``.json`` (list, or ``{"records": [...]}``) or ``.jsonl`` file.
    :raises LedgerFileError: the file cannot be read or a record is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LedgerFileError(f"{path}: cannot read the ledger file: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".jsonl":
            items: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LedgerFileError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(items, Mapping):
        items = items.get("records")
    if not isinstance(items, list):
        raise LedgerFileError(f'{path}: expected a list of records or {{"records": [...]}}')
    return [record_from_dict(item, what=f"{path} record {index}") for index, item in enumerate(items)]


def write_ledger_file(path: str | Path, records: Sequence[LedgerRecord]) -> Path:
    """Write ``records`` as a ``{"records": [...]}`` JSON file that :class:`LedgerFile` reads back.

    :param path: the file to write.
    :param records: the records.
    """
    path = Path(path)
    path.write_text(json.dumps({"records": [record_to_dict(r) for r in records]}, indent=1) + "\n", encoding="utf-8")
    return path


class InMemoryLedger:
    """A :class:`~airflow_provider_gridaware.ledger.records.LedgerReader` over records held in memory.

    :param records: the records (several versions of a try allowed: the newest is read).
    """

    def __init__(self, records: Sequence[LedgerRecord] = ()) -> None:
        self._records = list(records)

    def records(self, since: datetime, until: datetime, *, dag_ids: Sequence[str] | None = None) -> list[LedgerRecord]:
        """The newest version of every record whose run started in ``[since, until)``, in start order."""
        wanted = set(dag_ids) if dag_ids is not None else None
        return latest_versions(
            r for r in self._records if since <= r.actual.start < until and (wanted is None or r.key.dag_id in wanted)
        )


class LedgerFile(InMemoryLedger):
    """A :class:`~airflow_provider_gridaware.ledger.records.LedgerReader` over a ledger file (read once).

    :param path: the file (see :func:`read_ledger_file`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(read_ledger_file(self.path))
