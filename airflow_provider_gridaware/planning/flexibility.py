"""The fleet's flexibility, as a grid operator or aggregator counts it: planned power per zone over the
next hours, and how much of it could be shed within 5, 15 and 60 minutes, by priority class.

Rules (one place, so the CLI, the Grid page and the demand-response adapters agree):

* **planned power** per zone and step (steps on their own boundaries, the first holding now) is the mean
  power of the work planned to run in that step (running work until its expected end, waiting work over
  its planned window), weighted by the overlap;
* **shed within N minutes**: running work that is not ``critical``, is interruptible and can checkpoint and
  stop within N minutes; plus waiting work that is not ``critical``, is planned to start within N minutes
  and may still be held past them (its latest start is later). Critical work is never counted.

Pure: no Airflow, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_gridaware.times import format_time, parse_time

#: The shedding horizons a flexibility report answers for, in minutes.
SHED_WITHIN_MIN = (5, 15, 60)
PRIORITY_CLASSES = ("critical", "flexible", "batch")


@dataclass(frozen=True)
class FleetWork:
    """One piece of grid-aware work, running or waiting.

    :param name: ``dag_id.task_id`` (with the run, for humans).
    :param zone: the zone it runs (will run) in.
    :param priority_class: ``critical``, ``flexible`` or ``batch``.
    :param power_kw: its mean power draw, facility side.
    :param start: when it started (running) or is planned to start (waiting).
    :param end: when it is expected to end.
    :param running: whether it runs now.
    :param interruptible: whether it can checkpoint and stop.
    :param stop_within_s: how long stopping takes (checkpoint grace), for interruptible running work.
    :param latest_start: a waiting job's latest start (it may be held until then).
    """

    name: str
    zone: str
    priority_class: str
    power_kw: float
    start: datetime
    end: datetime
    running: bool = False
    interruptible: bool = False
    stop_within_s: float = 0.0
    latest_start: datetime | None = None

    def __post_init__(self) -> None:
        if self.priority_class not in PRIORITY_CLASSES:
            raise ValueError(
                f"{self.name}: priority_class must be one of {PRIORITY_CLASSES}, not {self.priority_class!r}"
            )
        if self.power_kw < 0:
            raise ValueError(f"{self.name}: power_kw must not be negative ({self.power_kw})")
        if self.end <= self.start:
            raise ValueError(f"{self.name}: end {format_time(self.end)} is not after start {format_time(self.start)}")

    def sheddable_within(self, now: datetime, minutes: int) -> bool:
        """Whether this work's power can be taken off the grid within ``minutes`` from ``now``."""
        if self.priority_class == "critical" or self.end <= now:
            return False
        horizon = now + timedelta(minutes=minutes)
        if self.running:
            return self.interruptible and self.stop_within_s <= minutes * 60
        return self.start < horizon and (self.latest_start is None or self.latest_start > horizon)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetWork:
        """From JSON (times ISO 8601 with an offset)."""
        try:
            latest = data.get("latest_start")
            return cls(
                name=str(data["name"]),
                zone=str(data["zone"]),
                priority_class=str(data.get("priority_class", "flexible")),
                power_kw=float(data["power_kw"]),
                start=parse_time(data["start"], what="start"),
                end=parse_time(data["end"], what="end"),
                running=bool(data.get("running", False)),
                interruptible=bool(data.get("interruptible", False)),
                stop_within_s=float(data.get("stop_within_s", 0.0)),
                latest_start=None if latest is None else parse_time(latest, what="latest_start"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"fleet work {data.get('name', '?')!r}: {exc}") from None


def flexibility(
    work: Iterable[FleetWork],
    *,
    now: datetime,
    horizon: timedelta = timedelta(hours=48),
    step: timedelta = timedelta(minutes=15),
    shed_within: Sequence[int] = SHED_WITHIN_MIN,
) -> dict[str, Any]:
    """The fleet's flexibility report (plain JSON).

    :param work: running and waiting work.
    :param now: the report's time (the first step is the one holding it).
    :param horizon: how far ahead planned power is given.
    :param step: the planned-power step.
    :param shed_within: shedding horizons, in minutes.
    """
    items = [w for w in work if w.end > now]
    steps = int(horizon / step)
    step_s = step.total_seconds()
    # Steps on the step's own boundaries (market and settlement periods are): the first one holds now.
    origin = datetime.fromtimestamp(now.timestamp() // step_s * step_s, tz=now.tzinfo)
    zones = sorted({w.zone for w in items})
    planned: dict[str, list[float]] = {zone: [0.0] * steps for zone in zones}
    for w in items:
        first = max(0, int((w.start - origin) / step))
        last = min(steps, int((w.end - origin) / step) + 1)
        for i in range(first, last):
            lo = max(w.start, origin + i * step)
            hi = min(w.end, origin + (i + 1) * step)
            if hi > lo:
                planned[w.zone][i] += w.power_kw * (hi - lo).total_seconds() / step_s
    shed: dict[str, dict[str, dict[str, float]]] = {
        zone: {cls: {str(m): 0.0 for m in shed_within} for cls in PRIORITY_CLASSES} for zone in zones
    }
    for w in items:
        for minutes in shed_within:
            if w.sheddable_within(now, minutes):
                shed[w.zone][w.priority_class][str(minutes)] += w.power_kw
    return {
        "now": format_time(now),
        "step_minutes": step_s / 60,
        "horizon_hours": horizon.total_seconds() / 3600,
        "zones": {
            zone: {
                "power_now_kw": round(sum(w.power_kw for w in items if w.zone == zone and w.start <= now), 3),
                "planned_kw": [
                    [format_time(origin + i * step), round(value, 3)] for i, value in enumerate(planned[zone])
                ],
                "shed_kw": {
                    cls: {m: round(v, 3) for m, v in by_minutes.items()} for cls, by_minutes in shed[zone].items()
                },
            }
            for zone in zones
        },
        "work": len(items),
    }
