"""The parameters every grid-aware task shares, and how they become a planner Job and a trigger request.

Used by the GridWindowSensor, ``@task.gridaware`` and the dispatch operators, so all of them accept
the same arguments with the same meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from airflow_provider_gridaware.dispatch import DispatchTarget
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, SignalSource

UTC = timezone.utc


@dataclass
class GridWindowArgs:
    """Where and by when a task may run, and what to optimise.

    :param duration: expected run time of the work.
    :param deadline: when the work must be finished: a datetime (or ISO 8601 string, templated), or a
        timedelta counted from the start of the DAG run.
    :param conn_id: the carbon connection used for every zone in ``zones``.
    :param zones: candidate zones, home zone first (used for the "start now here" counterfactual).
    :param sources: explicit signal sources (``SignalSource`` or dicts ``{conn_id, zone, kind}``), for zones
        read through different connections or for price signals; combined with ``conn_id``/``zones``.
    :param price_conn_id: a price connection read for every zone in ``zones``.
    :param earliest_start: not before this datetime, or this timedelta after the DAG run's start.
    :param interruptible: the work can be paused and resumed from a checkpoint.
    :param min_chunk: shortest run between pauses (interruptible work).
    :param resume_cost: extra run time per resume (interruptible work).
    :param carbon_weight: weight of carbon in the objective.
    :param price_weight: weight of price in the objective.
    :param min_gain: relative gain below which the work starts now.
    :param priority_class: ``critical`` (never waits), ``flexible`` or ``batch``.
    :param runtime_margin: relative allowance for a longer run than ``duration``.
    :param zone_penalty: per zone, a penalty in typical-signal units (egress, queue depth).
    :param refresh_interval: how often the waiting trigger re-fetches forecasts and re-plans.
    """

    duration: timedelta
    deadline: datetime | timedelta | str
    conn_id: str | None = None
    zones: Sequence[str] = ()
    sources: Sequence[SignalSource | Mapping[str, Any]] = ()
    price_conn_id: str | None = None
    earliest_start: datetime | timedelta | str | None = None
    interruptible: bool = False
    min_chunk: timedelta = timedelta(0)
    resume_cost: timedelta = timedelta(0)
    carbon_weight: float = 1.0
    price_weight: float = 0.0
    min_gain: float | None = None
    priority_class: str = "flexible"
    runtime_margin: float | None = None
    zone_penalty: Mapping[str, float] = field(default_factory=dict)
    refresh_interval: timedelta = timedelta(minutes=15)

    def signal_sources(self) -> list[SignalSource]:
        """Every (connection, zone, signal) the planner reads, validated."""
        from airflow_provider_gridaware.triggers.grid_window import SignalSource

        sources = [s if isinstance(s, SignalSource) else SignalSource.model_validate(s) for s in self.sources]
        if self.conn_id:
            sources += [SignalSource(conn_id=self.conn_id, zone=z) for z in self.zones]
        if self.price_conn_id:
            sources += [SignalSource(conn_id=self.price_conn_id, zone=z, kind="price") for z in self.zones]
        if not sources:
            raise ValueError("grid window: give conn_id and zones, or sources")
        seen = set()
        for source in sources:
            if (source.zone, source.kind) in seen:
                raise ValueError(f"grid window: two sources for {source.kind} in zone {source.zone!r}")
            seen.add((source.zone, source.kind))
        return sources

    def candidate_zones(self) -> tuple[str, ...]:
        """Candidate zones in order: ``zones`` first, then zones named only by ``sources``."""
        ordered = list(self.zones)
        for source in self.signal_sources():
            if source.zone not in ordered:
                ordered.append(source.zone)
        return tuple(ordered)

    def job(self, *, run_start: datetime, job_id: str | None = None) -> Job:
        """The planner's Job, with relative times resolved against ``run_start`` (the DAG run's start)."""
        from airflow_provider_gridaware.planning.job import Job, parse_time

        deadline = (
            run_start + self.deadline
            if isinstance(self.deadline, timedelta)
            else parse_time(self.deadline, what="deadline")
        )
        if self.earliest_start is None:
            earliest = run_start
        elif isinstance(self.earliest_start, timedelta):
            earliest = run_start + self.earliest_start
        else:
            earliest = parse_time(self.earliest_start, what="earliest_start")
        optional: dict[str, Any] = {}
        if self.min_gain is not None:
            optional["min_gain"] = self.min_gain
        if self.runtime_margin is not None:
            optional["runtime_margin"] = self.runtime_margin
        return Job(
            duration=self.duration,
            earliest_start=earliest,
            deadline=deadline,
            zones=self.candidate_zones(),
            interruptible=self.interruptible,
            min_chunk=self.min_chunk,
            resume_cost=self.resume_cost,
            carbon_weight=self.carbon_weight,
            price_weight=self.price_weight,
            priority_class=self.priority_class,  # type: ignore[arg-type]  # Job normalises str to the enum
            zone_penalty=dict(self.zone_penalty),
            job_id=job_id,
            **optional,
        )

    def request(
        self, *, run_start: datetime, job_id: str | None = None, end_from_trigger: bool = False
    ) -> GridWindowRequest:
        """The trigger's serialisable request."""
        from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest

        return GridWindowRequest(
            job=self.job(run_start=run_start, job_id=job_id).to_dict(),
            sources=self.signal_sources(),
            refresh_seconds=self.refresh_interval.total_seconds(),
            end_from_trigger=end_from_trigger,
        )


