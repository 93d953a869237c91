"""A task's run time estimated from its past successful runs: what ``duration="auto"`` plans with.

The planner needs two numbers: the run time it places in the cleanest window (``duration``) and how much
longer a run may take before the deadline is at risk (``runtime_margin``, relative). From the measured
run times of recent successful tries:

* **duration = the median.** No single slow or fast run moves it; it is where the run will most likely
  be, which is what the window search needs.
* **margin = p90 - median** (nearest-rank 90th percentile: the smallest run time at least 90 % of the
  runs did not exceed), at least :data:`MIN_RELATIVE_MARGIN` of the median. Below ten runs the
  nearest-rank p90 is the slowest run (few runs understate the spread; the deadline is a promise);
  from ten runs on, the slowest tenth no longer sets it (an outlier does not empty the window).

For interruptible work the run time is the sum of its chunks (what the recorder measures), so the
estimate is the work to place, never the time it took including pauses.

Pure: no Airflow, no I/O, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from airflow_provider_gridaware.times import format_duration

#: Fewer recorded runs than this and ``duration="auto"`` refuses to guess.
DEFAULT_MIN_RUNS = 3
#: The estimate uses this many of the most recent runs: recent enough to follow a growing dataset,
#: enough for a p90 that is not simply the slowest run.
DEFAULT_HISTORY_RUNS = 20
#: A margin below this fraction of the run time is not believed: identical past runs still vary.
MIN_RELATIVE_MARGIN = 0.05
#: The quantile the margin covers (nearest rank).
MARGIN_QUANTILE = 0.9
#: The planner's Job refuses a zero duration; runs that short are planned as this.
MIN_DURATION = timedelta(seconds=1)


class NotEnoughRunHistoryError(ValueError):
    """``duration="auto"`` found too few successful runs of the task to estimate its run time.

    :param task: the task, as ``dag_id/task_id``.
    :param found: how many successful runs are recorded.
    :param needed: how many the estimate needs.
    """

    def __init__(self, task: str, found: int, needed: int) -> None:
        self.task, self.found, self.needed = task, found, needed
        runs = "run" if found == 1 else "runs"
        super().__init__(
            f'duration="auto" for {task}: found {found} successful {runs} with a recorded run time, '
            f"{needed} needed. Give the task an explicit duration until it has succeeded {needed - found} more "
            f"time(s), or lower duration_min_runs (run times are recorded when @task.gridaware and the "
            f"dispatch operators succeed)"
        )


@dataclass(frozen=True)
class RuntimeEstimate:
    """A run time and its margin, estimated from past runs.

    :param duration: the median run time (what the planner places).
    :param runtime_margin: the relative margin (``margin / duration``), as ``Job.runtime_margin``.
    :param runs: how many runs it was estimated from.
    :param p90: the nearest-rank 90th percentile run time.
    """

    duration: timedelta
    runtime_margin: float
    runs: int
    p90: timedelta

    @property
    def margin(self) -> timedelta:
        """The margin as a time: how much longer than ``duration`` a run may take and still keep the deadline."""
        return self.duration * self.runtime_margin

    def describe(self) -> str:
        """``duration 1 h 58 min estimated from 7 runs (median; p90 2 h 12 min, margin 14 min)``."""
        return (
            f"duration {format_duration(self.duration.total_seconds())} estimated from {self.runs} runs "
            f"(median; p90 {format_duration(self.p90.total_seconds())}, "
            f"margin {format_duration(self.margin.total_seconds())})"
        )

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready form (seconds)."""
        return {
            "duration_seconds": self.duration.total_seconds(),
            "runtime_margin": self.runtime_margin,
            "runs": self.runs,
            "p90_seconds": self.p90.total_seconds(),
        }


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile: the smallest value at least a fraction ``q`` of the values do not exceed.

    :param sorted_values: values in ascending order (at least one).
    :param q: the quantile, in (0, 1].
    """
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def median(sorted_values: Sequence[float]) -> float:
    """The median of values in ascending order (at least one); no ``statistics`` import on the worker's path.

    :param sorted_values: values in ascending order.
    """
    middle = len(sorted_values) // 2
    if len(sorted_values) % 2:
        return sorted_values[middle]
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2


def estimate_runtime(run_seconds: Sequence[float], *, task: str, min_runs: int = DEFAULT_MIN_RUNS) -> RuntimeEstimate:
    """The run time and margin of a task from the measured run times of its recent successful tries.

    :param run_seconds: run times in seconds (the caller chooses how many recent runs; order does not matter).
    :param task: names the task in the error (``dag_id/task_id``).
    :param min_runs: fewer runs than this raise :class:`NotEnoughRunHistoryError`.
    :raises NotEnoughRunHistoryError: too few runs.
    :raises ValueError: a run time that is negative or not finite (a broken record, never guessed around).
    """
    if min_runs < 1:
        raise ValueError(f"min_runs must be at least 1, got {min_runs}")
    values = sorted(float(s) for s in run_seconds)
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"run times of {task} must be finite and >= 0 seconds, got {bad[:3]}")
    if len(values) < min_runs:
        raise NotEnoughRunHistoryError(task, len(values), min_runs)
    floor = MIN_DURATION.total_seconds()
    p50 = max(median(values), floor)
    p90 = max(nearest_rank(values, MARGIN_QUANTILE), floor)
    margin = max(p90 - p50, MIN_RELATIVE_MARGIN * p50)
    return RuntimeEstimate(
        duration=timedelta(seconds=p50),
        runtime_margin=margin / p50,
        runs=len(values),
        p90=timedelta(seconds=p90),
    )
