"""GridWindowSensor: succeed when the job's grid window opens; the decision is its XCom."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_gridaware.window import (
    GridWindowArgs,
    GridWindowMixin,
    job_id_from_context,
    pop_window_kwargs,
    run_start_from_context,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gridaware.planning.plan import Plan
    from airflow_provider_gridaware.signals.models import SignalSeries


class GridWindowSensor(GridWindowMixin, BaseSensorOperator):
    """Wait for the cleanest (or cheapest) window in which the work can still finish by its deadline.

    Three modes: ``poke`` and ``reschedule`` plan on each poke on a worker; ``deferrable=True`` waits in
    the triggerer with :class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger` and holds
    no worker slot, re-planning on every forecast refresh. In every mode the sensor succeeds no later than
    the latest start that keeps the deadline, and returns the decision (zone, window, expected signals,
    counterfactual "start now") as its XCom.

    :param duration: expected run time of the work that follows.
    :param deadline: when that work must be finished: a datetime/ISO string (templated) or a timedelta from
        the DAG run's start.
    :param conn_id: carbon connection for ``zones``; ``sources`` for anything more specific.
    :param zones: candidate zones, home zone first.
    :param deferrable: wait in the triggerer (recommended).
    :param end_from_trigger: with ``deferrable``, end the task from the triggerer itself (no worker at all
        after deferral). Airflow 3.3 stores such an XCom as JSON text: downstream, ``json.loads`` it if it
        arrives as a ``str``.
    :param grid_window_kwargs: any other :class:`~airflow_provider_gridaware.window.GridWindowArgs` field
        (``price_conn_id``, ``priority_class``, ``min_gain``, ``interruptible``, ``refresh_interval`` ...).
    """

    template_fields: Sequence[str] = ("deadline", "earliest_start", "zones", "conn_id")
    ui_color = "#b7e4c7"

    def __init__(
        self,
        *,
        duration: timedelta,
        deadline: datetime | timedelta | str,
        conn_id: str | None = None,
        zones: Sequence[str] = (),
        earliest_start: datetime | timedelta | str | None = None,
        deferrable: bool = False,
        end_from_trigger: bool = False,
        poke_interval: float = 300,
        **kwargs: Any,
    ) -> None:
        grid_window_kwargs = pop_window_kwargs(kwargs)
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.deferrable = deferrable
        self.end_from_trigger = end_from_trigger
        self.set_window(
            duration=duration,
            deadline=deadline,
            conn_id=conn_id,
            zones=zones,
            earliest_start=earliest_start,
            grid_window_kwargs=grid_window_kwargs,
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self.defer_until_window(context, method_name="execute_complete", end_from_trigger=self.end_from_trigger)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Called on a worker when the trigger fires: the decision becomes the XCom."""
        if not event or "plan" not in event:
            raise RuntimeError(f"grid window trigger returned an unexpected event: {event!r}")
        self.log.info("grid window open: %s", event["plan"].get("reason"))
        return event

    def poke(self, context: Context) -> PokeReturnValue:
        """Plan now on fresh signals (blocking); done when the plan says start now."""
        plan, problems = plan_now(self.window_args(), context)
        self.log.info("%s", plan.reason)
        release = plan.start <= datetime.now(timezone.utc)  # run_now alone may mean "at a later earliest start"
        decision = {
            "status": "released" if release else "waiting",
            "released_at": datetime.now(timezone.utc).isoformat(),
            "plan": plan.to_dict(),
            "problems": problems,
            "replans": 1,
        }
        return PokeReturnValue(is_done=release, xcom_value=decision if release else None)


def plan_now(args: GridWindowArgs, context: Context) -> tuple[Plan, list[str]]:
    """One blocking planning round with the same fallbacks as the trigger (used by poke mode)."""
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.planning.plan import PlanStatus
    from airflow_provider_gridaware.signals.errors import GridSignalError
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery
    from airflow_provider_gridaware.triggers.grid_window import fixed_plan, plan_job

    job = args.job(run_start=run_start_from_context(context), job_id=job_id_from_context(context))
    now = datetime.now(timezone.utc)
    carbon: dict[str, SignalSeries] = {}
    price: dict[str, SignalSeries] = {}
    problems: list[str] = []
    for source in args.signal_sources():
        try:
            series = hook_for_connection(source.conn_id).get_signal(
                SignalQuery(source.zone, SignalKind(source.kind), True)
            )
        except GridSignalError as exc:
            problems.append(f"{source.conn_id}/{source.zone}: {exc}")
            continue
        (carbon if source.kind == "carbon_intensity" else price)[source.zone] = series
    if carbon or price:
        return plan_job(job, carbon=carbon, price=price, now=now), problems
    at_latest = now >= job.latest_start
    reason = f"no usable signal ({'; '.join(problems)}): " + (
        "released at the latest start" if at_latest else "waiting until the latest start"
    )
    start = now if at_latest else max(job.latest_start, job.earliest_start)
    return fixed_plan(job, now, PlanStatus.NO_SIGNAL, reason, start=start), problems
