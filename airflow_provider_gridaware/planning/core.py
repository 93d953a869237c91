"""The vectorised planning core: windows on a regular grid with integer prefix sums.

Everything here works on numpy arrays of seconds and fixed-point objective units; the typed API in
:mod:`airflow_provider_gridaware.planning.planner` converts datetimes and signal series at the edge.

Why fixed point: window integrals are differences of prefix sums. In float64 two equal windows can
differ in the last bit, so "earliest wins on ties" would depend on rounding noise. Quantising each
slot to ``QUANTUM`` units per normalised unit makes every window integral an exact int64, so ties are
exact and the result does not depend on where the prefix sum started.

Complexity (``Z`` zones, ``n`` slots, ``J`` jobs, ``G`` distinct durations, ``L`` longest start range):

* preparing a grid: ``O(Z n)``;
* non-interruptible batch: ``O(G Z n log L + J Z)`` with a sparse table per duration, or
  ``O(G Z L + J Z)`` when the jobs of a duration share their earliest start (the trigger's case: all
  waiting jobs are planned "now"), where a running minimum answers every query;
* interruptible: a dynamic programme over ``(slot, work done, run length)``: ``O(N K M)`` time and
  ``O(N K)`` memory for ``N`` slots before the deadline, ``K`` slots of work and ``M`` slots of minimum chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# 2**16 units per normalised unit (1.0 = the typical signal level): a resolution of 1.5e-5.
QUANTUM = 1 << 16
# Normalised values beyond this are garbage; clipping keeps every integral far inside int64
# (2**28 units x 2**17 slots x 2**12 s per slot = 2**57).
VALUE_LIMIT = float(1 << 12)
# Sentinel for an unusable window; sums of two stay below int64 overflow.
INVALID = np.int64(1 << 61)

# Status codes of :class:`WindowChoice` (mirrored by PlanStatus in the typed API).
SHIFTED = 0
BEST_NOW = 1
NOT_WORTH_WAITING = 2
NO_SIGNAL = 3
DEADLINE_AT_RISK = 4


@dataclass(frozen=True)
class ObjectiveGrid:
    """A normalised objective on a regular grid, ready for window queries.

    :param origin_s: epoch seconds of the start of slot 0.
    :param step_s: slot length in seconds.
    :param units: ``(Z, n)`` fixed-point slot values (0 where unusable).
    :param prefix: ``(Z, n + 1)`` running sums of ``units``.
    :param bad_prefix: ``(Z, n + 1)`` running counts of unusable slots.
    """

    origin_s: int
    step_s: int
    units: IntArray
    prefix: IntArray
    bad_prefix: IntArray

    @classmethod
    def from_values(cls, values: npt.ArrayLike, *, origin_s: int, step_s: int) -> ObjectiveGrid:
        """Quantise normalised slot values; NaN and infinities mark unusable slots.

        :param values: ``(Z, n)`` or ``(n,)`` normalised objective per slot.
        :param origin_s: epoch seconds of slot 0.
        :param step_s: slot length in seconds (positive).
        """
        if step_s <= 0:
            raise ValueError(f"step must be positive, got {step_s} s")
        array = np.atleast_2d(np.asarray(values, dtype=np.float64))
        bad = ~np.isfinite(array)
        clipped = np.clip(np.where(bad, 0.0, array), -VALUE_LIMIT, VALUE_LIMIT)
        units = np.rint(clipped * QUANTUM).astype(np.int64)
        zones, n = units.shape
        prefix = np.zeros((zones, n + 1), dtype=np.int64)
        np.cumsum(units, axis=1, out=prefix[:, 1:])
        bad_prefix = np.zeros((zones, n + 1), dtype=np.int64)
        np.cumsum(bad, axis=1, out=bad_prefix[:, 1:])
        return cls(int(origin_s), int(step_s), units, prefix, bad_prefix)

    @property
    def zones(self) -> int:
        return int(self.units.shape[0])

    @property
    def slots(self) -> int:
        return int(self.units.shape[1])

    @property
    def end_s(self) -> int:
        """Epoch seconds where the grid ends."""
        return self.origin_s + self.slots * self.step_s

    def integral(self, zone: npt.ArrayLike, start_s: npt.ArrayLike, end_s: npt.ArrayLike) -> tuple[IntArray, BoolArray]:
        """Exact integrals (units x seconds) of ``[start, end)`` and whether each is fully usable.

        Partial slots are weighted by overlap (the GSF Carbon Aware SDK's definition).

        :param zone: zone index per query (broadcast with the times).
        :param start_s: epoch seconds.
        :param end_s: epoch seconds, ``>= start_s``.
        """
        if np.ndim(zone) == 0 and np.ndim(start_s) == 0 and np.ndim(end_s) == 0:
            # One window (a decision's expected signals, the previous window's score): plain integers, as
            # the arrays' arithmetic would give, without a dozen array operations on 0-d arrays.
            total_1, ok_1 = self._integral_one(int(zone), int(start_s), int(end_s))  # type: ignore[arg-type]
            return np.asarray(total_1, np.int64), np.asarray(ok_1)
        z, a, b = np.broadcast_arrays(
            np.asarray(zone, np.int64), np.asarray(start_s, np.int64), np.asarray(end_s, np.int64)
        )
        a = a - self.origin_s
        b = b - self.origin_s
        limit = self.slots * self.step_s
        inside = (a >= 0) & (b <= limit) & (b >= a)
        # minimum/maximum, not np.clip: the same values, and np.clip's checks cost more than the clipping.
        a_c = np.minimum(np.maximum(a, 0), limit)
        b_c = np.minimum(np.maximum(b, 0), limit)
        total = self._running(z, b_c) - self._running(z, a_c)
        first = a_c // self.step_s
        last = -(-b_c // self.step_s)  # ceil: a partial last slot counts as touched
        clean = (self.bad_prefix[z, last] - self.bad_prefix[z, first]) == 0
        return total, inside & clean

    def _integral_one(self, zone: int, start_s: int, end_s: int) -> tuple[int, bool]:
        """:meth:`integral` of one window, in Python integers."""
        step, slots = self.step_s, self.slots
        a, b = start_s - self.origin_s, end_s - self.origin_s
        limit = slots * step
        inside = a >= 0 and b <= limit and b >= a
        a_c, b_c = min(max(a, 0), limit), min(max(b, 0), limit)
        prefix, units = self.prefix[zone], self.units[zone]

        def running(t: int) -> int:
            k = min(t // step, slots - 1)
            return int(prefix[k]) * step + int(units[k]) * (t - k * step)

        total = running(b_c) - running(a_c)
        first, last = a_c // step, -(-b_c // step)
        clean = int(self.bad_prefix[zone, last]) == int(self.bad_prefix[zone, first])
        return total, inside and clean

    def _running(self, z: IntArray, t: IntArray) -> IntArray:
        # F(t) = integral from slot 0 to t: whole slots from the prefix plus the partial slot.
        k = np.minimum(t // self.step_s, self.slots - 1)
        result: IntArray = self.prefix[z, k] * self.step_s + self.units[z, k] * (t - k * self.step_s)
        return result

    def slot_costs(self, zone: int, start_s: int, step_s: int, count: int) -> IntArray:
        """Integrals over ``count`` consecutive slots of ``step_s`` from ``start_s`` (``INVALID`` where unusable).

        :param zone: zone index.
        :param start_s: epoch seconds of the first slot.
        :param step_s: slot length in seconds.
        :param count: number of slots.
        """
        bounds = start_s + step_s * np.arange(count + 1, dtype=np.int64)
        total, ok = self.integral(zone, bounds[:-1], bounds[1:])
        return np.where(ok, total, INVALID)


@dataclass(frozen=True)
class WindowChoice:
    """Batch answer of :func:`best_windows`; one entry per job.

    :param zone: chosen zone index.
    :param start_s: chosen start (epoch seconds).
    :param score: the chosen window's integral (units x s) without the zone penalty (``INVALID`` if none).
    :param now_score: the "start now in the home zone" integral (``INVALID`` if unusable).
    :param run_now: whether the job starts at its earliest start.
    :param status: one of the module's status codes.
    """

    zone: IntArray
    start_s: IntArray
    score: IntArray
    now_score: IntArray
    run_now: BoolArray
    status: IntArray


def best_windows(
    grid: ObjectiveGrid,
    *,
    duration_s: npt.ArrayLike,
    earliest_s: npt.ArrayLike,
    latest_start_s: npt.ArrayLike,
    zone_ok: npt.ArrayLike | None = None,
    home_zone: npt.ArrayLike | None = None,
    penalty: npt.ArrayLike | None = None,
    min_gain: npt.ArrayLike = 0.0,
) -> WindowChoice:
    """Plan many non-interruptible jobs at once: the lowest time-weighted mean window per job.

    Candidates are the exact earliest start ("now") and every slot boundary after it up to the latest
    start; a window must lie inside the grid and touch no unusable slot. Ties go to the earliest start,
    then to the home zone, then to the lower zone index. If the best window improves on "now in the home
    zone" by less than ``min_gain`` (relative), the job starts now in its home zone.

    :param grid: the objective grid (``Z`` zones).
    :param duration_s: ``(J,)`` run times in seconds (positive).
    :param earliest_s: ``(J,)`` earliest starts (epoch seconds).
    :param latest_start_s: ``(J,)`` latest starts; before the earliest start means "start at once".
    :param zone_ok: ``(J, Z)`` which zones each job may use (default: all).
    :param home_zone: ``(J,)`` home zone index (default 0), always allowed.
    :param penalty: ``(J, Z)`` additive normalised penalty per zone (default 0).
    :param min_gain: ``(J,)`` or scalar minimum relative gain for not starting now.
    """
    duration = np.atleast_1d(np.asarray(duration_s, dtype=np.int64))
    jobs = duration.shape[0]
    if jobs == 1:
        return _best_window_one(grid, duration, earliest_s, latest_start_s, zone_ok, home_zone, penalty, min_gain)
    earliest = np.broadcast_to(np.asarray(earliest_s, dtype=np.int64), (jobs,))
    latest = np.broadcast_to(np.asarray(latest_start_s, dtype=np.int64), (jobs,))
    zones = grid.zones
    home = np.zeros(jobs, np.int64) if home_zone is None else np.broadcast_to(np.asarray(home_zone, np.int64), (jobs,))
    allowed = (
        np.ones((jobs, zones), bool)
        if zone_ok is None
        else np.broadcast_to(np.asarray(zone_ok, bool), (jobs, zones)).copy()
    )
    allowed[np.arange(jobs), home] = True
    gain = np.broadcast_to(np.asarray(min_gain, dtype=np.float64), (jobs,))
    if penalty is None:
        penalty_units = np.zeros((jobs, zones), np.int64)
    else:
        penalty_units = np.rint(
            np.clip(np.broadcast_to(np.asarray(penalty, np.float64), (jobs, zones)), -VALUE_LIMIT, VALUE_LIMIT)
            * QUANTUM
        ).astype(np.int64)
    if np.any(duration <= 0):
        raise ValueError("durations must be positive")

    zone_idx = np.arange(zones, dtype=np.int64)[None, :]
    # "Now": the window from the exact earliest start, in every zone.
    now_total, now_ok = grid.integral(zone_idx, earliest[:, None], (earliest + duration)[:, None])
    now_all = np.where(now_ok & allowed, now_total, INVALID)
    now_pen = np.where(now_all < INVALID, now_all + penalty_units * duration[:, None], INVALID)

    # Later: slot boundaries strictly after the earliest start, up to the latest start.
    step = grid.step_s
    first = np.maximum((earliest - grid.origin_s) // step + 1, 0)
    last = np.minimum((latest - grid.origin_s) // step, (grid.slots * step - duration) // step)
    later_score = np.full((jobs, zones), INVALID, np.int64)
    later_slot = np.zeros((jobs, zones), np.int64)
    has_range = last >= first
    if np.any(has_range):
        _later_windows(grid, duration, first, last, has_range, later_score, later_slot)
    later_all = np.where(allowed, later_score, INVALID)
    later_pen = np.where(later_all < INVALID, later_all + penalty_units * duration[:, None], INVALID)

    # Within a zone "now" wins ties (earliest start); across zones the lowest penalised score wins,
    # then the earliest start, then the home zone, then the lower index.
    use_later = later_pen < now_pen
    cand_score = np.where(use_later, later_pen, now_pen)
    cand_start = np.where(use_later, grid.origin_s + later_slot * step, earliest[:, None])
    best_score = cand_score.min(axis=1)
    tied = cand_score == best_score[:, None]
    big = np.iinfo(np.int64).max
    best_start = np.where(tied, cand_start, big).min(axis=1)
    tied &= cand_start == best_start[:, None]
    rank = np.where(zone_idx == home[:, None], -1, zone_idx)
    best_zone = np.where(tied, rank, big).argmin(axis=1).astype(np.int64)

    rows = np.arange(jobs)
    raw_score = np.where(use_later, later_all, now_all)[rows, best_zone]
    now_home = now_all[rows, home]
    found = best_score < INVALID
    now_valid = now_home < INVALID
    is_now = found & (best_start == earliest) & (best_zone == home)
    # Relative gain on the penalised scores, the ones the choice was made on.
    now_home_pen = now_pen[rows, home]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_gain = (now_home_pen - best_score) / np.maximum(np.abs(now_home_pen), 1).astype(np.float64)
    worth = ~now_valid | (rel_gain >= gain)
    at_risk = latest < earliest

    status = np.full(jobs, SHIFTED, np.int64)
    status[is_now | (found & (best_start == earliest))] = BEST_NOW
    status[found & ~is_now & ~worth] = NOT_WORTH_WAITING
    status[~found] = NO_SIGNAL
    status[at_risk] = DEADLINE_AT_RISK
    fallback = (~found) | (found & ~is_now & ~worth) | at_risk
    # Falling back means "now, home zone": the deadline is never traded for a signal we do not trust.
    zone_out = np.where(fallback, home, best_zone)
    start_out = np.where(fallback, earliest, best_start)
    score_out = np.where(fallback, now_home, raw_score)
    run_now = start_out == earliest
    return WindowChoice(zone_out, start_out, score_out, now_home, run_now, status)


def _best_window_one(
    grid: ObjectiveGrid,
    duration_s: IntArray,
    earliest_s: npt.ArrayLike,
    latest_start_s: npt.ArrayLike,
    zone_ok: npt.ArrayLike | None,
    home_zone: npt.ArrayLike | None,
    penalty: npt.ArrayLike | None,
    min_gain: npt.ArrayLike,
) -> WindowChoice:
    """:func:`best_windows` for one job, the same rules in Python integers (a trigger plans one job at a time).

    The batch code spends most of a one-job call on array set-up for a ``(1, Z)`` problem; this does the
    window scores as arrays (one per zone) and the choice among a few zones in plain Python, with the same
    ties, fallbacks and statuses (``test_batch_equals_one_by_one`` in ``tests/unit/test_planner.py`` compares the
    two field by field).
    """
    zones, step = grid.zones, grid.step_s

    def scalar(value: npt.ArrayLike, dtype: type) -> Any:
        return np.asarray(value, dtype).reshape(-1)[0].item()

    d = int(duration_s[0])
    if d <= 0:
        raise ValueError("durations must be positive")
    earliest, latest = scalar(earliest_s, np.int64), scalar(latest_start_s, np.int64)
    home = 0 if home_zone is None else scalar(home_zone, np.int64)
    gain = scalar(min_gain, np.float64)
    allowed = [True] * zones if zone_ok is None else np.broadcast_to(np.asarray(zone_ok, bool), (1, zones))[0].tolist()
    allowed[home] = True
    if penalty is None:
        pen = [0] * zones
    else:
        clipped = np.clip(np.broadcast_to(np.asarray(penalty, np.float64), (1, zones))[0], -VALUE_LIMIT, VALUE_LIMIT)
        pen = np.rint(clipped * QUANTUM).astype(np.int64).tolist()
    invalid = int(INVALID)

    now_all, now_pen = [invalid] * zones, [invalid] * zones
    for z in range(zones):
        total, ok = grid._integral_one(z, earliest, earliest + d)
        if ok and allowed[z]:
            now_all[z], now_pen[z] = total, total + pen[z] * d

    later_all, later_pen, later_slot = [invalid] * zones, [invalid] * zones, [0] * zones
    first = max((earliest - grid.origin_s) // step + 1, 0)
    last = min((latest - grid.origin_s) // step, (grid.slots * step - d) // step)
    if last >= first:
        scores = _window_scores(grid, d, first, last - first + 1)
        at = scores.argmin(axis=1)  # the first (earliest) minimum
        for z, (slot, value) in enumerate(zip(at.tolist(), scores[np.arange(zones), at].tolist(), strict=True)):
            if allowed[z] and value < invalid:
                later_all[z], later_pen[z], later_slot[z] = value, value + pen[z] * d, first + slot

    # Within a zone "now" wins ties (earliest start); across zones the lowest penalised score wins, then the
    # earliest start, then the home zone, then the lower index.
    use_later = [later_pen[z] < now_pen[z] for z in range(zones)]
    score = [later_pen[z] if use_later[z] else now_pen[z] for z in range(zones)]
    start = [grid.origin_s + later_slot[z] * step if use_later[z] else earliest for z in range(zones)]
    best_score = min(score)
    best_start = min(start[z] for z in range(zones) if score[z] == best_score)
    tied = [z for z in range(zones) if score[z] == best_score and start[z] == best_start]
    best_zone = home if home in tied else tied[0]
    raw_score = later_all[best_zone] if use_later[best_zone] else now_all[best_zone]

    now_home, now_home_pen = now_all[home], now_pen[home]
    found = best_score < invalid
    is_now = found and best_start == earliest and best_zone == home
    worth = now_home >= invalid or (now_home_pen - best_score) / float(max(abs(now_home_pen), 1)) >= gain
    at_risk = latest < earliest
    status = SHIFTED
    if is_now or (found and best_start == earliest):
        status = BEST_NOW
    if found and not is_now and not worth:
        status = NOT_WORTH_WAITING
    if not found:
        status = NO_SIGNAL
    if at_risk:
        status = DEADLINE_AT_RISK
    # Falling back means "now, home zone": the deadline is never traded for a signal we do not trust.
    fallback = not found or (not is_now and not worth) or at_risk
    zone_out, start_out = (home, earliest) if fallback else (best_zone, best_start)
    score_out = now_home if fallback else raw_score

    def one(value: int | bool) -> Any:
        return np.array([value], np.bool_ if isinstance(value, bool) else np.int64)

    return WindowChoice(
        one(zone_out), one(start_out), one(score_out), one(now_home), one(start_out == earliest), one(status)
    )


def _later_windows(
    grid: ObjectiveGrid,
    duration: IntArray,
    first: IntArray,
    last: IntArray,
    has_range: BoolArray,
    out_score: IntArray,
    out_slot: IntArray,
) -> None:
    """Fill the best boundary-start window per (job, zone), grouped by distinct duration."""
    jobs_with_range = np.flatnonzero(has_range)
    order = jobs_with_range[np.argsort(duration[jobs_with_range], kind="stable")]
    sorted_d = duration[order]
    splits = np.flatnonzero(np.diff(sorted_d)) + 1
    for group in np.split(order, splits):
        d = int(duration[group[0]])
        lo = first[group]
        hi = last[group]
        base = int(lo.min())
        top = int(hi.max())
        scores = _window_scores(grid, d, base, top - base + 1)
        if np.all(lo == base):
            slot, value = _prefix_argmin(scores, hi - base)
        elif group.size <= _SMALL_GROUP:
            slot, value = _direct_argmin(scores, lo - base, hi - base)
        else:
            slot, value = _sparse_argmin(scores, lo - base, hi - base)
        out_score[group] = value
        out_slot[group] = slot + base


def _window_scores(grid: ObjectiveGrid, duration_s: int, base: int, count: int) -> IntArray:
    """Integrals of windows of ``duration_s`` starting at slots ``base .. base + count - 1`` (``(Z, count)``)."""
    q, r = divmod(duration_s, grid.step_s)
    starts = np.arange(base, base + count)
    whole = (grid.prefix[:, starts + q] - grid.prefix[:, starts]) * grid.step_s
    end_slot = starts + q + (1 if r else 0)
    bad = grid.bad_prefix[:, end_slot] - grid.bad_prefix[:, starts]
    if r:
        whole = whole + grid.units[:, starts + q] * r
    result: IntArray = np.where(bad == 0, whole, INVALID)
    return result


# Below this many jobs per duration a slice argmin per job is cheaper than building a sparse table.
_SMALL_GROUP = 4


def _direct_argmin(scores: IntArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """Earliest argmin of ``scores[z, lo[j] .. hi[j]]`` by one slice per job (``(J, Z)``)."""
    slots = np.empty((lo.size, scores.shape[0]), np.int64)
    for j, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        slots[j] = np.argmin(scores[:, a : b + 1], axis=1) + a  # argmin returns the first (earliest) minimum
    return slots, np.take_along_axis(scores, slots.T, axis=1).T


def _prefix_argmin(scores: IntArray, upto: IntArray) -> tuple[IntArray, IntArray]:
    """Earliest argmin of ``scores[z, 0 .. upto[j]]`` for every job ``j`` and zone ``z`` (``(J, Z)``)."""
    width = int(upto.max()) + 1
    window = scores[:, :width]
    running = np.minimum.accumulate(window, axis=1)
    is_new = np.ones_like(window, dtype=bool)
    is_new[:, 1:] = window[:, 1:] < running[:, :-1]
    positions = np.where(is_new, np.arange(width)[None, :], 0)
    argmin = np.maximum.accumulate(positions, axis=1)
    return argmin[:, upto].T, running[:, upto].T


def _sparse_argmin(scores: IntArray, lo: IntArray, hi: IntArray) -> tuple[IntArray, IntArray]:
    """Earliest argmin of ``scores[z, lo[j] .. hi[j]]`` (``(J, Z)``) with a sparse table: O(1) per query."""
    zones, width = scores.shape
    levels = max(1, int(np.max(hi - lo) + 1).bit_length())
    values = np.full((levels, zones, width), INVALID, np.int64)
    index = np.zeros((levels, zones, width), np.int64)
    values[0] = scores
    index[0] = np.arange(width)[None, :]
    for k in range(1, levels):
        half = 1 << (k - 1)
        span = width - (1 << k) + 1
        if span <= 0:
            break
        left_v, right_v = values[k - 1, :, :span], values[k - 1, :, half : half + span]
        take_right = right_v < left_v  # strict: the left (earlier) half wins ties
        values[k, :, :span] = np.where(take_right, right_v, left_v)
        index[k, :, :span] = np.where(take_right, index[k - 1, :, half : half + span], index[k - 1, :, :span])
    length = hi - lo + 1
    k = np.floor(np.log2(length)).astype(np.int64)
    # Guard float log2 at exact powers of two.
    k = np.where((1 << (k + 1)) <= length, k + 1, k)
    right_start = hi - (1 << k) + 1
    z = np.arange(zones)[None, :]
    lv = values[k[:, None], z, lo[:, None]]
    rv = values[k[:, None], z, right_start[:, None]]
    li = index[k[:, None], z, lo[:, None]]
    ri = index[k[:, None], z, right_start[:, None]]
    take_right = rv < lv
    return np.where(take_right, ri, li), np.where(take_right, rv, lv)


@dataclass(frozen=True)
class ChunkChoice:
    """Answer of :func:`cheapest_chunks`.

    :param cost: total cost (units x s) of the chosen slots and resumes.
    :param runs: ``(start_slot, end_slot)`` pairs, end exclusive, in time order.
    """

    cost: int
    runs: tuple[tuple[int, int], ...]


def cheapest_chunks(
    slot_costs: npt.ArrayLike,
    *,
    need: int,
    min_chunk: int = 1,
    resume_costs: npt.ArrayLike | None = None,
    final_costs: npt.ArrayLike | None = None,
    running: int = 0,
    started: bool = False,
) -> ChunkChoice | None:
    """The cheapest set of ``need`` slots in runs of at least ``min_chunk`` slots, with a cost per resume.

    A dynamic programme over ``(slot, slots done, current run length capped at min_chunk)``; greedy
    picking of the cheapest slots is not enough once runs have a minimum length. Earlier slots win ties
    (each slot carries a negligible cost growing with its index).

    :param slot_costs: cost of running each slot (``>= INVALID`` = cannot run).
    :param need: number of slots of work to place (positive).
    :param min_chunk: minimum run length in slots (capped at ``need`` + ``running``).
    :param resume_costs: extra cost of (re)starting a run at each slot; the job's first run is free.
    :param final_costs: cost of each slot when it is the last, partly used slot of the work (default: its full cost).
    :param running: length of the run in progress at slot 0 (0 = idle); continuing it costs no resume.
    :param started: whether the job has run before (so even its next run is a resume).
    :return: the choice, or ``None`` when no feasible schedule exists.
    """
    costs = np.asarray(slot_costs, dtype=np.int64)
    count = costs.shape[0]
    if need <= 0:
        return ChunkChoice(0, ())
    resume = np.zeros(count, np.int64) if resume_costs is None else np.asarray(resume_costs, np.int64)
    final = costs if final_costs is None else np.asarray(final_costs, np.int64)
    chunk = max(1, min(min_chunk, need + running))
    width = need + 1
    inf = INVALID
    idle = np.full(width, inf, np.int64)
    run = np.full((chunk, width), inf, np.int64)  # run[l - 1]: in a run of length l (chunk-1 means >= chunk)
    if running > 0:
        run[min(running, chunk) - 1, 0] = 0
        if running >= chunk:
            idle[0] = 0
    else:
        idle[0] = 0
    from_full = np.zeros((count, width), bool)  # idle came from a finished run (not from idle)
    full_from_full = np.zeros((count, width), bool)  # the >= chunk state came from itself (not chunk-1)
    value = np.empty(need, np.int64)  # cost of slot i when it is the k-th slot of work (k = 1 .. need)
    for i in range(count):
        # Tie-break towards earlier slots: + i units x s per slot, far below one slot's cost.
        value[:] = costs[i] + i if costs[i] < inf else inf
        value[-1] = final[i] + i if final[i] < inf else inf
        new_run = np.full_like(run, inf)
        if value.min() < inf:
            start_cost = np.full(need, resume[i], np.int64)
            if not started and running == 0:
                start_cost[0] = 0  # the very first run is not a resume
            if chunk == 1:
                restart = idle[:-1] + start_cost
                keep = run[0, :-1]
                full_from_full[i, 1:] = keep < restart
                new_run[0, 1:] = np.minimum(restart, keep) + value
            else:
                new_run[0, 1:] = idle[:-1] + start_cost + value
                if chunk > 2:
                    new_run[1 : chunk - 1, 1:] = run[: chunk - 2, :-1] + value
                grow, keep = run[chunk - 2, :-1], run[chunk - 1, :-1]
                full_from_full[i, 1:] = keep < grow
                new_run[chunk - 1, 1:] = np.minimum(grow, keep) + value
            np.minimum(new_run, inf, out=new_run)
        finished = run[chunk - 1]
        from_full[i] = finished < idle
        idle = np.minimum(idle, finished)
        run = new_run
    end_idle, end_full = idle[need], run[chunk - 1, need]
    if min(end_idle, end_full) >= inf:
        return None
    # Walk back through the recorded choices to recover the runs.
    state = -1 if end_idle <= end_full else chunk - 1  # -1 = idle, else run length index
    k = need
    selected = np.zeros(count, bool)
    last_slot = -1
    for i in range(count - 1, -1, -1):
        if state == -1:
            if from_full[i, k]:
                state = chunk - 1
            continue  # slot i not run
        selected[i] = True
        if k == need:
            last_slot = i
        if state == 0:
            state = -1 if chunk > 1 or not full_from_full[i, k] else 0
        elif state == chunk - 1:
            state = chunk - 1 if full_from_full[i, k] else chunk - 2
        else:
            state -= 1
        k -= 1
    runs = _runs(selected)
    work = int(costs[selected].sum()) - int(costs[last_slot]) + int(final[last_slot])
    return ChunkChoice(work + _resume_total(runs, resume, running=running, started=started), runs)


def _resume_total(runs: tuple[tuple[int, int], ...], resume: IntArray, *, running: int, started: bool) -> int:
    """Resume costs of ``runs``: every run is a resume except the job's first run or the continued one."""
    total = 0
    for number, (start, _) in enumerate(runs):
        continues = running > 0 and start == 0
        first_ever = number == 0 and not started and running == 0
        if not (continues or first_ever):
            total += int(resume[start])
    return total


def _runs(selected: BoolArray) -> tuple[tuple[int, int], ...]:
    """Contiguous ``True`` stretches as ``(start, end)`` pairs."""
    padded = np.concatenate(([False], selected, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))
