"""Guard against Airflow's resume race (apache/airflow issue 72716, open in 3.3.2).

When a task defers, its worker process exits and the executor reports "success" for that try. If the
trigger fires within seconds and the resumed attempt is already running when the scheduler drains that
stale event, the scheduler fails the task ("finished with state success, but the task instance's state
attribute is running"). A trigger whose task resumes on a worker therefore never fires sooner than
:data:`RESUME_GUARD_SECONDS` (wall time) after the deferral; a trigger that ends the task itself
(``TaskSuccessEvent``) needs no guard. See docs/grid_window.md.
"""

from __future__ import annotations

import asyncio
import time

#: The scheduler drains executor events every loop (about a second, several under load); seen failing
#: up to ~6 s after deferral upstream. Thirty seconds leaves a wide margin for a loaded scheduler.
RESUME_GUARD_SECONDS = 30.0


def resume_not_before() -> float:
    """Wall-clock epoch seconds before which a trigger deferred now must not fire."""
    return time.time() + RESUME_GUARD_SECONDS


async def hold_until(not_before: float | None) -> None:
    """Sleep until ``not_before`` (wall-clock epoch seconds), if it is still ahead.

    :param not_before: from :func:`resume_not_before`, or ``None`` for no guard.
    """
    if not_before is None:
        return
    remaining = not_before - time.time()
    if remaining > 0:
        await asyncio.sleep(remaining)
