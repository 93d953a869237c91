"""The planner's answer: where and when to run, what it expects, and why.

A :class:`Plan` is what a trigger puts in its event and what the ledger records next to the actual run,
so it serialises to plain JSON (:meth:`Plan.to_dict`, :meth:`Plan.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from airflow_provider_gridaware.times import format_time, parse_time


class PlanStatus(str, Enum):
    """Why the plan looks the way it does (the machine-readable half of :attr:`Plan.reason`)."""

    SHIFTED = "shifted"  # a better window later or elsewhere is worth the wait
    BEST_NOW = "best_now"  # starting now is the best window
    NOT_WORTH_WAITING = "not_worth_waiting"  # a better window exists but gains less than min_gain
    NO_SIGNAL = "no_signal"  # no usable signal for any window: run at once
    DEADLINE_AT_RISK = "deadline_at_risk"  # the latest start has passed (or the margin cannot be kept)
    CRITICAL = "critical"  # priority class critical: never waits


@dataclass(frozen=True)
class Chunk:
    """One contiguous run ``[start, end)`` in UTC.

    :param start: when the run starts.
    :param end: when it is planned to end.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", parse_time(self.start, what="chunk start"))
        object.__setattr__(self, "end", parse_time(self.end, what="chunk end"))
        if self.end <= self.start:
            raise ValueError(f"chunk end {format_time(self.end)} is not after its start {format_time(self.start)}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    """Where and when a job runs.

    :param zone: the chosen grid zone.
    :param chunks: the runs, in time order (one for a non-interruptible job).
    :param run_now: whether the first chunk starts at once (at ``planned_at``).
    :param latest_start: the last moment the job may start and still keep its deadline with the runtime margin
        (never before ``planned_at``); a plan never starts after it, and a waiting trigger releases by it.
    :param planned_at: the planning time ("now").
    :param status: the machine-readable reason.
    :param reason: one human sentence: what was chosen and why.
    :param expected_objective: the plan's time-weighted mean objective (normalised units, 1.0 = typical level,
        zone penalty not included), or ``None`` with no usable signal.
    :param now_objective: the counterfactual "start now in the home zone" on the same scale, or ``None``.
    :param expected_signals: the plan's mean of each physical signal, keyed by unit (``gCO2eq/kWh``, ``EUR/MWh``).
    :param now_signals: the same for the counterfactual.
    :param job_id: the job's identifier.
    """

    zone: str
    chunks: tuple[Chunk, ...]
    run_now: bool
    latest_start: datetime
    planned_at: datetime
    status: PlanStatus
    reason: str
    expected_objective: float | None = None
    now_objective: float | None = None
    expected_signals: Mapping[str, float] = field(default_factory=dict)
    now_signals: Mapping[str, float] = field(default_factory=dict)
    job_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "chunks", tuple(self.chunks))
        object.__setattr__(self, "latest_start", parse_time(self.latest_start, what="latest_start"))
        object.__setattr__(self, "planned_at", parse_time(self.planned_at, what="planned_at"))
        object.__setattr__(self, "status", PlanStatus(self.status))
        if not self.chunks:
            raise ValueError("a plan needs at least one chunk")
        for before, after in zip(self.chunks, self.chunks[1:], strict=False):
            if after.start < before.end:
                raise ValueError("plan chunks overlap or are out of order")

    @property
    def start(self) -> datetime:
        """When the job is released (the first chunk's start)."""
        return self.chunks[0].start

    @property
    def end(self) -> datetime:
        """When the last chunk is planned to end."""
        return self.chunks[-1].end

    @property
    def gain(self) -> float | None:
        """Relative improvement over starting now in the home zone (0.1 = 10 % lower objective)."""
        if self.expected_objective is None or self.now_objective is None or self.now_objective == 0:
            return None
        return (self.now_objective - self.expected_objective) / abs(self.now_objective)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601 UTC)."""
        return {
            "job_id": self.job_id,
            "zone": self.zone,
            "chunks": [{"start": format_time(c.start), "end": format_time(c.end)} for c in self.chunks],
            "run_now": self.run_now,
            "latest_start": format_time(self.latest_start),
            "planned_at": format_time(self.planned_at),
            "status": self.status.value,
            "reason": self.reason,
            "expected_objective": self.expected_objective,
            "now_objective": self.now_objective,
            "expected_signals": dict(self.expected_signals),
            "now_signals": dict(self.now_signals),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`.

        :param data: a mapping as produced by :meth:`to_dict`.
        """

        def optional_float(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            job_id=data.get("job_id"),
            zone=str(data["zone"]),
            chunks=tuple(
                Chunk(parse_time(c["start"], what="chunk start"), parse_time(c["end"], what="chunk end"))
                for c in data["chunks"]
            ),
            run_now=bool(data["run_now"]),
            latest_start=parse_time(data["latest_start"], what="latest_start"),
            planned_at=parse_time(data["planned_at"], what="planned_at"),
            status=PlanStatus(data["status"]),
            reason=str(data.get("reason", "")),
            expected_objective=optional_float("expected_objective"),
            now_objective=optional_float("now_objective"),
            expected_signals={str(k): float(v) for k, v in dict(data.get("expected_signals", {})).items()},
            now_signals={str(k): float(v) for k, v in dict(data.get("now_signals", {})).items()},
        )
