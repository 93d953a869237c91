"""GridWindowSensor: succeed when the job's grid window opens; the decision is its XCom."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_gridaware.window import AUTO, GridWindowMixin, decide_now, pop_window_kwargs

if TYPE_CHECKING:
    from airflow.sdk import Context


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
    :param kwargs: any other :class:`~airflow_provider_gridaware.window.GridWindowArgs` field
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
        if duration == AUTO:
            # "auto" estimates a task's own run time from its recorded runs; a sensor's work is the next task's.
            raise ValueError(
                f"GridWindowSensor {kwargs.get('task_id', '')}: duration='auto' estimates a task's own run time, and "
                "a sensor's work is the task after it: give the sensor an explicit duration (or use "
                "@task.gridaware / a dispatch operator with duration='auto')"
            )
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
        released = self.defer_until_window(
            context, method_name="execute_complete", end_from_trigger=self.end_from_trigger
        )
        return self.execute_complete(context, released)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """The window is open (on a worker after the trigger fired, or at once): the decision is the XCom."""
        if not event or "plan" not in event:
            raise RuntimeError(f"grid window trigger returned an unexpected event: {event!r}")
        self.log.info("grid window open: %s", event.get("reason") or event["plan"].get("reason"))
        self._record_ledger(context, event)
        return event

    def _record_ledger(self, context: Context, released: dict[str, Any]) -> None:
        """The guarded work's planned run, on the planner's values (the daily report finalises it)."""
        from airflow_provider_gridaware.ledger_writer import record_released_try, spec_of

        spec = spec_of(self, context, "sensor")
        if spec is not None:
            record_released_try(context, spec, released, logger=self.log)

    def poke(self, context: Context) -> PokeReturnValue:
        """Decide now on fresh signals (blocking); done when the decision is to release."""
        first = decide_now(self.window_args(), context, log=self.log)
        self.log.info("%s", first.decision.reason)
        if not first.decision.release:
            return PokeReturnValue(is_done=False)
        payload = first.payload()
        self._record_ledger(context, payload)
        return PokeReturnValue(is_done=True, xcom_value=payload)
