"""Power samples from a Prometheus ``query_range`` answer (DCGM's ``DCGM_FI_DEV_POWER_USAGE`` and the like; pure).

Several series (one per GPU) are summed per timestamp: the task's power is the sum of its boards'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_provider_gridaware.times import from_epoch


class PowerQueryError(ValueError):
    """The power source answered something that is not a power series; the message says what and where."""


def power_samples(answer: Mapping[str, Any], *, where: str) -> list[tuple[datetime, float]]:
    """``(time, watts)`` per timestamp, summed over the answer's series, in time order.

    :param answer: the decoded JSON of ``/api/v1/query_range``.
    :param where: names the source in errors.
    :raises PowerQueryError: an error answer, another result type, or a value that is not a finite power.
    """
    if answer.get("status") != "success":
        raise PowerQueryError(f"{where}: {answer.get('errorType') or 'error'}: {answer.get('error') or answer!r}")
    data = answer.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, Mapping) else type(data).__name__
        raise PowerQueryError(f"{where}: expected a range query's matrix result, got {kind!r}")
    totals: dict[float, float] = {}
    for series in data.get("result") or ():
        for pair in series.get("values") or ():
            try:
                stamp, text = float(pair[0]), float(pair[1])
            except (TypeError, ValueError, IndexError) as exc:
                raise PowerQueryError(f"{where}: sample {pair!r} is not [time, value]") from exc
            if not math.isfinite(text) or text < 0:
                raise PowerQueryError(f"{where}: sample {text!r} W at {from_epoch(stamp).isoformat()} is not a power")
            totals[stamp] = totals.get(stamp, 0.0) + text
    return [(from_epoch(stamp), watts) for stamp, watts in sorted(totals.items())]
