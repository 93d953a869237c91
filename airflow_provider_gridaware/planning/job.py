"""What the planner is asked to place: a job with its duration, time bounds, zones and preferences.

Plain frozen dataclasses (no numpy, no Airflow) so triggers and operators can import them cheaply and
serialise them into trigger state with :meth:`Job.to_dict` / :meth:`Job.from_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from airflow_provider_gridaware.times import format_time, parse_time

# Runtime estimates are rarely better than +/-25 %: the default margin keeps the promise for such an
# error (a job released at its latest start and running 25 % long still ends by the deadline).
DEFAULT_RUNTIME_MARGIN = 0.25
# Below half a per cent a shift is noise: the job starts now. Larger values cost savings in backtests
# (forecasts understate far-off gains), so this only filters trivial moves.
DEFAULT_MIN_GAIN = 0.005


class PriorityClass(str, Enum):
    """How much a job may be moved in time: ``critical`` never waits, ``batch`` may also be paused by grid events."""

    CRITICAL = "critical"
    FLEXIBLE = "flexible"
    BATCH = "batch"


@dataclass(frozen=True)
class Job:
    """A unit of flexible work to place in time (and possibly in another zone).

    :param duration: expected run time.
    :param earliest_start: the job may not start before this (UTC).
    :param deadline: the job must have *completed* by this (UTC).
    :param zones: candidate grid zones; the first is the home zone used for the "start now here" counterfactual.
    :param interruptible: whether the job can be paused and resumed (checkpointing).
    :param min_chunk: shortest run between two pauses of an interruptible job.
    :param resume_cost: extra run time each resume costs (restore, warm-up), charged at the signal of the resume.
    :param carbon_weight: weight of the (normalised) carbon signal in the objective.
    :param price_weight: weight of the (normalised) price signal in the objective.
    :param min_gain: relative improvement over starting now below which the job starts now (0.01 = 1 %).
    :param priority_class: ``critical`` (never waits), ``flexible`` or ``batch``.
    :param runtime_margin: relative allowance for a longer run than ``duration``: the plan ends by
        ``deadline - duration * runtime_margin``, and the latest start is ``deadline - duration * (1 + runtime_margin)``.
    :param zone_penalty: per zone, an amount added to the normalised objective (1.0 = the typical signal level),
        e.g. data transfer or egress: a zone must be that much better to be chosen.
    :param job_id: an identifier carried into the plan and logs.
    """

    duration: timedelta
    earliest_start: datetime
    deadline: datetime
    zones: tuple[str, ...]
    interruptible: bool = False
    min_chunk: timedelta = timedelta(0)
    resume_cost: timedelta = timedelta(0)
    carbon_weight: float = 1.0
    price_weight: float = 0.0
    min_gain: float = DEFAULT_MIN_GAIN
    priority_class: PriorityClass = PriorityClass.FLEXIBLE
    runtime_margin: float = DEFAULT_RUNTIME_MARGIN
    zone_penalty: Mapping[str, float] = field(default_factory=dict)
    job_id: str | None = None

    def __post_init__(self) -> None:
        # Normalise once here so every consumer sees UTC, tuples and enums (frozen: set through object).
        object.__setattr__(self, "earliest_start", parse_time(self.earliest_start, what="earliest_start"))
        object.__setattr__(self, "deadline", parse_time(self.deadline, what="deadline"))
        object.__setattr__(self, "zones", tuple(self.zones))
        object.__setattr__(self, "priority_class", PriorityClass(self.priority_class))
        object.__setattr__(self, "zone_penalty", dict(self.zone_penalty))
        where = f"job {self.job_id}" if self.job_id else "job"
        if self.duration <= timedelta(0):
            raise ValueError(f"{where}: duration must be positive, got {self.duration}")
        if not self.zones or any(not z for z in self.zones):
            raise ValueError(f"{where}: needs at least one non-empty zone")
        if len(set(self.zones)) != len(self.zones):
            raise ValueError(f"{where}: zones {self.zones} repeat a zone")
        if self.deadline <= self.earliest_start:
            raise ValueError(f"{where}: deadline {format_time(self.deadline)} is not after the earliest start")
        for name in ("carbon_weight", "price_weight", "min_gain", "runtime_margin"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{where}: {name} must be a finite number >= 0, got {value}")
        if self.carbon_weight == 0 and self.price_weight == 0:
            raise ValueError(f"{where}: carbon_weight and price_weight are both 0: nothing to optimise")
        if self.min_chunk < timedelta(0) or self.resume_cost < timedelta(0):
            raise ValueError(f"{where}: min_chunk and resume_cost must be >= 0")
        unknown = set(self.zone_penalty) - set(self.zones)
        if unknown:
            raise ValueError(f"{where}: zone_penalty names zones that are not candidates: {sorted(unknown)}")
        if any(not math.isfinite(p) for p in self.zone_penalty.values()):
            raise ValueError(f"{where}: zone penalties must be finite")

    @property
    def home_zone(self) -> str:
        """The zone the job would run in without region shifting."""
        return self.zones[0]

    @property
    def latest_start(self) -> datetime:
        """The last start that keeps the deadline if the run takes ``duration * (1 + runtime_margin)``.

        It can be before ``earliest_start`` when the job is tight; planners then start it at once.
        """
        return self.deadline - self.duration * (1 + self.runtime_margin)

    @property
    def latest_end(self) -> datetime:
        """The end a plan must respect: the deadline minus the runtime margin."""
        return self.deadline - self.duration * self.runtime_margin

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601 UTC, durations in seconds)."""
        return {
            "job_id": self.job_id,
            "duration_seconds": self.duration.total_seconds(),
            "earliest_start": format_time(self.earliest_start),
            "deadline": format_time(self.deadline),
            "zones": list(self.zones),
            "interruptible": self.interruptible,
            "min_chunk_seconds": self.min_chunk.total_seconds(),
            "resume_cost_seconds": self.resume_cost.total_seconds(),
            "carbon_weight": self.carbon_weight,
            "price_weight": self.price_weight,
            "min_gain": self.min_gain,
            "priority_class": self.priority_class.value,
            "runtime_margin": self.runtime_margin,
            "zone_penalty": dict(self.zone_penalty),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Inverse of :meth:`to_dict`; missing optional keys take their defaults.

        :param data: a mapping as produced by :meth:`to_dict`.
        """
        return cls(
            job_id=data.get("job_id"),
            duration=timedelta(seconds=float(data["duration_seconds"])),
            earliest_start=parse_time(data["earliest_start"], what="earliest_start"),
            deadline=parse_time(data["deadline"], what="deadline"),
            zones=tuple(data["zones"]),
            interruptible=bool(data.get("interruptible", False)),
            min_chunk=timedelta(seconds=float(data.get("min_chunk_seconds", 0))),
            resume_cost=timedelta(seconds=float(data.get("resume_cost_seconds", 0))),
            carbon_weight=float(data.get("carbon_weight", 1.0)),
            price_weight=float(data.get("price_weight", 0.0)),
            min_gain=float(data.get("min_gain", DEFAULT_MIN_GAIN)),
            priority_class=PriorityClass(data.get("priority_class", PriorityClass.FLEXIBLE.value)),
            runtime_margin=float(data.get("runtime_margin", DEFAULT_RUNTIME_MARGIN)),
            zone_penalty={str(k): float(v) for k, v in dict(data.get("zone_penalty", {})).items()},
        )
