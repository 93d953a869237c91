"""Carbon traces written for tests: constant values per zone around now, for the replay connection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path


def write_flat_trace(
    path: Path,
    values: Mapping[str, float],
    *,
    dip: tuple[str, datetime, datetime, float] | None = None,
) -> Path:
    """5-minute points from a day ago to two days ahead, one constant value per zone (``time,zone,value``).

    :param dip: ``(zone, start, end, value)``: that zone has ``value`` on the points in ``[start, end)``.
    """
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    first = now - timedelta(days=1, minutes=now.minute % 5)
    lines = ["time,zone,value"]
    for i in range(3 * 24 * 12):
        at = first + timedelta(minutes=5 * i)
        stamp = at.isoformat().replace("+00:00", "Z")
        for zone, value in values.items():
            if dip is not None and zone == dip[0] and dip[1] <= at < dip[2]:
                value = dip[3]
            lines.append(f"{stamp},{zone},{value:g}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
