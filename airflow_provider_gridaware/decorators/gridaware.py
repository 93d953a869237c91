"""``@task.gridaware``: a Python task that first waits, in the triggerer, for its grid window.

    @task.gridaware(duration=timedelta(hours=2), deadline=timedelta(hours=12),
                    conn_id="gridaware_ukci_default", zones=["GB"])
    def train(grid_decision=None):
        print(grid_decision["plan"]["zone"], grid_decision["plan"]["chunks"])

The task decides on the worker first: if now is the best window it runs at once; otherwise it defers
(no worker slot is held while waiting), the trigger re-plans on every forecast refresh, and when the
window opens the callable runs on a worker with the decision passed as ``grid_decision`` (zone, window,
expected gCO2/kWh and price, the counterfactual "start when the wait began", the expected saving).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

from airflow_provider_gridaware.window import (
    Duration,
    GridWindowMixin,
    pop_window_kwargs,
)

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.bases.decorator import TaskDecorator

    from airflow_provider_gridaware.cooperative_pause import PauseForGridEvent

DECISION_KEY = "grid_decision"
#: The callable's checkpoint helper (:class:`~airflow_provider_gridaware.cooperative_pause.GridCheckpoint`).
CHECKPOINT_KEY = "grid_checkpoint"


class _GridAwareDecoratedOperator(GridWindowMixin, DecoratedOperator, PythonOperator):
    """Runs the decorated callable once its grid window opens.

    :param duration: expected run time of the callable, or ``"auto"`` (estimated from its recorded past runs:
        each successful try records how long the callable ran).
    :param deadline: when it must be finished (datetime/ISO string, templated, or timedelta from the run start).
    :param conn_id: carbon connection for ``zones``.
    :param zones: candidate zones, home zone first.
    :param grid_window_kwargs: other :class:`~airflow_provider_gridaware.window.GridWindowArgs` fields.
    """

    custom_operator_name = "@task.gridaware"
    template_fields: Sequence[str] = (*PythonOperator.template_fields, "deadline", "earliest_start")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        duration: Duration,
        deadline: datetime | timedelta | str,
        conn_id: str | None = None,
        zones: Sequence[str] = (),
        earliest_start: datetime | timedelta | str | None = None,
        **kwargs: Any,
    ) -> None:
        grid_window_kwargs = pop_window_kwargs(kwargs)
        super().__init__(
            kwargs_to_upstream={"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs},
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            **kwargs,
        )
        self.set_window(
            duration=duration,
            deadline=deadline,
            conn_id=conn_id,
            zones=zones,
            earliest_start=earliest_start,
            grid_window_kwargs=grid_window_kwargs,
        )

    def execute(self, context: Context) -> Any:
        released = self.defer_until_window(context, method_name="execute_complete")
        return self.execute_complete(context, released)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """The window is open (the trigger fired, or the first decision released at once): run the callable
        with the decision as ``grid_decision``."""
        if not event or "plan" not in event:
            raise RuntimeError(f"grid window trigger returned an unexpected event: {event!r}")
        self.log.info("grid window open: %s", event.get("reason") or event["plan"].get("reason"))
        return self._run_callable(context, event, state=None, pauses=0, ran_s=0.0, first_started_at=None)

    def resume_after_grid_event(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        *,
        decision: dict[str, Any],
        state: dict[str, Any] | None,
        pauses: int,
        ran_s: float,
        first_started_at: str,
        ran_pieces: list[list[str]] | None = None,
    ) -> Any:
        """The grid event that paused the callable is over: run it again, in the same try, with its saved state."""
        if not event or event.get("status") != "clear":
            raise RuntimeError(f"grid event clear trigger returned an unexpected event: {event!r}")
        self.log.info(
            "grid event over in %s (paused %s, clear %s): resuming from the checkpoint (pause %d)",
            event.get("zone"),
            event.get("paused_at"),
            event.get("cleared_at"),
            pauses,
        )
        return self._run_callable(
            context,
            decision,
            state=state,
            pauses=pauses,
            ran_s=ran_s,
            first_started_at=first_started_at,
            ran_pieces=ran_pieces,
        )

    def _run_callable(
        self,
        context: Context,
        decision: dict[str, Any],
        *,
        state: dict[str, Any] | None,
        pauses: int,
        ran_s: float,
        first_started_at: str | None,
        ran_pieces: list[list[str]] | None = None,
    ) -> Any:
        """Run the callable with ``grid_decision`` and ``grid_checkpoint``; a pause defers until the event is over.

        ``ran_pieces`` are the ``[start, end]`` of the pieces it ran in before a pause (the ledger's estimated
        energy counts only those, not the time it was deferred).
        """
        from airflow_provider_gridaware.cooperative_pause import GridCheckpoint, PauseForGridEvent
        from airflow_provider_gridaware.ledger_writer import record_try, spec_of
        from airflow_provider_gridaware.runtime_history import record_task_run
        from airflow_provider_gridaware.times import current_clock, format_time, parse_time

        args = self.window_args()
        zone = (decision.get("plan") or {}).get("zone") or args.candidate_zones()[0]
        context[DECISION_KEY] = decision  # type: ignore[literal-required]  # offered to the callable by name
        checkpoint = GridCheckpoint(
            zone=zone, priority_class=args.priority_class, interruptible=args.interruptible, state=state, pauses=pauses
        )
        context[CHECKPOINT_KEY] = checkpoint  # type: ignore[literal-required]
        # PythonOperator.execute merges op_kwargs into the context and keeps the result in op_kwargs: drop what a
        # run before a pause left there (in one process, as under dag.test()), or it would win over these.
        self.op_kwargs = {k: v for k, v in self.op_kwargs.items() if k not in (DECISION_KEY, CHECKPOINT_KEY)}
        clock = current_clock()
        # The callable's own run time (not the waits around it) is what duration="auto" estimates from.
        piece_start = clock.now()
        started_at = piece_start if first_started_at is None else parse_time(first_started_at, what="first_started_at")
        # A resume after an upgrade from a version without pieces: counted as one piece from the first start.
        pieces = [list(p) for p in ran_pieces] if ran_pieces is not None else ([] if first_started_at is None else None)

        def running(until: datetime) -> list[tuple[datetime, datetime]] | None:
            if pieces is None:
                return None
            done = [(parse_time(a, what="piece start"), parse_time(b, what="piece end")) for a, b in pieces]
            return [*done, (piece_start, until)]

        started = time.monotonic()
        spec = spec_of(self, context, "decorator")
        try:
            result = super().execute(context)
        except PauseForGridEvent as pause:
            self._defer_until_clear(
                decision,
                pause,
                zone=zone,
                pauses=pauses,
                ran_s=ran_s + time.monotonic() - started,
                first_started_at=format_time(started_at),
                ran_pieces=None if pieces is None else [*pieces, [format_time(piece_start), format_time(clock.now())]],
            )
        except BaseException as exc:
            # A failed try ran (and drew power) too; the ledger counts it, the failure goes on unchanged.
            if spec is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
                failed_at = clock.now()
                record_try(
                    context,
                    spec,
                    state="skipped" if "Skip" in type(exc).__name__ else "failed",
                    zone=zone,
                    started_at=started_at,
                    ended_at=failed_at,
                    released=decision,
                    running=running(failed_at),
                    logger=self.log,
                )
            raise
        ended_at = clock.now()
        record_task_run(
            context,
            started_at=started_at,
            ended_at=ended_at,
            wall_seconds=ran_s + time.monotonic() - started,
            kind="python",
            chunks=pauses + 1,
            zone=zone,
            logger=self.log,
        )
        if spec is not None:
            record_try(
                context,
                spec,
                state="success",
                zone=zone,
                started_at=started_at,
                ended_at=ended_at,
                released=decision,
                running=running(ended_at),
                logger=self.log,
            )
        return result

    def _defer_until_clear(
        self,
        decision: dict[str, Any],
        pause: PauseForGridEvent,
        *,
        zone: str,
        pauses: int,
        ran_s: float,
        first_started_at: str,
        ran_pieces: list[list[str]] | None,
    ) -> NoReturn:
        from airflow_provider_gridaware.times import current_clock, format_time
        from airflow_provider_gridaware.triggers.grid_event_clear import GridEventClearRequest, GridEventClearTrigger
        from airflow_provider_gridaware.triggers.resume_guard import resume_not_before

        if pause.state is None:
            self.log.warning("paused with no saved state: the callable starts afresh when the event is over")
        self.log.info("pausing for a grid event: %s; deferring until it is over", pause.reason)
        request = GridEventClearRequest(
            zone=zone,
            priority_class=self.window_args().priority_class,
            paused_at=format_time(current_clock().now()),
            not_before=resume_not_before(),  # the resume race: this trigger must not fire at once
        )
        self.defer(
            trigger=GridEventClearTrigger(request),
            method_name="resume_after_grid_event",
            kwargs={
                "decision": decision,
                "state": pause.state,
                "pauses": pauses + 1,
                "ran_s": ran_s,
                "first_started_at": first_started_at,
                "ran_pieces": ran_pieces,
            },
        )


def gridaware_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> TaskDecorator:
    """Wrap a function into a grid-aware task (``@task.gridaware``); see the module docstring."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=_GridAwareDecoratedOperator,
        **kwargs,
    )
