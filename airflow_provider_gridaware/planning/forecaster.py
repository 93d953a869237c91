"""Forecasts from past actuals only, for sources without a forecast and beyond a forecast's horizon.

:class:`SeasonalForecaster` is a direct multi-horizon linear model: for every lead time ``h`` it fits
``y(t + h) / level(t)`` on a few cheap features known at ``t`` (the latest value, the same time of day
yesterday and last week, the 7-day profile at that time of day, the 7-day profile "now" (so the model
learns how fast today's anomaly fades), the last 24 h mean and the last hour's trend), by ridge least
squares over the last ``training_days`` of history. Dividing by the recent level lets one fit serve
through seasons; the ridge pulls towards "profile plus a fading anomaly", which is what the model falls
back to with little data. Everything is deterministic, NaN-tolerant (features fall back along a chain)
and costs a few milliseconds per fit.

:func:`repeat_last_day` is the naive baseline the forecaster must beat ("tomorrow looks like today").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400
_LOOKBACK_DAYS = 16  # week lag + 7-day profile one day back, with a day to spare
FEATURES = ("intercept", "latest", "day_lag", "week_lag", "profile", "mean_24h", "profile_now", "trend_1h")
_F = len(FEATURES)


def forward_fill(values: npt.ArrayLike) -> FloatArray:
    """NaN replaced by the last finite value before it (leading NaN stay NaN).

    :param values: 1-d series.
    """
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    index = np.where(finite, np.arange(y.size), -1)
    np.maximum.accumulate(index, out=index)
    filled = np.where(index >= 0, y[np.maximum(index, 0)], np.nan)
    return filled


def repeat_last_day(y: npt.ArrayLike, cutoff: int, leads: int, *, step_s: int) -> FloatArray:
    """The naive forecast: slot ``cutoff + h`` repeats the same time of day on the last known day.

    :param y: series on a regular grid (NaN = missing); only ``y[:cutoff]`` is read.
    :param cutoff: index of the first unknown slot.
    :param leads: number of slots to forecast.
    :param step_s: grid step in seconds (must divide a day).
    """
    day = _slots_per_day(step_s)
    known = forward_fill(np.asarray(y, np.float64)[:cutoff])
    h = np.arange(leads)
    source = cutoff + h - day * (h // day + 1)
    out = np.full(leads, np.nan)
    ok = source >= 0
    out[ok] = known[source[ok]]
    return out


def _slots_per_day(step_s: int) -> int:
    if step_s <= 0 or DAY_S % step_s:
        raise ValueError(f"forecaster step must divide a day, got {step_s} s")
    return DAY_S // step_s


@dataclass(frozen=True)
class SeasonalModel:
    """A fitted :class:`SeasonalForecaster`: one coefficient vector per lead.

    :param coef: ``(B, H, F)`` coefficients over :data:`FEATURES` per block of issue time of day and lead.
    :param step_s: grid step in seconds.
    :param nonnegative: clip forecasts at 0 (carbon intensity cannot be negative; prices can).
    :param fitted: whether the coefficients came from data (``False``: the prior only).
    :param error: ``(B, H)`` mean absolute error per lead on the training data, relative to the level.
    """

    coef: FloatArray
    step_s: int
    nonnegative: bool
    fitted: bool
    error: FloatArray | None = None

    @property
    def horizon(self) -> int:
        return int(self.coef.shape[1])

    def block(self, cutoff: int) -> int:
        """The time-of-day block of a forecast issued at slot ``cutoff`` (index 0 is a UTC midnight).

        :param cutoff: index of the first unknown slot.
        """
        day = _slots_per_day(self.step_s)
        return int((cutoff % day) * self.coef.shape[0] // day)

    def predict(self, y: npt.ArrayLike, cutoff: int, leads: int) -> FloatArray:
        """Forecast slots ``cutoff .. cutoff + leads - 1`` from ``y[:cutoff]``.

        Leads beyond the fitted horizon use the last lead's coefficients. With no finite history the
        forecast is all NaN (unusable), never invented.

        :param y: series on the model's grid (NaN = missing).
        :param cutoff: index of the first unknown slot.
        :param leads: number of slots to forecast.
        """
        if leads <= 0:
            return np.zeros(0)
        # Features look back at most 15 days; a whole-day offset keeps the time of day.
        day = _slots_per_day(self.step_s)
        offset = max(0, cutoff - _LOOKBACK_DAYS * day) // day * day
        known = forward_fill(np.asarray(y, np.float64)[offset:cutoff])
        if known.size == 0 or not np.isfinite(known[-1]):
            return np.full(leads, np.nan)
        state = _Features(known, self.step_s)
        h = np.arange(leads)
        x, level = state.at(np.array([cutoff - offset]), h)
        coef = self.coef[self.block(cutoff), np.minimum(h, self.horizon - 1)]
        forecast: FloatArray = np.einsum("hf,hf->h", x[0], coef) * level[0]
        if self.nonnegative:
            np.maximum(forecast, 0.0, out=forecast)
        return forecast


class _Features:
    """Feature extraction on a forward-filled known series (all look-ups strictly before the cutoff)."""

    def __init__(self, known: FloatArray, step_s: int) -> None:
        self.y = known
        self.step_s = step_s
        self.day = _slots_per_day(step_s)
        self.hour = max(1, 3600 // step_s)
        n = known.size
        finite = np.isfinite(known)
        values = np.where(finite, known, 0.0)
        # Same-time-of-day mean over the last 7 days ending at each index (inclusive).
        total = np.zeros(n)
        count = np.zeros(n)
        for k in range(7):
            shift = k * self.day
            if shift >= n:
                break
            total[shift:] += values[: n - shift]
            count[shift:] += finite[: n - shift]
        with np.errstate(invalid="ignore", divide="ignore"):
            self.profile = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        cum = np.concatenate(([0.0], np.cumsum(values)))
        cnt = np.concatenate(([0.0], np.cumsum(finite)))
        self.cum, self.cnt = cum, cnt

    def _mean_before(self, cutoff: IntArray, length: int) -> FloatArray:
        start = np.maximum(cutoff - length, 0)
        number = self.cnt[cutoff] - self.cnt[start]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(number > 0, (self.cum[cutoff] - self.cum[start]) / np.maximum(number, 1), np.nan)

    def _take(self, index: IntArray) -> FloatArray:
        ok = (index >= 0) & (index < self.y.size)
        return np.where(ok, self.y[np.clip(index, 0, self.y.size - 1)], np.nan)

    def _take_profile(self, index: IntArray) -> FloatArray:
        ok = (index >= 0) & (index < self.y.size)
        return np.where(ok, self.profile[np.clip(index, 0, self.y.size - 1)], np.nan)

    def at(self, cutoffs: IntArray, leads: IntArray) -> tuple[FloatArray, FloatArray]:
        """Features ``(R, H, F)`` for forecasts issued at ``cutoffs`` for ``leads``, and the level ``(R,)``."""
        c = cutoffs[:, None]
        h = leads[None, :]
        target = c + h
        day, week = self.day, 7 * self.day
        latest = self._take(cutoffs - 1)
        level = self._mean_before(cutoffs, week)
        level = np.where(np.isfinite(level) & (np.abs(level) > 1e-9), np.abs(level), np.nan)
        level = np.where(np.isfinite(level), level, np.maximum(np.abs(latest), 1e-9))
        day_src = target - day * (h // day + 1)
        day_lag = self._take(day_src)
        week_lag = self._take(target - week * (h // week + 1))
        profile = self._take_profile(day_src)
        mean_24h = self._mean_before(cutoffs, day)
        profile_now = self._take_profile(cutoffs - 1 - day)
        trend = latest - self._take(cutoffs - 1 - self.hour)
        shape = target.shape
        latest_b = np.broadcast_to(latest[:, None], shape)
        # Fallback chain so a missing feature degrades to a simpler forecast instead of a NaN.
        day_lag = np.where(np.isfinite(day_lag), day_lag, latest_b)
        profile = np.where(np.isfinite(profile), profile, day_lag)
        week_lag = np.where(np.isfinite(week_lag), week_lag, profile)
        mean_24h = np.where(np.isfinite(mean_24h), mean_24h, latest)
        profile_now = np.where(np.isfinite(profile_now), profile_now, latest)
        trend = np.where(np.isfinite(trend), trend, 0.0)
        scale = level[:, None]
        x = np.empty((*shape, _F))
        x[..., 0] = 1.0
        x[..., 1] = latest_b / scale
        x[..., 2] = day_lag / scale
        x[..., 3] = week_lag / scale
        x[..., 4] = profile / scale
        x[..., 5] = np.broadcast_to((mean_24h / level)[:, None], shape)
        x[..., 6] = np.broadcast_to((profile_now / level)[:, None], shape)
        x[..., 7] = np.broadcast_to((trend / level)[:, None], shape)
        return x, level


@dataclass(frozen=True)
class SeasonalForecaster:
    """Fits :class:`SeasonalModel` s on recent history.

    :param step_s: grid step in seconds (must divide a day; 15 min is a good compromise for 5-60 min data).
    :param horizon_slots: number of leads to fit.
    :param training_days: how much recent history a fit uses.
    :param ridge: strength of the pull towards the prior, relative to the number of rows.
    :param anomaly_hours: e-folding time of today's anomaly in the prior.
    :param nonnegative: clip forecasts at 0.
    """

    step_s: int = 900
    horizon_slots: int = 4 * 54
    # Twelve weeks hold more weather regimes than six, so the per-lead fade of an anomaly is estimated on more
    # than one spell of weather: on Jan-Jun 2020 the error beyond 6 h fell (DE, GB) or stayed within 0.1 % of
    # the level (FR). See docs/planner.md.
    training_days: int = 84
    ridge: float = 0.005
    anomaly_hours: float = 6.0
    nonnegative: bool = True
    half_life_days: float = 0.0
    blocks: int = 1

    def prior(self) -> FloatArray:
        """Profile plus today's anomaly fading with ``anomaly_hours``: ``(B, H, F)`` coefficients."""
        hours = np.arange(self.horizon_slots) * self.step_s / 3600.0
        fade = np.exp(-hours / self.anomaly_hours)
        coef = np.zeros((self.horizon_slots, _F))
        coef[:, 4] = 1.0
        coef[:, 1] = fade
        coef[:, 6] = -fade
        return np.broadcast_to(coef, (self.blocks, *coef.shape)).copy()

    def fit(self, y: npt.ArrayLike, cutoff: int) -> SeasonalModel:
        """Fit on ``y[:cutoff]`` (only the last ``training_days``); the prior if there is too little data.

        :param y: series on this forecaster's grid (NaN = missing).
        :param cutoff: index of the first unknown slot.
        """
        prior = self.prior()
        day = _slots_per_day(self.step_s)
        # Only the training window and the features' look-back are read; a whole-day offset keeps the time of day.
        offset = max(0, cutoff - (self.training_days + _LOOKBACK_DAYS) * day) // day * day
        raw = np.asarray(y, np.float64)[offset:cutoff]
        known = forward_fill(raw)
        cutoff -= offset
        first = max(0, cutoff - self.training_days * day)
        stride = max(1, 3600 // self.step_s)  # hourly issue times are plenty and keep the fit cheap
        cutoffs = np.arange(cutoff - 1, first + day, -stride)[::-1]
        if cutoffs.size < 24 or not np.isfinite(known[-1] if known.size else np.nan):
            return SeasonalModel(prior, self.step_s, self.nonnegative, fitted=False)
        state = _Features(known, self.step_s)
        leads = np.arange(self.horizon_slots)
        x, level = state.at(cutoffs, leads)
        target_index = cutoffs[:, None] + leads[None, :]
        inside = target_index < cutoff
        target = np.where(inside, raw[np.minimum(target_index, cutoff - 1)], np.nan) / level[:, None]
        weight = (inside & np.isfinite(target) & np.all(np.isfinite(x), axis=2)).astype(np.float64)
        if self.half_life_days > 0:
            # Recent rows count more, so the fit follows seasonal drift instead of lagging behind it.
            age_days = (cutoff - cutoffs) / day
            weight = weight * (0.5 ** (age_days / self.half_life_days))[:, None]
        target = np.where(weight > 0, target, 0.0)
        x = np.where(weight[..., None] > 0, x, 0.0)
        block_of_row = (cutoffs % day) * self.blocks // day
        coef = prior.copy()
        error = np.zeros((self.blocks, self.horizon_slots))
        for b in range(self.blocks):
            mask = block_of_row == b
            coef[b], error[b] = _ridge_fit(x[mask], target[mask], weight[mask], prior[b], self.ridge)
        return SeasonalModel(coef, self.step_s, self.nonnegative, fitted=True, error=error)

    def uncertainty(self, model: SeasonalModel, leads: int) -> FloatArray:
        """Mean absolute forecast error per lead relative to the level (training residuals; 0 if unknown).

        :param model: a fitted model.
        :param leads: number of leads.
        """
        if model.error is None:
            return np.zeros(leads)
        mean_error = model.error.mean(axis=0)
        result: FloatArray = mean_error[np.minimum(np.arange(leads), mean_error.size - 1)]
        return result


def _ridge_fit(
    x: FloatArray, target: FloatArray, weight: FloatArray, prior: FloatArray, ridge: float
) -> tuple[FloatArray, FloatArray]:
    """Per-lead weighted ridge regression towards ``prior``; leads with too few rows keep the prior."""
    rows = weight.sum(axis=0)
    lam = ridge * np.maximum(rows, 1.0)
    # Lead-major layout so the per-lead normal equations are one batched matrix product (BLAS).
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))  # (H, R, F)
    xw = xt * weight.T[..., None]
    gram = np.matmul(xw.transpose(0, 2, 1), xt) + lam[:, None, None] * np.eye(_F)[None, :, :]
    rhs = np.matmul(xw.transpose(0, 2, 1), target.T[..., None])[..., 0] + lam[:, None] * prior
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    coef = np.where((rows >= 12)[:, None], coef, prior)
    residual = np.abs(np.matmul(xt, coef[..., None])[..., 0].T - target) * weight
    error = residual.sum(axis=0) / np.maximum(rows, 1.0)
    return coef, error