# The fields operators take as named, templated arguments; the rest pass through ``**kwargs``.
NAMED_WINDOW_FIELDS = frozenset({"duration", "deadline", "conn_id", "zones", "earliest_start"})


def pop_window_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the :class:`GridWindowArgs` fields from an operator's ``**kwargs``."""
    fields = set(GridWindowArgs.__dataclass_fields__) - NAMED_WINDOW_FIELDS
    return {k: kwargs.pop(k) for k in list(kwargs) if k in fields}


class GridWindowMixin:
    """Shared by grid-aware operators: the named window arguments and :meth:`window_args`."""

    duration: timedelta
    deadline: datetime | timedelta | str
    conn_id: str | None
    zones: list[str]
    earliest_start: datetime | timedelta | str | None
    grid_window_kwargs: dict[str, Any]

    def set_window(
        self,
        *,
        duration: timedelta,
        deadline: datetime | timedelta | str,
        conn_id: str | None,
        zones: Sequence[str],
        earliest_start: datetime | timedelta | str | None,
        grid_window_kwargs: dict[str, Any],
    ) -> None:
        self.duration = duration
        self.deadline = deadline
        self.conn_id = conn_id
        self.zones = list(zones)
        self.earliest_start = earliest_start
        self.grid_window_kwargs = grid_window_kwargs
        self.window_args().signal_sources()  # a missing or duplicate source fails at DAG parse time

    def set_dispatch_window(
        self,
        *,
        targets: Sequence[DispatchTarget],
        duration: timedelta,
        deadline: datetime | timedelta | str,
        conn_id: str | None,
        earliest_start: datetime | timedelta | str | None,
        grid_window_kwargs: dict[str, Any],
    ) -> None:
        """:meth:`set_window` for dispatch operators: the zones are the targets' (home first), their
        penalties join ``zone_penalty`` (an explicit ``zone_penalty`` wins per zone), and every zone the
        signals name must have a target (else a plan could choose a zone with nowhere to run)."""
        from airflow_provider_gridaware.dispatch import targets_by_zone, zone_penalties

        what = f"{type(self).__name__} {getattr(self, 'task_id', '')}".strip()
        by_zone = targets_by_zone(targets, what=what)
        grid_window_kwargs["zone_penalty"] = {
            **zone_penalties(targets),
            **dict(grid_window_kwargs.get("zone_penalty") or {}),
        }
        self.set_window(
            duration=duration,
            deadline=deadline,
            conn_id=conn_id,
            zones=list(by_zone),
            earliest_start=earliest_start,
            grid_window_kwargs=grid_window_kwargs,
        )
        unserved = set(self.window_args().candidate_zones()) - set(by_zone)
        if unserved:
            raise ValueError(f"{what}: signal zones without a target to run in: {sorted(unserved)}")

    def defer_until_window(
        self, context: Mapping[str, Any], *, method_name: str, end_from_trigger: bool = False
    ) -> None:
        """Defer to :class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger` for this task's job."""
        from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger

        operator = cast("BaseOperator", self)  # every user of this mixin is an operator
        args = self.window_args()
        run_start, job_id = run_start_from_context(context), job_id_from_context(context)
        job = args.job(run_start=run_start, job_id=job_id)
        operator.log.info(
            "deferring until the job's grid window (deadline %s, latest start %s)", job.deadline, job.latest_start
        )
        request = args.request(run_start=run_start, job_id=job_id, end_from_trigger=end_from_trigger)
        operator.defer(trigger=GridWindowTrigger(request), method_name=method_name)

    def window_args(self) -> GridWindowArgs:
        earliest_start = self.earliest_start
        # A templated earliest_start fed by an optional param renders empty: that means "no constraint".
        if isinstance(earliest_start, str) and earliest_start.strip() in ("", "None"):
            earliest_start = None
        return GridWindowArgs(
            duration=self.duration,
            deadline=self.deadline,
            conn_id=self.conn_id,
            zones=self.zones,
            earliest_start=earliest_start,
            **self.grid_window_kwargs,
        )


def run_start_from_context(context: Mapping[str, Any]) -> datetime:
    """The DAG run's start: stable across retries and reschedules, so relative deadlines do not drift."""
    dag_run = context.get("dag_run")
    start = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    if start is None:
        return datetime.now(UTC)
    return start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)


def job_id_from_context(context: Mapping[str, Any]) -> str:
    """``dag_id/run_id/task_id[/map_index]``: names the job in plans, logs and (later) the ledger."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return "adhoc"
    job_id = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
    map_index = getattr(ti, "map_index", -1)
    return f"{job_id}/{map_index}" if map_index is not None and map_index >= 0 else job_id
