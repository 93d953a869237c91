"""Calibrate a provider's forecast on its own track record, and blend it with the own forecaster.

Provider forecasts are biased in ways that matter to a planner: the GB Carbon Intensity API ran about
20 gCO2/kWh low in 2023, more at long leads, so a planner that trusts it sees dips that never come. This
module learns, per lead band, how a provider's past vintages compared with the actuals that followed, and
uses that to

1. correct the provider forecast by its recent (robust, shrunk) bias;
2. blend it with the own forecaster by recent skill (inverse mean squared error, each forecast at its own lead:
   a vintage issued hours ago against an own forecast issued at the decision);
3. state the blended outlook's expected absolute error per lead: the ``spread`` the optimism credit uses.

Only what was known at the decision time ``now`` is read: vintages issued by ``now`` and actuals whose
interval had ended by ``now``, within a trailing window (:attr:`CalibrationSettings.window_days`). With
little evidence the bias is shrunk towards 0 and the blend towards the provider; with none the provider is
used as is (:meth:`ForecastCalibration.identity`). Pure numpy; nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

import numpy as np
import numpy.typing as npt

from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster, SeasonalModel
from airflow_provider_gridaware.planning.grid import resample_series, to_seconds
from airflow_provider_gridaware.signals.models import SignalSeries

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DAY_S = 86_400
HOUR_S = 3600


@dataclass(frozen=True)
class CalibrationSettings:
    """How a provider's track record is learnt.

    :param window_days: trailing window of vintages (by issue time) the statistics use. Two weeks hold
        enough weather regimes to estimate a bias and are short enough to follow a provider's model changes.
    :param shrink_days: ``k`` in the shrinkage ``n / (n + k)``, ``n`` being the number of distinct UTC days
        with vintages in the window (errors within a day are strongly correlated, so days, not points, are
        the unit of evidence). With 3 days, one day of history applies a quarter of the measured bias and
        two weeks about 80 %.
    :param band_edges_h: edges (hours of lead from the vintage's issue time) of the lead bands; statistics
        are kept per band and interpolated linearly between band centres, so a correction has no steps.
    """

    window_days: float = 14.0
    shrink_days: float = 3.0
    band_edges_h: tuple[float, ...] = (1.0, 3.0, 6.0, 12.0, 24.0, 36.0)

    def __post_init__(self) -> None:
        if self.window_days <= 0 or self.shrink_days < 0:
            raise ValueError(
                f"window_days must be > 0 and shrink_days >= 0, got {self.window_days} and {self.shrink_days}"
            )
        edges = np.asarray(self.band_edges_h, np.float64)
        if edges.size and (edges[0] <= 0 or np.any(np.diff(edges) <= 0)):
            raise ValueError(f"band_edges_h must be positive and increasing, got {self.band_edges_h}")

    def centres_h(self) -> FloatArray:
        """The lead (hours) each band's statistics are placed at for interpolation."""
        edges = np.concatenate(([0.0], np.asarray(self.band_edges_h, np.float64)))
        centres = (edges[:-1] + edges[1:]) / 2
        last = edges[-1] + (edges[-1] - edges[-2]) / 2 if edges.size > 1 else 1.0
        result: FloatArray = np.concatenate((centres, [last]))
        return result

    def band_of(self, lead_s: npt.ArrayLike) -> IntArray:
        """The band index of each lead (seconds).

        :param lead_s: leads in seconds.
        """
        hours = np.asarray(lead_s, np.float64) / HOUR_S
        bands: IntArray = np.searchsorted(np.asarray(self.band_edges_h, np.float64), hours, side="right").astype(
            np.int64
        )
        return bands


@dataclass(frozen=True)
class ForecastSamples:
    """Past (vintage, target) pairs, flat: what the provider and the own forecaster said, and what came.

    :param issued_s: issue time of the vintage each target belongs to (epoch seconds).
    :param start_s: target interval start.
    :param end_s: target interval end.
    :param provider: the provider's forecast for the target.
    :param actual: the actual value (NaN = unknown).
    :param own: the own forecaster's forecast for the target, issued at the same time (NaN = none).
    :param known_s: when the actual was complete (default ``end_s``; later when the target is finer than
        the actuals' own intervals).
    """

    issued_s: IntArray
    start_s: IntArray
    end_s: IntArray
    provider: FloatArray
    actual: FloatArray
    own: FloatArray
    known_s: IntArray | None = None

    def __post_init__(self) -> None:
        arrays = (self.issued_s, self.start_s, self.end_s, self.provider, self.actual, self.own, self.known)
        sizes = {a.shape for a in arrays}
        if len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise ValueError(f"forecast samples need 1-d arrays of one length, got shapes {sorted(sizes)}")

    @cached_property
    def issue_sorted(self) -> bool:
        """Whether the samples are in issue order (then a window is found by bisection)."""
        return bool(np.all(self.issued_s[1:] >= self.issued_s[:-1]))

    def issued_within(self, after_s: float, until_s: float) -> ForecastSamples:
        """The samples of vintages issued in ``(after_s, until_s]``.

        :param after_s: exclusive lower bound (epoch seconds).
        :param until_s: inclusive upper bound.
        """
        if self.issue_sorted:
            # Integer bounds: a float query would convert the whole array on every call.
            bounds = np.array([np.floor(after_s), np.floor(until_s)], np.int64)
            lo, hi = np.searchsorted(self.issued_s, bounds, side="right")
            index: slice | npt.NDArray[np.bool_] = slice(int(lo), int(hi))
        else:
            index = (self.issued_s > after_s) & (self.issued_s <= until_s)
        return ForecastSamples(
            *(
                getattr(self, name)[index]
                for name in ("issued_s", "start_s", "end_s", "provider", "actual", "own", "known")
            )
        )

    @property
    def known(self) -> IntArray:
        """When each target's actual was complete."""
        return self.end_s if self.known_s is None else self.known_s

    @classmethod
    def empty(cls) -> ForecastSamples:
        """No samples."""
        ints, floats = np.zeros(0, np.int64), np.zeros(0)
        return cls(ints, ints, ints, floats, floats, floats, ints)

    @classmethod
    def concat(cls, parts: Sequence[ForecastSamples]) -> ForecastSamples:
        """Samples of several vintages in one table.

        :param parts: the pieces.
        """
        if not parts:
            return cls.empty()
        return cls(
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("issued_s", "start_s", "end_s", "provider", "actual", "own", "known")
            )
        )


