"""The parameters every grid-aware task shares, and how they become a planner Job and a trigger request.

Used by the GridWindowSensor, ``@task.gridaware`` and the dispatch operators, so all of them accept
the same arguments with the same meaning.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from airflow_provider_gridaware.links.grid_decision import GridDecisionLink
from airflow_provider_gridaware.planning.runtime import DEFAULT_HISTORY_RUNS, DEFAULT_MIN_RUNS
from airflow_provider_gridaware.times import UTC, format_time

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from airflow_provider_gridaware.dispatch import DispatchTarget
    from airflow_provider_gridaware.ledger.energy import EnergyProfile
    from airflow_provider_gridaware.planning.decision import Counterfactual, Decision
    from airflow_provider_gridaware.planning.event_constraints import GridEventSnapshot
    from airflow_provider_gridaware.planning.job import Job
    from airflow_provider_gridaware.planning.planner import PlanningGrid
    from airflow_provider_gridaware.planning.runtime import RuntimeEstimate
    from airflow_provider_gridaware.signals.models import SignalSeries
    from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest, SignalSource

#: The worker's first decision reads signals for at most this long (then the trigger takes over).
FIRST_DECISION_BUDGET = timedelta(seconds=30)
#: ``duration=AUTO``: estimate the run time (and margin) from the task's past successful runs.
AUTO = "auto"
Duration = timedelta | Literal["auto"]


@dataclass
class GridWindowArgs:
    """Where and by when a task may run, and what to optimise.

    :param duration: expected run time of the work, or ``"auto"``: the median of the task's recent successful
        runs, with ``runtime_margin`` from their spread (see :mod:`~airflow_provider_gridaware.planning.runtime`),
        estimated on the worker before the first decision.
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
    :param runtime_margin: relative allowance for a longer run than ``duration`` (with ``duration="auto"``,
        given here it wins over the estimated margin).
    :param zone_penalty: per zone, a penalty in typical-signal units (egress, queue depth).
    :param refresh_interval: how often the waiting trigger re-fetches forecasts and re-plans.
    :param duration_runs: with ``duration="auto"``, how many of the most recent successful runs to use.
    :param duration_min_runs: with ``duration="auto"``, fewer recorded runs than this fail the task, naming it
        and the count found.
    :param gpu_model: the carbon ledger's energy profile: the GPU model (see
        :data:`~airflow_provider_gridaware.ledger.energy.GPU_BOARD_POWER_W`; default A100) ...
    :param gpu_count: ... how many GPUs the work uses (0 and no ``power_w``: energy not estimated) ...
    :param gpu_utilisation: ... their mean fraction of board power ...
    :param power_w: ... or the work's IT power in watts instead of the GPU estimate ...
    :param pue: ... and the facility's PUE (default 1.2, noted in the record).
    :param power_conn_id: a Prometheus connection whose query measures the work's power (DCGM): the ledger's
        energy is then measured, the profile only a fallback (see docs/ledger.md).
    """

    duration: Duration
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
    duration_runs: int = DEFAULT_HISTORY_RUNS
    duration_min_runs: int = DEFAULT_MIN_RUNS
    gpu_model: str | None = None
    gpu_count: int = 0
    gpu_utilisation: float = 1.0
    power_w: float | None = None
    pue: float | None = None
    power_conn_id: str | None = None

    def __post_init__(self) -> None:
        self.energy_profile()  # a bad profile fails at DAG parse time, not when the ledger is written
        # Checked at DAG parse time: a typo in "auto" must not wait until the task runs.
        if isinstance(self.duration, str) and self.duration != AUTO:
            raise ValueError(f'grid window: duration must be a timedelta or "auto", not {self.duration!r}')
        if not isinstance(self.duration, (timedelta, str)):
            raise TypeError(f'grid window: duration must be a timedelta or "auto", not {type(self.duration).__name__}')
        if self.duration_min_runs < 1 or self.duration_runs < self.duration_min_runs:
            raise ValueError(
                f"grid window: need 1 <= duration_min_runs <= duration_runs, got {self.duration_min_runs} and "
                f"{self.duration_runs}"
            )

    def energy_profile(self) -> EnergyProfile:
        """What the task declares about its power, for the carbon ledger."""
        from airflow_provider_gridaware.ledger.energy import EnergyProfile

        return EnergyProfile(
            gpu_model=self.gpu_model,
            gpu_count=self.gpu_count,
            utilisation=self.gpu_utilisation,
            power_w=self.power_w,
            pue=self.pue,
        )

    def deadline_at(self, run_start: datetime) -> datetime:
        """The deadline as a time (a timedelta counts from ``run_start``, the DAG run's start)."""
        from airflow_provider_gridaware.times import parse_time

        if isinstance(self.deadline, timedelta):
            return run_start + self.deadline
        return parse_time(self.deadline, what="deadline")

    @property
    def auto_duration(self) -> bool:
        """Whether the run time is estimated from the task's past runs."""
        return self.duration == AUTO

    def resolved(self, context: Mapping[str, Any], *, log: Any = None) -> tuple[GridWindowArgs, RuntimeEstimate | None]:
        """These arguments with ``duration="auto"`` replaced by the estimate from the task's past runs.

        Called once per try, on the worker, before the first decision: the trigger and every later
        decision get the concrete duration and margin in the Job.

        :param context: the task context (names the task whose runs are looked up).
        :param log: where to log the estimate.
        :raises NotEnoughRunHistoryError: too few recorded runs (the message names the task and the count).
        """
        if not self.auto_duration:
            return self, None
        from airflow_provider_gridaware.runtime_history import estimate_task_duration

        estimate = estimate_task_duration(context, runs=self.duration_runs, min_runs=self.duration_min_runs)
        margin = estimate.runtime_margin if self.runtime_margin is None else self.runtime_margin
        if log is not None:
            kept = "" if self.runtime_margin is None else f"; runtime_margin {margin:g} as given"
            log.info('duration="auto": %s%s', estimate.describe(), kept)
        return dataclasses.replace(self, duration=estimate.duration, runtime_margin=margin), estimate

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
        from airflow_provider_gridaware.planning.job import Job
        from airflow_provider_gridaware.times import parse_time

        if not isinstance(self.duration, timedelta):
            raise ValueError('grid window: duration="auto" is estimated on the worker first (GridWindowArgs.resolved)')
        deadline = self.deadline_at(run_start)
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
        self,
        *,
        run_start: datetime,
        job_id: str | None = None,
        end_from_trigger: bool = False,
        first: FirstDecision | None = None,
        not_before: float | None = None,
    ) -> GridWindowRequest:
        """The trigger's serialisable request.

        :param run_start: the DAG run's start (relative times count from it).
        :param job_id: names the job.
        :param end_from_trigger: end the task from the triggerer.
        :param first: the worker's first decision: the wait began then, with its counterfactual and window.
        :param not_before: the resume guard (wall-clock epoch seconds), when the task resumes on a worker.
        """
        from airflow_provider_gridaware.triggers.grid_window import GridWindowRequest

        job = first.job if first is not None else self.job(run_start=run_start, job_id=job_id)
        extra: dict[str, Any] = {}
        if end_from_trigger:
            # The triggerer ends the task itself: it writes the try's ledger record, from this spec.
            from airflow_provider_gridaware.ledger_writer import LedgerSpec

            extra["ledger"] = LedgerSpec.of(self, operator="sensor", run_start=run_start).to_dict()
        if first is not None:
            extra["waiting_since"] = format_time(first.decision.decided_at)
            if first.counterfactual is not None:
                extra["counterfactual"] = first.counterfactual.to_dict()
            if not first.decision.fallback:
                extra["previous_zone"] = first.decision.plan.zone
                extra["previous_start"] = format_time(first.decision.plan.start)
                if first.planned_around:
                    extra["planned_around"] = {z: list(spans) for z, spans in first.planned_around.items()}
            extra["first_decision"] = first.decision.summary()
        return GridWindowRequest(
            job=job.to_dict(),
            sources=self.signal_sources(),
            refresh_seconds=self.refresh_interval.total_seconds(),
            end_from_trigger=end_from_trigger,
            not_before=not_before,
            **extra,
        )


