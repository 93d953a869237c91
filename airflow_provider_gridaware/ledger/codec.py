"""A :class:`~airflow_provider_gridaware.ledger.records.LedgerRecord` as plain JSON and back (pure).

The store keeps each record in this form, and ``gridaware ledger --json`` prints it, so both say the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_provider_gridaware.ledger.records import EnergyMethod, LedgerRecord, RunFigures, TryKey, ValueBasis
from airflow_provider_gridaware.times import format_time, parse_time

#: Bumped when the JSON form changes incompatibly; readers refuse a newer one by name.
FORMAT_VERSION = 1

_FIGURE_NUMBERS = ("energy_kwh", "intensity_g_per_kwh", "emissions_g", "price_per_mwh", "cost")


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _parse(value: Any, what: str) -> datetime | None:
    return None if value is None else parse_time(str(value), what=what)


def figures_to_dict(figures: RunFigures) -> dict[str, Any]:
    """:class:`RunFigures` as JSON-ready values (times ISO 8601 UTC)."""
    return {
        "zone": figures.zone,
        "start": format_time(figures.start),
        "end": format_time(figures.end),
        **{name: getattr(figures, name) for name in _FIGURE_NUMBERS},
        "intensity_kind": figures.intensity_kind,
        "currency": figures.currency,
    }


def figures_from_dict(data: Mapping[str, Any]) -> RunFigures:
    """Inverse of :func:`figures_to_dict`."""
    numbers = {name: None if data.get(name) is None else float(data[name]) for name in _FIGURE_NUMBERS}
    return RunFigures(
        zone=str(data["zone"]),
        start=parse_time(str(data["start"]), what="start"),
        end=parse_time(str(data["end"]), what="end"),
        intensity_kind=data.get("intensity_kind"),
        currency=data.get("currency"),
        **numbers,
    )


def record_to_dict(record: LedgerRecord) -> dict[str, Any]:
    """A record as JSON-ready values, with the derived savings for readers of the JSON."""
    key = record.key
    return {
        "format": FORMAT_VERSION,
        "dag_id": key.dag_id,
        "run_id": key.run_id,
        "task_id": key.task_id,
        "map_index": key.map_index,
        "try_number": key.try_number,
        "operator": record.operator,
        "priority_class": record.priority_class,
        "state": record.state,
        "placement": record.placement,
        "planned_start": _time(record.planned_start),
        "planned_end": _time(record.planned_end),
        "expected_signals": dict(record.expected_signals),
        "reason": record.reason,
        "waited_s": record.waited_s,
        "deadline": _time(record.deadline),
        "actual": figures_to_dict(record.actual),
        "counterfactual": None if record.counterfactual is None else figures_to_dict(record.counterfactual),
        "energy_method": record.energy_method.value,
        "energy_source": record.energy_source,
        "signal_source": record.signal_source,
        "basis": record.basis.value,
        "finalised": record.finalised,
        "notes": list(record.notes),
        "recorded_at": _time(record.recorded_at),
        "saved_g": record.saved_g,
        "saved_cost": record.saved_cost,
        "missed_deadline": record.missed_deadline,
    }


def record_from_dict(data: Mapping[str, Any]) -> LedgerRecord:
    """Inverse of :func:`record_to_dict` (the derived fields are recomputed, not read).

    :raises ValueError: a newer format than this code knows.
    """
    version = int(data.get("format", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise ValueError(f"ledger record format {version} is newer than this provider reads ({FORMAT_VERSION})")
    counterfactual = data.get("counterfactual")
    return LedgerRecord(
        key=TryKey(
            dag_id=str(data["dag_id"]),
            run_id=str(data["run_id"]),
            task_id=str(data["task_id"]),
            map_index=int(data["map_index"]),
            try_number=int(data["try_number"]),
        ),
        operator=str(data["operator"]),
        priority_class=str(data["priority_class"]),
        state=str(data["state"]),
        actual=figures_from_dict(data["actual"]),
        counterfactual=None if counterfactual is None else figures_from_dict(counterfactual),
        placement=data.get("placement"),
        planned_start=_parse(data.get("planned_start"), "planned_start"),
        planned_end=_parse(data.get("planned_end"), "planned_end"),
        expected_signals={str(k): float(v) for k, v in dict(data.get("expected_signals") or {}).items()},
        reason=str(data.get("reason") or ""),
        waited_s=float(data.get("waited_s") or 0.0),
        deadline=_parse(data.get("deadline"), "deadline"),
        energy_method=EnergyMethod(data.get("energy_method", EnergyMethod.UNKNOWN.value)),
        energy_source=str(data.get("energy_source") or ""),
        signal_source=str(data.get("signal_source") or ""),
        basis=ValueBasis(data.get("basis", ValueBasis.NONE.value)),
        finalised=bool(data.get("finalised", False)),
        notes=tuple(str(n) for n in data.get("notes") or ()),
        recorded_at=_parse(data.get("recorded_at"), "recorded_at"),
    )


def record_to_json(record: LedgerRecord) -> str:
    """The record as compact JSON text."""
    return json.dumps(record_to_dict(record), separators=(",", ":"), allow_nan=False)


def record_from_json(text: str) -> LedgerRecord:
    """Inverse of :func:`record_to_json`."""
    return record_from_dict(json.loads(text))