@dataclass(frozen=True)
class ForecastCalibration:
    """What a provider's recent track record says, per lead band (``B`` bands).

    :param bias: ``(B,)`` shrunk median of provider minus actual (subtracted from the provider).
    :param provider_weight: ``(B,)`` share of the corrected provider in the blend (the rest is the own forecast).
    :param error: ``(B,)`` expected absolute error of the blended outlook (NaN = unknown).
    :param evidence_days: ``(B,)`` distinct issue days behind each band.
    :param samples: ``(B,)`` number of (vintage, target) pairs behind each band.
    :param settings: how it was learnt.
    :param source: the provider (for the reason text).
    :param zone: the zone.
    :param unit: the values' unit (for the reason text), e.g. ``gCO2eq/kWh``.
    :param provider_mse: ``(B,)`` mean squared error of the corrected provider, per band of its lead (NaN = unknown).
    :param own_mse: ``(B,)`` the own forecaster's, per band of *its* lead (issued at the vintages' issue times).
    :param error_correlation: ``(B,)`` correlation of the two errors on the same targets.
    """

    bias: FloatArray
    provider_weight: FloatArray
    error: FloatArray
    evidence_days: FloatArray
    samples: IntArray
    settings: CalibrationSettings = field(default_factory=CalibrationSettings)
    source: str = "provider"
    zone: str = ""
    unit: str = ""
    provider_mse: FloatArray | None = None
    own_mse: FloatArray | None = None
    error_correlation: FloatArray | None = None

    @classmethod
    def identity(
        cls, settings: CalibrationSettings | None = None, *, source: str = "provider", zone: str = ""
    ) -> ForecastCalibration:
        """No history: no correction, the provider as is, error unknown (the caller keeps its own spread).

        :param settings: band layout.
        :param source: the provider.
        :param zone: the zone.
        """
        settings = settings or CalibrationSettings()
        bands = len(settings.band_edges_h) + 1
        return cls(
            np.zeros(bands),
            np.ones(bands),
            np.full(bands, np.nan),
            np.zeros(bands),
            np.zeros(bands, np.int64),
            settings,
            source,
            zone,
        )

    @property
    def has_history(self) -> bool:
        """Whether any past vintage could be compared with actuals."""
        return bool(self.samples.sum() > 0)

    def _at(self, stat: FloatArray, lead_s: npt.ArrayLike) -> FloatArray:
        """``stat`` interpolated linearly in the lead between band centres (flat beyond the ends)."""
        lead_h = np.asarray(lead_s, np.float64) / HOUR_S
        known = np.isfinite(stat)
        if not known.any():
            return np.full(lead_h.shape, np.nan)
        centres = self.settings.centres_h()
        result: FloatArray = np.interp(lead_h, centres[known], stat[known])
        return result

    def bias_at(self, lead_s: npt.ArrayLike) -> FloatArray:
        """The correction subtracted from the provider at each lead (seconds from the vintage's issue).

        :param lead_s: leads in seconds.
        """
        return self._at(self.bias, lead_s)

    def weight_at(self, lead_s: npt.ArrayLike, own_lead_s: npt.ArrayLike | None = None) -> FloatArray:
        """The provider's share of the blend at each lead.

        Without ``own_lead_s`` both forecasts are taken as issued together (the weight learnt per band). With
        it, each is weighed by its skill at its own lead: a vintage issued hours ago is blended with an own
        forecast issued now, whose first hours are far better than the same forecast issued with the vintage.
        The learnt weight moves by the change in the inverse-MSE share; at equal leads it is unchanged.

        :param lead_s: leads in seconds from the vintage's issue.
        :param own_lead_s: leads in seconds from the own forecast's issue (the decision time), or ``None``.
        """
        matched = self._matched(lead_s, own_lead_s)
        if matched is None:
            return self._at(self.provider_weight, lead_s)
        weight, _, _, _ = matched
        return weight

    def _matched(
        self, lead_s: npt.ArrayLike, own_lead_s: npt.ArrayLike | None
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray] | None:
        """Lead-matched weight, and the provider's, the own forecast's (at its lead) and the same-lead own MSE."""
        if own_lead_s is None or self.provider_mse is None or self.own_mse is None:
            return None
        learnt = self._at(self.provider_weight, lead_s)
        mse_p = self._at(self.provider_mse, lead_s)
        mse_same = self._at(self.own_mse, lead_s)
        mse_now = self._at(self.own_mse, np.maximum(np.asarray(own_lead_s, np.float64), 0.0))
        days = np.where(self.samples > 0, self.evidence_days, np.nan)
        shrink = self._at(days / (days + self.settings.shrink_days), lead_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = shrink * (mse_now / (mse_p + mse_now) - mse_same / (mse_p + mse_same))
        weight: FloatArray = np.where(np.isfinite(shift), np.clip(learnt + shift, 0.0, 1.0), learnt)
        return weight, mse_p, mse_now, mse_same

    def error_at(self, lead_s: npt.ArrayLike, own_lead_s: npt.ArrayLike | None = None) -> FloatArray:
        """Expected absolute error of :meth:`apply` at each lead (NaN when there is no history).

        With ``own_lead_s`` the error learnt at the vintage's lead is scaled by how much the lead-matched blend
        (:meth:`weight_at`) changes the blend's squared error, from both forecasts' errors and their
        correlation; at equal leads it is unchanged.

        :param lead_s: leads in seconds from the vintage's issue.
        :param own_lead_s: leads in seconds from the own forecast's issue, or ``None``.
        """
        learnt = self._at(self.error, lead_s)
        matched = self._matched(lead_s, own_lead_s)
        if matched is None or self.error_correlation is None:
            return learnt
        weight, mse_p, mse_now, mse_same = matched
        rho = self._at(self.error_correlation, lead_s)
        same = _blend_mse(self._at(self.provider_weight, lead_s), mse_p, mse_same, rho)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.sqrt(_blend_mse(weight, mse_p, mse_now, rho) / same)
        scaled: FloatArray = np.where(np.isfinite(scale), learnt * scale, learnt)
        return scaled

    def apply(
        self,
        lead_s: npt.ArrayLike,
        provider: npt.ArrayLike,
        own: npt.ArrayLike | None = None,
        own_lead_s: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """The corrected, blended outlook and its expected absolute error per target.

        Where the own forecast is missing (NaN) the corrected provider stands alone; where the provider is
        missing the result is NaN (the caller fills it as before).

        :param lead_s: each target's lead from the vintage's issue time (seconds).
        :param provider: the provider's values.
        :param own: the own forecaster's values for the same targets, or ``None``.
        :param own_lead_s: each target's lead from the own forecast's issue (see :meth:`weight_at`).
        """
        p = np.asarray(provider, np.float64)
        corrected = p - self.bias_at(lead_s)
        if own is not None:
            o = np.asarray(own, np.float64)
            weight = self.weight_at(lead_s, own_lead_s)
            corrected = np.where(np.isfinite(o), weight * corrected + (1 - weight) * o, corrected)
        return corrected, self.spread(lead_s, p, own, own_lead_s)

    def spread(
        self,
        lead_s: npt.ArrayLike,
        provider: npt.ArrayLike,
        own: npt.ArrayLike | None = None,
        own_lead_s: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """The expected absolute error of :meth:`apply`'s outlook alone (same arguments), NaN where the provider is.

        :param lead_s: each target's lead from the vintage's issue time (seconds).
        :param provider: the provider's values.
        :param own: the own forecaster's values for the same targets, or ``None``.
        :param own_lead_s: each target's lead from the own forecast's issue.
        """
        error = self.error_at(lead_s)
        if own is not None and own_lead_s is not None:
            # Only where there is an own forecast to blend with is the error the lead-matched blend's.
            error = np.where(np.isfinite(np.asarray(own, np.float64)), self.error_at(lead_s, own_lead_s), error)
        result: FloatArray = np.where(np.isfinite(np.asarray(provider, np.float64)), error, np.nan)
        return result

    def reason(self, lead_h: float = 12.0) -> str:
        """The calibration in plain words, for a decision's reason.

        :param lead_h: the lead the blend share is quoted at.
        """
        if not self.has_history:
            return f"{self.source} forecast used as published (no past forecasts to check it against yet)"
        lead_s = lead_h * HOUR_S
        correction = -float(self.bias_at(lead_s))
        weight = float(self.weight_at(lead_s))
        days = round(min(float(self.evidence_days.max()), self.settings.window_days))
        if abs(correction) < 0.5:
            text = f"{self.source} forecast uncorrected: no consistent bias over the last {days} days"
        else:
            direction = "low" if correction > 0 else "high"
            unit = f" {self.unit}" if self.unit else ""
            text = (
                f"{self.source} forecast corrected {correction:+.0f}{unit} at {lead_h:g} h: "
                f"it ran {direction} over the last {days} days"
            )
        own = 1 - weight
        if own > 0.005:
            text += f" (blend {weight:.0%} provider / {own:.0%} own at {lead_h:g} h)"
        return text


def calibrate(
    samples: ForecastSamples,
    now_s: int,
    settings: CalibrationSettings | None = None,
    *,
    source: str = "provider",
    zone: str = "",
    unit: str = "",
) -> ForecastCalibration:
    """Learn bias, blend weights and error per lead band from what was known at ``now_s``.

    A sample counts if its vintage was issued at or before ``now_s`` and within the trailing window, and its
    actual was complete (:attr:`ForecastSamples.known`) by ``now_s`` and finite.

    :param samples: past (vintage, target) pairs (any may lie in the future: they are ignored).
    :param now_s: the decision time, epoch seconds.
    :param settings: window, shrinkage and bands.
    :param source: the provider (for the reason text).
    :param zone: the zone.
    :param unit: the values' unit.
    """
    settings = settings or CalibrationSettings()
    samples = samples.issued_within(now_s - settings.window_days * DAY_S, now_s)
    usable = (samples.known <= now_s) & np.isfinite(samples.actual) & np.isfinite(samples.provider)
    if not usable.any():
        return ForecastCalibration.identity(settings, source=source, zone=zone)
    issued = samples.issued_s[usable]
    lead = (samples.start_s[usable] + samples.end_s[usable]) / 2 - issued
    band = settings.band_of(lead)
    provider_error = samples.provider[usable] - samples.actual[usable]
    own_error = samples.own[usable] - samples.actual[usable]
    day = issued // DAY_S
    bands = len(settings.band_edges_h) + 1
    bias = np.zeros(bands)
    weight = np.ones(bands)
    error = np.full(bands, np.nan)
    evidence = np.zeros(bands)
    count = np.zeros(bands, np.int64)
    mse_provider = np.full(bands, np.nan)
    mse_own = np.full(bands, np.nan)
    correlation = np.full(bands, np.nan)
    for b in range(bands):
        mask = band == b
        if not mask.any():
            continue
        e_p = provider_error[mask]
        days = float(np.unique(day[mask]).size)
        shrink = days / (days + settings.shrink_days)
        evidence[b], count[b] = days, int(mask.sum())
        bias[b] = shrink * float(np.median(e_p))
        corrected = e_p - bias[b]
        e_o = own_error[mask]
        paired = np.isfinite(e_o)
        if paired.any():
            mse_p = float(np.mean(corrected[paired] ** 2))
            mse_o = float(np.mean(e_o[paired] ** 2))
            mse_provider[b], mse_own[b] = mse_p, mse_o
            if mse_p > 0 and mse_o > 0:
                correlation[b] = float(np.mean(corrected[paired] * e_o[paired])) / np.sqrt(mse_p * mse_o)
            # Inverse-MSE weights on the same targets; shrunk towards the provider alone with little evidence.
            raw = mse_o / (mse_p + mse_o) if mse_p + mse_o > 0 else 1.0
            weight[b] = shrink * raw + (1 - shrink)
            blended = np.where(paired, weight[b] * corrected + (1 - weight[b]) * e_o, corrected)
        else:
            blended = corrected
        error[b] = float(np.mean(np.abs(blended)))
    # Bands without evidence take their neighbours' values through the interpolation, not zeros.
    empty = count == 0
    bias[empty] = np.nan
    weight[empty] = np.nan
    return ForecastCalibration(
        bias,
        weight,
        error,
        evidence,
        count,
        settings,
        source,
        zone,
        unit,
        provider_mse=mse_provider,
        own_mse=mse_own,
        error_correlation=correlation,
    )


def _blend_mse(weight: FloatArray, mse_p: FloatArray, mse_o: FloatArray, rho: FloatArray) -> FloatArray:
    """Mean squared error of ``w x provider + (1 - w) x own`` from each one's and their correlation."""
    cross = 2 * weight * (1 - weight) * rho * np.sqrt(mse_p * mse_o)
    result: FloatArray = weight**2 * mse_p + (1 - weight) ** 2 * mse_o + cross
    return result


def samples_from_series(
    vintages: Sequence[SignalSeries],
    actuals: SignalSeries,
    *,
    step_s: int = 1800,
    own: Sequence[FloatArray | None] | None = None,
) -> ForecastSamples:
    """Samples from archived forecast vintages and the actuals, on a regular grid of ``step_s``.

    :param vintages: past forecasts of one source and zone (each with ``issued_at``).
    :param actuals: the actual series of the zone.
    :param step_s: grid step the comparison is made on (the provider's resolution is a good choice).
    :param own: per vintage, the own forecaster's values on the vintage's grid (see
        :func:`own_forecasts_at`), or ``None``.
    """
    actual_starts = np.array([to_seconds(p.start) for p in actuals.points], np.int64)
    actual_ends = np.array([to_seconds(p.end) for p in actuals.points], np.int64)
    parts = []
    for index, vintage in enumerate(vintages):
        if vintage.issued_at is None:
            raise ValueError(f"vintage {index} of {vintage.source}/{vintage.zone} has no issued_at")
        if not len(vintage):
            continue
        first = to_seconds(vintage.points[0].start)
        first -= first % step_s
        slots = -(-(to_seconds(vintage.points[-1].end) - first) // step_s)
        provider = resample_series(vintage, origin_s=first, step_s=step_s, slots=slots)
        actual = resample_series(actuals, origin_s=first, step_s=step_s, slots=slots)
        starts = first + step_s * np.arange(slots, dtype=np.int64)
        mine = own[index] if own is not None else None
        own_values = np.full(slots, np.nan) if mine is None else np.asarray(mine, np.float64)[:slots]
        if own_values.size < slots:
            own_values = np.concatenate((own_values, np.full(slots - own_values.size, np.nan)))
        parts.append(
            ForecastSamples(
                np.full(slots, to_seconds(vintage.issued_at), np.int64),
                starts,
                starts + step_s,
                provider,
                actual,
                own_values,
                known_times(actual_starts, actual_ends, starts + step_s),
            )
        )
    return ForecastSamples.concat(parts)


def known_times(point_starts: IntArray, point_ends: IntArray, slot_ends: IntArray) -> IntArray:
    """When each slot's actual was complete: its end, or later if a longer source point covers it.

    :param point_starts: the actuals' point starts (sorted, non-overlapping).
    :param point_ends: their ends.
    :param slot_ends: the slots' ends.
    """
    covering = np.searchsorted(point_starts, slot_ends, side="left") - 1
    covered_until = np.where(covering >= 0, point_ends[np.maximum(covering, 0)], 0)
    known: IntArray = np.maximum(slot_ends, covered_until)
    return known


def own_forecasts_at(
    vintages: Sequence[SignalSeries],
    actuals: SignalSeries,
    forecaster: SeasonalForecaster,
    *,
    step_s: int = 1800,
) -> list[FloatArray | None]:
    """What the own forecaster would have said at each vintage's issue time, on the vintages' grids.

    Fitted once per UTC day (like the backtest's refits) on the actuals that had ended by the issue time.

    :param vintages: the provider's past forecasts.
    :param actuals: the zone's actuals.
    :param forecaster: the own forecaster.
    :param step_s: the sample grid of :func:`samples_from_series` (divides the forecaster step or is a multiple).
    """
    if not len(actuals):
        return [None] * len(vintages)
    fc_step = forecaster.step_s
    first_actual = to_seconds(actuals.points[0].start)
    origin = first_actual - first_actual % DAY_S
    last = max(to_seconds(v.points[-1].end) for v in vintages if len(v)) if any(len(v) for v in vintages) else origin
    coarse = resample_series(actuals, origin_s=origin, step_s=fc_step, slots=max(1, -(-(last - origin) // fc_step)))
    starts = np.array([to_seconds(p.start) for p in actuals.points], np.int64)
    ends = np.array([to_seconds(p.end) for p in actuals.points], np.int64)
    models: dict[int, SeasonalModel] = {}
    result: list[FloatArray | None] = []
    for vintage in vintages:
        if vintage.issued_at is None or not len(vintage):
            result.append(None)
            continue
        issued = to_seconds(vintage.issued_at)
        cutoff = (issued - origin) // fc_step
        if cutoff <= 0:
            result.append(None)
            continue
        # Only actuals that had ended by the issue time (a point still running is not known).
        known = coarse[:cutoff].copy()
        pending = ends > issued
        if pending.any():
            known[max(0, (int(starts[pending].min()) - origin) // fc_step) :] = np.nan
        day = (issued - origin) // DAY_S
        model = models.get(day)
        if model is None:
            model = forecaster.fit(known, min(cutoff, (day * DAY_S) // fc_step) or cutoff)
            models[day] = model
        first = to_seconds(vintage.points[0].start)
        first -= first % step_s
        slots = -(-(to_seconds(vintage.points[-1].end) - first) // step_s)
        leads = -(-(first + slots * step_s - origin) // fc_step) - cutoff
        predicted = model.predict(known, cutoff, max(leads, 1))
        times = first + step_s * np.arange(slots)
        index = (times - origin) // fc_step - cutoff
        result.append(np.where(index >= 0, predicted[np.clip(index, 0, predicted.size - 1)], np.nan))
    return result


def calibrate_series(
    vintages: Sequence[SignalSeries],
    actuals: SignalSeries,
    *,
    now: datetime,
    settings: CalibrationSettings | None = None,
    forecaster: SeasonalForecaster | None = None,
    step_s: int = 1800,
) -> ForecastCalibration:
    """The live path: a calibration from archived vintages and actuals of one source and zone.

    :param vintages: past forecasts (any issue time; those after ``now`` are ignored).
    :param actuals: the zone's actuals (points that had not ended by ``now`` are ignored).
    :param now: the decision time (aware).
    :param settings: window, shrinkage and bands.
    :param forecaster: the own forecaster to blend with (``None``: correct the provider only).
    :param step_s: comparison grid step.
    """
    now_s = to_seconds(now)
    window_s = (settings or CalibrationSettings()).window_days * DAY_S
    kept = [v for v in vintages if v.issued_at is not None and now_s - window_s < to_seconds(v.issued_at) <= now_s]
    source = kept[0].source if kept else (vintages[0].source if vintages else "provider")
    zone = kept[0].zone if kept else actuals.zone
    if not kept:
        return ForecastCalibration.identity(settings, source=source, zone=zone)
    known = actuals.model_copy(update={"points": tuple(p for p in actuals.points if to_seconds(p.end) <= now_s)})
    own = own_forecasts_at(kept, known, forecaster, step_s=step_s) if forecaster is not None else None
    samples = samples_from_series(kept, known, step_s=step_s, own=own)
    return calibrate(samples, now_s, settings, source=source, zone=zone, unit=kept[0].unit)