# The fields operators take as named, templated arguments; the rest pass through ``**kwargs``.
NAMED_WINDOW_FIELDS = frozenset({"duration", "deadline", "conn_id", "zones", "earliest_start"})


def pop_window_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the :class:`GridWindowArgs` fields from an operator's ``**kwargs``."""
    fields = set(GridWindowArgs.__dataclass_fields__) - NAMED_WINDOW_FIELDS
    return {k: kwargs.pop(k) for k in list(kwargs) if k in fields}


class GridWindowMixin:
    """Shared by grid-aware operators: the named window arguments, :meth:`window_args`, and the "Grid decision"
    extra link to the task's decision on the Grid page."""

    operator_extra_links: Any = (GridDecisionLink(),)

    duration: Duration
    deadline: datetime | timedelta | str
    conn_id: str | None
    zones: list[str]
    earliest_start: datetime | timedelta | str | None
    grid_window_kwargs: dict[str, Any]

    def set_window(
        self,
        *,
        duration: Duration,
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
        duration: Duration,
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

    def decide_first(self, context: Mapping[str, Any]) -> FirstDecision:
        """The worker's first decision on fresh signals (see :func:`decide_now`)."""
        return decide_now(self.window_args(), context, log=cast("BaseOperator", self).log)

    def defer_until_window(
        self,
        context: Mapping[str, Any],
        *,
        method_name: str,
        end_from_trigger: bool = False,
        first: FirstDecision | None = None,
    ) -> dict[str, Any] | None:
        """Release now, or defer to :class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger`.

        The first decision is made here, on the worker: when it says "start now" the task does not defer at
        all (the release payload is returned for the caller to go on with), which also keeps it out of
        Airflow's resume race (see :mod:`~airflow_provider_gridaware.triggers.resume_guard`). Otherwise the
        task defers; unless it ends from the trigger, the trigger will not fire within the resume guard.

        :param context: the task context.
        :param method_name: the method the task resumes in.
        :param end_from_trigger: the trigger ends the task itself (no resume, no guard needed).
        :param first: a first decision already made (else it is made now).
        :return: the release payload when released at once; otherwise this defers (raises).
        """
        from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger
        from airflow_provider_gridaware.triggers.resume_guard import RESUME_GUARD_SECONDS, resume_not_before

        operator = cast("BaseOperator", self)
        first = first or self.decide_first(context)
        decision = first.decision
        if decision.release:
            operator.log.info("released at once (not deferring): %s", decision.reason)
            return first.payload()
        if not end_from_trigger and decision.wake_at is not None:
            # A window opening within the resume guard is waited for here: the deferral could not be
            # released sooner than the guard anyway, and must not be released after the latest start.
            from airflow_provider_gridaware.times import current_clock

            clock = current_clock()
            ahead = (decision.plan.start - decision.decided_at).total_seconds()
            if 0 < clock.wall_seconds(ahead) <= RESUME_GUARD_SECONDS and decision.plan.start <= first.job.latest_start:
                operator.log.info("the window opens in %.0f s: waiting for it on the worker", clock.wall_seconds(ahead))
                _sleep_until(decision.plan.start)
                from airflow_provider_gridaware.planning.decision import decide

                # Seconds later: the same signals, decided again (no second round of requests).
                again = decide(
                    first.job,
                    first.grid,
                    clock.now(),
                    decision.window,
                    refresh=self.window_args().refresh_interval,
                    problems=first.problems,
                )
                if again.release:
                    return dataclasses.replace(first, decision=again).payload(waiting_since=decision.decided_at)
        operator.log.info(
            "deferring until the job's grid window: %s (deadline %s)", decision.reason, format_time(first.job.deadline)
        )
        request = self.window_args().request(
            run_start=run_start_from_context(context),
            end_from_trigger=end_from_trigger,
            first=first,
            not_before=None if end_from_trigger else resume_not_before(),
        )
        operator.defer(trigger=GridWindowTrigger(request), method_name=method_name)
        return None  # not reached: defer() raises

    def log_window_open(self, event: Mapping[str, Any], zone: str) -> None:
        """Log the released decision on the worker, with how long and over how many decisions it waited.

        The trigger logs each decision to this try's trigger log, but Airflow 3.3's triggerer opens that file
        anew (truncating it) for the next trigger of the same try on the same triggerer: a dispatch operator's
        completion watch replaces the window trigger's lines. So what the wait came to is said here too.
        """
        log = cast("BaseOperator", self).log
        plan = event.get("plan") or {}
        decisions = event.get("replans")
        how = f" ({decisions} decision{'s' if decisions != 1 else ''} in the triggerer)" if decisions else ""
        log.info("grid window open in zone %s%s: %s", zone, how, event.get("reason") or plan.get("reason"))
        if event.get("reason") and plan.get("reason"):
            log.info("released plan: %s", plan["reason"])
        for problem in event.get("problems") or ():
            log.warning("while waiting: %s", problem)

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


@dataclass(frozen=True)
class FirstDecision:
    """A decision made on the worker (before any deferral), with what the wait will need of it.

    :param job: the job, built once from the task's arguments.
    :param decision: the decision.
    :param problems: what went wrong reading signals.
    :param counterfactual: start at once in the home zone now, if the signals allowed a plan.
    :param grid: the signals it was made on (``None``: none usable).
    :param planned_around: per zone of the job, the called events' spans (epoch seconds) it was made around.
    """

    job: Job
    decision: Decision
    problems: list[str]
    counterfactual: Counterfactual | None
    grid: PlanningGrid | None = None
    planned_around: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def payload(self, *, waiting_since: datetime | None = None) -> dict[str, Any]:
        """The release payload (what the trigger's event would carry)."""
        from airflow_provider_gridaware.planning.decision import release_payload

        return release_payload(
            self.decision,
            counterfactual=self.counterfactual,
            waiting_since=waiting_since or self.decision.decided_at,
            problems=self.problems,
            replans=1,
        )


def decide_now(
    args: GridWindowArgs, context: Mapping[str, Any], *, log: Any = None, job: Job | None = None
) -> FirstDecision:
    """One decision on the worker, on signals fetched now (blocking, bounded by :data:`FIRST_DECISION_BUDGET`
    and the latest start): the sensor's poke, and every grid-aware task before it defers.

    :param args: the task's window arguments.
    :param context: the task context (DAG run start, task instance).
    :param log: where to log what went wrong reading signals.
    :param job: the job, if already built.
    :raises SourceConfigError: a source is configured wrongly (a missing connection, a wrong type or zone):
        the task fails at once with the message, rather than waiting out an "outage" that will not end.
    """
    from airflow_provider_gridaware.planning.decision import Counterfactual, decide, needs_signals
    from airflow_provider_gridaware.planning.event_constraints import spans_in
    from airflow_provider_gridaware.planning.job import PriorityClass
    from airflow_provider_gridaware.planning.signal_grid import grid_for
    from airflow_provider_gridaware.signals.errors import SourceConfigError
    from airflow_provider_gridaware.times import current_clock

    estimate = None
    if job is None:
        args, estimate = args.resolved(context, log=log)
        job = args.job(run_start=run_start_from_context(context), job_id=job_id_from_context(context))
    now = current_clock().now()
    carbon: dict[str, SignalSeries] = {}
    price: dict[str, SignalSeries] = {}
    history: dict[str, SignalSeries] = {}
    problems: list[str] = []
    grid = None
    planned_around: dict[str, tuple[tuple[int, int], ...]] = {}
    if needs_signals(job, now):
        budget = min(FIRST_DECISION_BUDGET.total_seconds(), max((job.latest_start - now).total_seconds(), 0.0))
        fetched = _fetch_all(args.signal_sources(), budget)
        for (source, forecast), outcome in fetched.items():
            if isinstance(outcome, SourceConfigError):
                raise outcome  # a missing or wrong connection is a mistake to fix now, not an outage to wait out
            if isinstance(outcome, Exception):
                if forecast:
                    problems.append(f"{source.conn_id}/{source.zone}: {outcome}")
                elif log is not None:
                    log.info("no recent actuals for %s/%s (%s)", source.conn_id, source.zone, outcome)
                continue
            if not forecast:
                history[source.zone] = outcome
            else:
                (carbon if source.kind == "carbon_intensity" else price)[source.zone] = outcome
        if carbon or price:
            from airflow_provider_gridaware.hooks.forecast_calibration import calibration_for

            calibrations = {}
            for kind, by_zone in (("carbon", carbon), ("price", price)):
                for zone, series in by_zone.items():
                    calibration = calibration_for(series, now=now)
                    if calibration is not None:
                        calibrations[(zone, kind)] = calibration
            events = _grid_events(log)
            if events is not None and price and job.price_weight > 0:
                price = events.apply(price)  # a called peak's price, before it starts too
            grid = grid_for(job, carbon=carbon, price=price, now=now, history=history, calibrations=calibrations)
            if events is not None:
                grid = events.block(grid, job)  # flexible work does not start inside a called event
                if job.priority_class is not PriorityClass.CRITICAL:
                    planned_around = spans_in(events, job.zones)
    decision = decide(job, grid, now, None, refresh=args.refresh_interval, problems=problems)
    if estimate is not None:
        # The first decision's reason (log, and the payload when released at once) says where the duration came from.
        decision = dataclasses.replace(decision, reason=f"{decision.reason} ({estimate.describe()})")
    counterfactual = None
    if not decision.fallback and decision.plan.now_signals:
        counterfactual = Counterfactual.of(decision.plan, job.home_zone)
    return FirstDecision(job, decision, problems, counterfactual, grid, planned_around)


def _fetch_all(sources: Sequence[SignalSource], budget_s: float) -> dict[tuple[SignalSource, bool], Any]:
    """Forecasts (and recent carbon actuals) of every source, fetched in parallel, waiting at most ``budget_s``.

    Daemon threads: a source that hangs past the budget is reported as such and abandoned, never waited for
    (the hooks' own timeouts end it). Connection look-ups through the task SDK are thread-safe.
    """
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.errors import SourceUnavailableError
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery

    wanted = [(s, True) for s in sources] + [(s, False) for s in sources if s.kind == "carbon_intensity"]

    def fetch(item: tuple[SignalSource, bool]) -> Any:
        source, forecast = item
        return hook_for_connection(source.conn_id).get_signal(
            SignalQuery(source.zone, SignalKind(source.kind), forecast)
        )

    # Errors are reported per source; the decision falls back without it.
    done: dict[tuple[SignalSource, bool], Any] = dict(call_in_parallel(fetch, wanted, budget_s))
    for item in wanted:
        if item not in done:
            done[item] = SourceUnavailableError(
                f"no answer within {budget_s:.0f} s on the worker; the trigger will keep asking", source=item[0].conn_id
            )
    return done


_Item = TypeVar("_Item", bound=Hashable)


def call_in_parallel(call: Callable[[_Item], Any], items: Sequence[_Item], budget_s: float) -> dict[_Item, Any]:
    """``call(item)`` for every item in daemon threads, waiting at most ``budget_s``: the result or the exception
    per item that finished in time (an item missing from the answer hung; the hooks' own timeouts end it).

    :param call: what to run per item.
    :param items: the items.
    :param budget_s: the longest wait for all of them.
    """
    results: dict[_Item, Any] = {}
    lock = threading.Lock()

    def run(item: _Item) -> None:
        try:
            outcome: Any = call(item)
        except Exception as exc:
            outcome = exc
        with lock:
            results[item] = outcome

    threads = [threading.Thread(target=run, args=(item,), daemon=True) for item in items]
    for thread in threads:
        thread.start()
    end = time.monotonic() + budget_s
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    with lock:
        return dict(results)


def _sleep_until(when: datetime) -> None:
    from airflow_provider_gridaware.times import current_clock

    clock = current_clock()
    remaining = (when - clock.now()).total_seconds()
    if remaining > 0:
        time.sleep(clock.wall_seconds(remaining))


def run_start_from_context(context: Mapping[str, Any]) -> datetime:
    """The DAG run's start: stable across retries and reschedules, so relative deadlines do not drift.

    On the clock waiting code reads (:func:`~airflow_provider_gridaware.times.current_clock`): Airflow
    records the start on the wall clock, which a ``GRIDAWARE_CLOCK`` runs apart from.
    """
    from airflow_provider_gridaware.times import clock_time_of

    dag_run = context.get("dag_run")
    start = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
    if start is None:
        return clock_time_of(datetime.now(UTC))
    return clock_time_of(start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC))


def job_id_from_context(context: Mapping[str, Any]) -> str:
    """``dag_id/run_id/task_id[/map_index]``: names the job in plans, logs and (later) the ledger."""
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return "adhoc"
    job_id = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
    map_index = getattr(ti, "map_index", -1)
    return f"{job_id}/{map_index}" if map_index is not None and map_index >= 0 else job_id


def _grid_events(log: Any) -> GridEventSnapshot | None:
    """The store's current grid events (prices and called events), or ``None`` if the store cannot be read."""
    from airflow_provider_gridaware.hooks.grid_event_base import current_grid_events

    try:
        return current_grid_events()
    except Exception as exc:
        if log is not None:
            log.warning("Could not read grid events from the store (%s); planning without them", exc)
        return None
