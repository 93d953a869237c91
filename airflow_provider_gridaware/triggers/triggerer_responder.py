"""TriggererResponder: the grid-event response's pass, run by ``GridEventTrigger`` in the triggerer itself.

Through Airflow an event otherwise reaches the work as store -> asset event -> DAG run -> task process ->
pass: seconds, most of them Airflow's (the triggerer's one-second hand-off, the task's start). The watcher has
already read the event, so it can apply the same pass (``responder.respond``, the same actuators and policy)
before it fires the asset event. The store's claims make the DAG run's pass that follows a no-op for what was
applied here; that run still keeps the record, retries what failed and detects the events' ends.

The pass is blocking (Kubernetes, boto3 and REST clients), so it runs on one thread of its own, never on the
triggerer's event loop nor its shared default executor (a hanging cluster must not starve other triggers'
store reads). A pass longer than ``timeout`` is left to finish in its thread while the asset event fires: the
DAG run applies what it has not claimed, and a claim it never finishes is taken over after the claim lease.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow_provider_gridaware.actuators import ResponseTargets
    from airflow_provider_gridaware.planning.response_policy import ResponsePolicy
    from airflow_provider_gridaware.responder import ResponseOutcome

log = logging.getLogger(__name__)
T = TypeVar("T")

#: a pass taking longer than this (seconds) no longer delays the asset event (the DAG run takes over).
DEFAULT_RESPOND_TIMEOUT_S = 10.0
RUNNER = "triggerer"


class _DaemonWorker:
    """One daemon thread running submitted calls in order. Not a ``ThreadPoolExecutor``: its threads are joined
    when the interpreter exits, so a pass stuck on an unanswering cluster (or on the triggerer's comms, gone
    once its loop stops) would keep a stopping triggerer alive. A pass cut short holds claims the lease expires."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._calls.put((future, call))
        return future

    def shutdown(self) -> None:
        self._calls.put(None)

    def _work(self) -> None:
        while (item := self._calls.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)


def _log_late_pass(why: str, done: Future[Any]) -> None:
    """Say how a pass that outlived its timeout ended (nobody awaits it any more)."""
    if done.cancelled():
        return
    if (error := done.exception()) is not None:
        log.error("The triggerer's late response pass for %s failed: %s: %s", why, type(error).__name__, error)
    else:
        log.info("The triggerer's late response pass for %s finished: %s", why, done.result().summary())


class TriggererResponder:
    """Apply the response from the triggerer: one pass per batch of new event states, one at a time.

    :param url: the store's SQLAlchemy URL (events and responses).
    :param targets: the clusters, queues and DAGs to act on.
    :param policy: the response rule.
    :param timeout: seconds a pass may delay the asset event.
    """

    def __init__(self, url: str, targets: ResponseTargets, policy: ResponsePolicy, timeout: float) -> None:
        self.url = url
        self.targets = targets
        self.policy = policy
        self.timeout = timeout
        self._thread = _DaemonWorker("gridaware-triggerer-response")
        self._running: Future[Any] | None = None  # the last pass (a warm-up is not one: a pass queues behind it)

    def warm_up(self) -> None:
        """Load the clients' modules and open the stores now, on the pass's thread, so the first event does not
        pay for them (about a second on a busy machine); a missing connection is logged here and left to the pass."""
        self._thread.submit(self._warm)

    def _warm(self) -> None:
        from airflow_provider_gridaware.hooks.store import shared_event_store, shared_response_store

        shared_event_store(self.url)
        shared_response_store(self.url)
        for actuator in self.targets.actuators(self.policy):
            try:
                _ = actuator.hook  # type: ignore[attr-defined]
            except Exception as exc:  # the first pass reports it with its context
                log.warning("Preparing %s for the triggerer's response failed: %s", actuator.kind.value, exc)

    async def respond(self, why: str) -> ResponseOutcome | None:
        """Run one pass now, waiting at most ``timeout``; ``None`` if it did not finish (or could not start)."""
        if self._running is not None and not self._running.done():
            log.warning(
                "The triggerer's previous response pass is still running: not starting another for %s "
                "(the grid-event DAG's run applies it)",
                why,
            )
            return None
        self._running = self._thread.submit(self._pass)
        try:
            outcome: ResponseOutcome = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(self._running)), self.timeout
            )
        except TimeoutError:
            log.warning(
                "The triggerer's response pass for %s took over %g s: firing the asset event now; the pass "
                "finishes on its own thread and the grid-event DAG's run applies what it has not claimed",
                why,
                self.timeout,
            )
            self._running.add_done_callback(lambda done: _log_late_pass(why, done))
            return None
        except Exception:
            # The triggerer must outlive any failure here: the DAG run's pass is the fallback.
            log.exception("The triggerer's response pass for %s failed; the grid-event DAG's run applies it", why)
            return None
        log.info("Grid-event response applied in the triggerer for %s: %s", why, outcome.summary())
        for failure in outcome.failed:
            log.error(
                "Response step failed in the triggerer (recorded; the DAG run tries again): %s %s: %s",
                failure.get("step"),
                failure.get("target"),
                failure.get("error"),
            )
        return outcome

    def _pass(self) -> ResponseOutcome:
        from airflow_provider_gridaware.hooks.store import shared_event_store, shared_response_store
        from airflow_provider_gridaware.responder import respond
        from airflow_provider_gridaware.times import current_clock

        responses = shared_response_store(self.url)
        return respond(
            event_store=shared_event_store(self.url),
            # Built per pass, as a task would: a connection edited while the watcher runs applies to the next pass.
            actuators=self.targets.actuators(self.policy),
            store=responses,
            now=current_clock().now,  # read by the pass once it has the holds
            policy=self.policy,
            parallelism=self.targets.parallelism,
            runner=RUNNER,
        )

    def close(self) -> None:
        """Stop taking passes; one in progress finishes on its thread (it holds claims it must record)."""
        self._thread.shutdown()
