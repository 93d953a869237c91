"""GridEventTrigger: polls demand-response parties and tails the store's event log, one TriggerEvent per new state.

It is a ``BaseEventTrigger``, so an ``AssetWatcher`` can run it in the triggerer: the grid-event DAG is
then scheduled by events, within seconds and with no worker slot held. It loops forever (a watcher that
returns is restarted and fires again) and never fires a state twice: it tails the log by ``seq`` and,
given a ``cursor_name``, keeps its position in the store, so events stored while the triggerer was down
(by the relay, or by another poller) fire when it is back.

Polling a party records its events in the store first; events reach the DAG only from the store, so what
fires is exactly what is recorded, whichever protocol delivered it.

Given ``respond=ResponseTargets(...)``, the watcher also applies the grid-event response itself, before it
fires (``triggers/triggerer_responder.py``): the work is paused within a second of the event being stored,
without waiting for Airflow to start the grid-event DAG's task, whose pass then finds it done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_gridaware.signals.errors import GridSignalError, SourceConfigError
from airflow_provider_gridaware.triggers.triggerer_responder import DEFAULT_RESPOND_TIMEOUT_S

if TYPE_CHECKING:
    from airflow_provider_gridaware.actuators import ResponseTargets
    from airflow_provider_gridaware.hooks.grid_event_base import GridEventHook
    from airflow_provider_gridaware.planning.response_policy import ResponsePolicy
    from airflow_provider_gridaware.store.events import EventStore, StoredEvent

log = logging.getLogger(__name__)

#: how often the store's log is read for states other processes stored (the relay), seconds: one indexed read,
#: and up to this long before a relayed state fires the asset (the grid-event response waits for it).
DEFAULT_TAIL_INTERVAL_S = 0.2
#: after a failed poll the party is asked again after this long at most (seconds), growing from the interval.
MAX_POLL_BACKOFF_S = 300.0
CURSOR_KEY_PREFIX = "grid_event_cursor"


class GridEventTrigger(BaseEventTrigger):
    """Fires once per new grid-event state: polled from ``conn_ids`` and/or stored by the relay.

    :param conn_ids: demand-response connections to poll (OpenADR 2.0b, OpenADR 3, IEEE 2030.5); empty to
        only tail the store (events pushed to the relay).
    :param store_conn_id: the store's connection (default: the provider's store, see ``GridStoreHook``).
    :param cursor_name: keep the position in the log under this name, so a restart resumes where it stopped;
        ``None`` starts at the end of the log each time it runs.
    :param from_seq: with no saved cursor, start after this position of the log (``0``: everything stored);
        default: the end of the log, so only what arrives from now on fires.
    :param sources: only fire for events from these sources (``<protocol>:<conn id>``); default all.
    :param include_test_events: fire for events the party marked as tests too.
    :param poll_interval: seconds between polls of each party (default: the party's own, see the hooks).
    :param tail_interval: seconds between reads of the store's log.
    :param respond: apply the grid-event response from the triggerer, before each asset event, to these
        clusters, queues and DAGs (:class:`~airflow_provider_gridaware.actuators.ResponseTargets` or its dict;
        give the same as the grid-event DAG's ``GridEventResponseOperator``). ``None``: only the DAG responds.
    :param respond_policy: the response policy (dict or JSON) for ``respond``; default
        ``[gridaware] response_policy``, else the defaults.
    :param respond_timeout: seconds the triggerer's pass may delay the asset event; a slower one finishes on
        its own thread and the DAG run applies the rest.
    """

    def __init__(
        self,
        conn_ids: Sequence[str] = (),
        *,
        store_conn_id: str | None = None,
        cursor_name: str | None = None,
        from_seq: int | None = None,
        sources: Sequence[str] | None = None,
        include_test_events: bool = False,
        poll_interval: float | None = None,
        tail_interval: float = DEFAULT_TAIL_INTERVAL_S,
        respond: ResponseTargets | Mapping[str, Any] | None = None,
        respond_policy: Mapping[str, Any] | str | None = None,
        respond_timeout: float = DEFAULT_RESPOND_TIMEOUT_S,
    ) -> None:
        super().__init__()
        if poll_interval is not None and poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}")
        if tail_interval <= 0:
            raise ValueError(f"tail_interval must be positive, not {tail_interval}")
        self.conn_ids = list(conn_ids)
        self.store_conn_id = store_conn_id
        if from_seq is not None and from_seq < 0:
            raise ValueError(f"from_seq must be 0 or more, not {from_seq}")
        self.cursor_name = cursor_name
        self.from_seq = from_seq
        self.sources = list(sources) if sources is not None else None
        self.include_test_events = include_test_events
        self.poll_interval = poll_interval
        self.tail_interval = tail_interval
        if respond_timeout <= 0:
            raise ValueError(f"respond_timeout must be positive, not {respond_timeout}")
        self.respond = _response_targets(respond)
        self.respond_policy = respond_policy
        self.respond_timeout = respond_timeout
        if self.respond is not None and respond_policy is not None:
            self._policy()  # a bad policy fails where the DAG is parsed, naming the key

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_ids": self.conn_ids,
                "store_conn_id": self.store_conn_id,
                "cursor_name": self.cursor_name,
                "from_seq": self.from_seq,
                "sources": self.sources,
                "include_test_events": self.include_test_events,
                "poll_interval": self.poll_interval,
                "tail_interval": self.tail_interval,
                "respond": self.respond.model_dump(mode="json") if self.respond is not None else None,
                "respond_policy": self.respond_policy,
                "respond_timeout": self.respond_timeout,
            },
        )

    def _policy(self) -> ResponsePolicy:
        from airflow_provider_gridaware.planning.response_policy import ResponsePolicy

        if self.respond_policy is not None:
            return ResponsePolicy.from_config(self.respond_policy)
        from airflow.sdk.configuration import conf

        return ResponsePolicy.from_config(conf.get("gridaware", "response_policy", fallback=None))

    # -- the loop ---------------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_gridaware.hooks.grid_event_base import aevent_hook_for
        from airflow_provider_gridaware.hooks.store import GridStoreHook, shared_event_store

        url = await GridStoreHook(self.store_conn_id).aget_url()
        store = await asyncio.to_thread(shared_event_store, url)
        cursor = await asyncio.to_thread(self._start_cursor, url, store)
        # A missing connection or unknown type is a configuration error: fail loudly, not poll nothing.
        hooks = [await aevent_hook_for(conn_id) for conn_id in self.conn_ids]
        responder = None
        if self.respond is not None:
            from airflow_provider_gridaware.triggers.triggerer_responder import TriggererResponder

            try:
                policy = self._policy()
            except Exception as exc:  # [gridaware] response_policy is wrong: events must still reach the DAG
                log.error("Not responding in the triggerer: %s; the grid-event DAG's task responds (and names it)", exc)
            else:
                responder = TriggererResponder(url, self.respond, policy, self.respond_timeout)
                responder.warm_up()
        log.info(
            "Watching grid events: polling %s; tailing %s from position %d; responding in the triggerer to %s",
            ", ".join(h.source for h in hooks) or "nothing",
            store,
            cursor,
            responder.targets.describe() if responder is not None else "nothing (the grid-event DAG responds)",
        )
        next_poll = {hook.gridaware_conn_id: 0.0 for hook in hooks}
        failures = {hook.gridaware_conn_id: 0 for hook in hooks}
        try:
            while True:
                now = time.monotonic()
                due = [hook for hook in hooks if next_poll[hook.gridaware_conn_id] <= now]
                for hook, outcome in zip(due, await asyncio.gather(*(self._poll(h, store) for h in due)), strict=True):
                    conn_id = hook.gridaware_conn_id
                    interval = self.poll_interval or hook.poll_interval()
                    failures[conn_id] = 0 if outcome else failures[conn_id] + 1
                    wait = min(interval * 2 ** failures[conn_id], max(MAX_POLL_BACKOFF_S, interval))
                    next_poll[conn_id] = time.monotonic() + wait
                states = await asyncio.to_thread(store.since, cursor)
                wanted = [stored for stored in states if self._wanted(stored)]
                fire = {stored.seq for stored in wanted}
                if wanted and responder is not None:
                    # Before the asset fires: the pass sees every state stored so far, so one pass serves the batch.
                    await responder.respond(
                        ", ".join(s.event.describe() for s in wanted[:3]) + ("..." if len(wanted) > 3 else "")
                    )
                for stored in states:
                    cursor = stored.seq
                    if stored.seq in fire:
                        try:
                            yield TriggerEvent(self._payload(stored))
                        except GeneratorExit:
                            # Closed while the triggerer holds the event: it was delivered, so it must not fire
                            # again after a restart. (No await is allowed here; one small write.)
                            self._save_cursor(url, cursor)
                            raise
                    # Saved only after the triggerer took the event: at least once, never skipped.
                    await asyncio.to_thread(self._save_cursor, url, cursor)
                wake = min([*next_poll.values(), time.monotonic() + self.tail_interval])
                await asyncio.sleep(max(0.0, wake - time.monotonic()))
        finally:
            if responder is not None:
                responder.close()

    async def _poll(self, hook: GridEventHook, store: EventStore) -> bool:
        """Poll one party and record what it has; an outage or a bad answer is logged, never raised."""
        try:
            await hook.areceive(store)
        except SourceConfigError:
            raise
        except GridSignalError as exc:
            log.warning("Polling %s failed, will retry: %s", hook.source, exc)
            return False
        except Exception:
            # The watcher must outlive any one bad answer; the traceback says what it was.
            log.exception("Polling %s failed unexpectedly, will retry", hook.source)
            return False
        return True

    def _wanted(self, stored: StoredEvent) -> bool:
        event = stored.event
        if self.sources is not None and event.source not in self.sources:
            return False
        if event.test_event and not self.include_test_events:
            log.info("Not firing for test event: %s", event.describe())
            return False
        return True

    @staticmethod
    def _payload(stored: StoredEvent) -> dict[str, Any]:
        event = stored.event
        return {
            "seq": stored.seq,
            "source": event.source,
            "event_id": event.event_id,
            "modification_number": event.modification_number,
            "status": event.status.value,
            "event": event.model_dump(mode="json"),
        }

    # -- the cursor ---------------------------------------------------------------------------------------
    def _cursor_key(self) -> str:
        from airflow_provider_gridaware.store.meta import meta_key

        assert self.cursor_name is not None
        return meta_key(CURSOR_KEY_PREFIX, self.cursor_name)

    def _start_cursor(self, url: str, store: EventStore) -> int:
        saved = None
        if self.cursor_name is not None:
            from airflow_provider_gridaware.store.meta import read_meta

            saved = read_meta(self._cursor_key(), url=url)
        if saved is not None:
            return int(saved)
        # First start: only what arrives from now on, not the whole history, unless asked.
        return self.from_seq if self.from_seq is not None else store.last_seq()

    def _save_cursor(self, url: str, cursor: int) -> None:
        if self.cursor_name is None:
            return
        from airflow_provider_gridaware.store.meta import write_meta

        write_meta({self._cursor_key(): str(cursor)}, url=url)


def _response_targets(value: ResponseTargets | Mapping[str, Any] | None) -> ResponseTargets | None:
    if value is None:
        return None
    from airflow_provider_gridaware.actuators import ResponseTargets

    targets = value if isinstance(value, ResponseTargets) else ResponseTargets.model_validate(dict(value))
    if not targets:
        raise ValueError("respond names no cluster, queue or api-server connection: give one, or respond=None")
    return targets
