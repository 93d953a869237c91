"""GridEventResponseOperator: the grid-event DAG's task that pauses in-flight work and brings it back.

Run by a DAG scheduled on the grid-event asset (``GridEventTrigger`` in an ``AssetWatcher``): each new or
modified event state starts a run, and the task brings the fleet in line with *all* current events (see
``planning/grid_response.py``): flexible Kubernetes Jobs and AWS Batch jobs checkpoint and wait, batch ones
stop, DAGs tagged ``gridaware:batch`` are paused through Airflow's REST API; critical work is untouched.
Every step is claimed and recorded in the store (``store/responses.py``), so duplicates, out-of-order states,
two runs at once and a triggerer restart apply nothing twice.

How the end is detected: a completed or cancelled state fires the asset too (a new run resumes what it held),
and, because an event's intervals may simply run out without a message, the task itself waits (deferred, no
worker slot) until the end of the events it holds and then runs the same pass again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

# The actuators live in their own module (the triggerer applies the response too); kept importable from here.
from airflow_provider_gridaware.actuators import (
    ANNOTATION_POWER_KW,
    ANNOTATION_WEIGHT,
    DAG_CLASS_TAG_PREFIX,
    DAG_ZONE_TAG_PREFIX,
    AirflowDagsActuator,
    BatchJobsActuator,
    KubernetesJobsActuator,
    ResponseTargets,
    job_gpus,
)
from airflow_provider_gridaware.planning.response_policy import ResponsePolicy

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_gridaware.hooks.batch import BatchQueue
    from airflow_provider_gridaware.responder import ResponseOutcome

__all__ = [
    "ANNOTATION_POWER_KW",
    "ANNOTATION_WEIGHT",
    "DAG_CLASS_TAG_PREFIX",
    "DAG_ZONE_TAG_PREFIX",
    "AirflowDagsActuator",
    "BatchJobsActuator",
    "GridEventResponseOperator",
    "KubernetesJobsActuator",
    "job_gpus",
]

#: never defer on a trigger that can fire at once (DESIGN.md, the deferral race): wait at least this long.
MIN_DEFER_SECONDS = 5.0


class GridEventResponseOperator(BaseOperator):
    """Pause the in-flight work the current grid events shed, and resume what they no longer shed.

    Every pass reads the events from the store, finds the work (Kubernetes Jobs in each cluster, AWS Batch
    jobs in each queue, DAGs tagged ``gridaware:<class>`` through Airflow's REST API), plans with the
    response policy and applies each step once (claimed in the store). Failures of single steps are logged
    and recorded and fail the task at the end (a retry runs the pass again: nothing is applied twice).

    :param kubernetes_conn_ids: ``kubernetes`` connections of the clusters whose grid-aware Jobs respond.
    :param namespace: only Jobs in this namespace (default: all namespaces).
    :param batch_queues: AWS Batch queues whose grid-aware jobs respond.
    :param airflow_conn_id: connection to Airflow's api-server for pausing DAGs (``None``: DAGs are not paused).
    :param policy: the response policy as a dict or JSON (see ``docs/grid_event_response.md``); default: the
        Airflow Variable ``policy_variable`` if given, else ``[gridaware] response_policy``, else the defaults.
    :param policy_variable: an Airflow Variable holding the policy as JSON.
    :param store_conn_id: the store's connection (default: the provider's store).
    :param wait_for_end: after the pass, wait (deferred) until the end of the events holding work, then pass
        again; repeat until nothing is held. Catches events whose intervals run out without a message.
    :param parallelism: API calls in flight at once.
    """

    template_fields: Sequence[str] = (
        "kubernetes_conn_ids",
        "namespace",
        "airflow_conn_id",
        "policy",
        "policy_variable",
    )
    ui_color = "#e76f51"

    def __init__(
        self,
        *,
        kubernetes_conn_ids: Sequence[str] = (),
        namespace: str | None = None,
        batch_queues: Sequence[BatchQueue] = (),
        airflow_conn_id: str | None = None,
        policy: Mapping[str, Any] | str | None = None,
        policy_variable: str | None = None,
        store_conn_id: str | None = None,
        wait_for_end: bool = True,
        parallelism: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kubernetes_conn_ids = (
            [kubernetes_conn_ids] if isinstance(kubernetes_conn_ids, str) else list(kubernetes_conn_ids)
        )
        self.namespace = namespace
        self.batch_queues = list(batch_queues)
        self.airflow_conn_id = airflow_conn_id
        self.policy = policy
        self.policy_variable = policy_variable
        self.store_conn_id = store_conn_id
        self.wait_for_end = wait_for_end
        self.parallelism = parallelism
        if isinstance(policy, (str, Mapping)) and not (isinstance(policy, str) and "{{" in policy):
            ResponsePolicy.from_config(policy)  # a bad policy fails at parse time, naming the key

    # -- configuration ---------------------------------------------------------------------------------
    def response_policy(self) -> ResponsePolicy:
        """The policy: the ``policy`` argument, else the Variable, else ``[gridaware] response_policy``, else defaults."""
        if self.policy is not None:
            return ResponsePolicy.from_config(self.policy)
        if self.policy_variable:
            from airflow.sdk import Variable

            return ResponsePolicy.from_config(Variable.get(self.policy_variable))
        from airflow.sdk.configuration import conf

        return ResponsePolicy.from_config(conf.get("gridaware", "response_policy", fallback=None))

    def response_targets(self, dag_id: str | None) -> ResponseTargets:
        """The clusters, queues and DAGs this task acts on (never its own DAG)."""
        return ResponseTargets(
            kubernetes_conn_ids=self.kubernetes_conn_ids,
            namespace=self.namespace,
            batch_queues=self.batch_queues,
            airflow_conn_id=self.airflow_conn_id,
            exclude_dag_ids=[dag_id] if dag_id else [],
            parallelism=self.parallelism,
        )

    def actuators(self, policy: ResponsePolicy, dag_id: str | None) -> list[Any]:
        return list(self.response_targets(dag_id).actuators(policy))

    # -- the pass --------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        return self._pass(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        self.log.info("The events' end time came: passing again")
        return self._pass(context)

    def _pass(self, context: Context) -> dict[str, Any]:
        from airflow_provider_gridaware.hooks.store import GridStoreHook
        from airflow_provider_gridaware.responder import respond
        from airflow_provider_gridaware.times import current_clock

        policy = self.response_policy()
        hook = GridStoreHook(self.store_conn_id)
        responses = hook.get_response_store()
        clock = current_clock()
        dag = context.get("dag")
        outcome = respond(
            event_store=hook.get_event_store(),
            actuators=self.actuators(policy, getattr(dag, "dag_id", None)),
            store=responses,
            now=clock.now,  # read by the pass once it has the holds (another runner's may be newer)
            policy=policy,
            parallelism=self.parallelism,
            runner="task",
        )
        now = clock.now()
        # Each step is logged by the responder as it is recorded; the summary and the XCom say the rest.
        self.log.info("Grid-event response at %s: %s", now.isoformat(), outcome.summary())
        if outcome.failed:
            raise RuntimeError(
                f"{len(outcome.failed)} response step(s) failed (recorded; a retry applies only what is left): "
                + "; ".join(f"{f.get('step')} {f.get('target')}: {f.get('error')}" for f in outcome.failed)
            )
        if self.wait_for_end:
            self._defer_until_end(hook, now)
        return self._result(outcome)

    @staticmethod
    def _result(outcome: ResponseOutcome) -> dict[str, Any]:
        return outcome.to_dict()

    def _defer_until_end(self, hook: Any, now: datetime) -> None:
        """Defer until the earliest end of the events holding work (so an end without a message is seen).

        The trigger ends the task by itself once no hold is open (another run resumed everything).
        """
        from airflow_provider_gridaware.times import UTC, current_clock
        from airflow_provider_gridaware.triggers.grid_response import GridResponseEndTrigger

        holds = hook.get_response_store().open_holds()
        if not holds:
            return
        store = hook.get_event_store()
        ends = []
        for key in {(h.event_source, h.event_id) for h in holds}:
            latest = store.latest(*key)
            if latest is not None and latest.end is not None:
                ends.append(latest.end)
        if not ends:
            self.log.info("Work is held by events with no end time: their completion or cancellation resumes it")
            return
        wall_wait = current_clock().wall_seconds((min(ends) - now).total_seconds())
        moment = datetime.now(UTC) + timedelta(seconds=max(MIN_DEFER_SECONDS, wall_wait))
        self.log.info("%d hold(s) open: waiting until %s (the earliest end), then passing again", len(holds), moment)
        self.defer(
            trigger=GridResponseEndTrigger(moment, store_conn_id=self.store_conn_id), method_name="execute_complete"
        )
