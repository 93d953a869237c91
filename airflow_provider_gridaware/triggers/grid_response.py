"""GridResponseEndTrigger: a grid-event response task waits here until the events it holds work for end.

The response task defers on it after its pass while work is held. It fires when the earliest end time of
the holding events comes (the task passes again: an event whose intervals run out without a message is
seen), and ends the task from the triggerer (``TaskSuccessEvent``, no worker slot, no resume race) as soon
as no hold is open any more (a completion or cancellation message already let another run resume it all).
Many runs of the grid-event DAG may wait at once: each reads the store once per ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_gridaware.times import UTC, parse_time

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 2.0


class GridResponseEndTrigger(BaseTrigger):
    """Fires at ``wake_at`` (wall clock) unless every hold is released first (then the task ends here).

    :param wake_at: when the earliest holding event ends, on the wall clock (UTC).
    :param store_conn_id: the store's connection (default: the provider's store).
    :param poll_interval: seconds between reads of the open holds.
    """

    def __init__(
        self,
        wake_at: datetime | str,
        *,
        store_conn_id: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}")
        self.wake_at = parse_time(wake_at, what="wake_at")
        self.store_conn_id = store_conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "wake_at": self.wake_at.isoformat(),
                "store_conn_id": self.store_conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_provider_gridaware.hooks.store import GridStoreHook, shared_response_store

        url = await GridStoreHook(self.store_conn_id).aget_url()
        store = await asyncio.to_thread(shared_response_store, url)
        while True:
            try:
                open_holds = len(await asyncio.to_thread(store.open_holds))
            except Exception:  # the store briefly unreachable: the end time still wakes the task
                log.exception("Reading the open holds failed; will read again")
                open_holds = -1
            if open_holds == 0:
                log.info("No work is held any more: the response is complete")
                yield TaskSuccessEvent(xcoms={"return_value": {"ended": "all holds released"}})
                return
            remaining = (self.wake_at - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"wake": "end time", "wake_at": self.wake_at.isoformat()})
                return
            await asyncio.sleep(min(self.poll_interval, remaining))
