"""What a policy knows at a decision time in a backtest, and what its runs really cost.

A :class:`Replay` holds, per zone and signal (carbon, price), the actual series on one regular grid and
optional forecast vintages. At decision time ``t`` a policy may see:

* actuals of the slots that ended by ``t`` (never the current slot);
* the newest forecast vintage issued at or before ``t``;
* for day-ahead prices, the prices published by ``t`` (12:00 UTC for the next day);
* beyond that, its own forecaster, fitted only on the actuals it could see.

Forecast vintages are calibrated by default (:mod:`~airflow_provider_gridaware.planning.calibration`): at
decision time the provider's past vintages are compared with the actuals that had ended by then, and the
vintage in use is corrected by its recent bias, blended with the own forecaster by recent skill, and given
the blend's measured error as its spread. ``ReplayConfig(calibrate=False)`` uses vintages as published.

Only the accounting (:meth:`Replay.integral`) and the oracle read the future. Gaps in the actuals stay
gaps for the policies, and are interpolated for accounting only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from airflow_provider_gridaware.planning.calibration import (
    CalibrationSettings,
    ForecastCalibration,
    ForecastSamples,
    calibrate,
    known_times,
)
from airflow_provider_gridaware.planning.forecaster import SeasonalForecaster, SeasonalModel, repeat_last_day
from airflow_provider_gridaware.planning.grid import ends_from_starts, resample
from airflow_provider_gridaware.planning.objective import Objective, typical_level

if TYPE_CHECKING:
    from airflow_provider_gridaware.planning.planner import PlanningGrid

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: Units of the backtest's signal files (the file format's documented units).
CARBON_UNIT = "gCO2eq/kWh"
PRICE_UNIT = "currency/MWh"

DAY_S = 86_400
FORECASTERS = ("seasonal", "repeat-day", "none")
# Day-ahead auctions publish the next day's prices around noon CET; 12:00 UTC is safely after.
DAY_AHEAD_PUBLISHED_S = 12 * 3600


@dataclass(frozen=True)
class ReplayConfig:
    """How the replay grid and the policies' own forecaster are set up.

    :param step_s: planning grid step (seconds; divides the forecaster step).
    :param forecaster_step_s: the forecaster's grid step (divides a day).
    :param forecaster: ``seasonal`` (ours), ``repeat-day`` (naive baseline) or ``none`` (no own forecast).
    :param training_days: history per forecaster fit.
    :param refit_s: how often the forecaster is refitted.
    :param horizon_s: longest lead a policy may ask for.
    :param cache_size: outlooks kept in memory (jobs re-planned at the same time share them).
    :param calibrate: correct forecast vintages by their recent track record and blend them with the own
        forecaster (``False``: use them as published, with the own forecaster's spread).
    :param calibration: how the track record is learnt.
    """

    step_s: int = 300
    forecaster_step_s: int = 900
    forecaster: str = "seasonal"
    training_days: int = SeasonalForecaster.training_days  # the product's default, so the backtest fits what ships
    refit_s: int = DAY_S
    horizon_s: int = 56 * 3600
    cache_size: int = 4096
    calibrate: bool = True
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    def __post_init__(self) -> None:
        if self.step_s <= 0 or self.forecaster_step_s % self.step_s or DAY_S % self.forecaster_step_s:
            raise ValueError(
                f"step {self.step_s} s must divide the forecaster step {self.forecaster_step_s} s, which must divide a day"
            )
        if self.forecaster not in FORECASTERS:
            raise ValueError(f"unknown forecaster {self.forecaster!r}; expected one of {FORECASTERS}")


@dataclass(frozen=True)
class PointSeries:
    """Raw points as read from a file: starts, ends (epoch seconds) and values.

    :param starts: point starts.
    :param ends: point ends.
    :param values: point values.
    """

    starts: IntArray
    ends: IntArray
    values: FloatArray

    @classmethod
    def from_starts(cls, starts: npt.ArrayLike, values: npt.ArrayLike) -> PointSeries:
        """Points given by start only: each lasts until the next (a hole stays a hole).

        :param starts: epoch seconds (any order).
        :param values: the values.
        """
        s = np.asarray(starts, np.int64)
        v = np.asarray(values, np.float64)
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
        keep = np.ones(s.size, bool)
        keep[1:] = s[1:] != s[:-1]  # a repeated time keeps its first value
        s, v = s[keep], v[keep]
        return cls(s, ends_from_starts(s), v)


@dataclass
class _Track:
    """One signal of one zone on the replay grid, with the forecaster's caches."""

    seen: FloatArray  # actuals as policies see them (NaN = gap)
    truth: FloatArray  # gap-filled actuals, for accounting only
    truth_prefix: FloatArray
    coarse: FloatArray  # actuals on the forecaster grid
    vintage_issued: list[int]
    vintages: list[tuple[int, FloatArray]]  # (first slot, values on the replay grid)
    day_ahead: bool
    nonnegative: bool
    known_at: IntArray  # per slot, when its actual was complete (the end of the source point covering it)
    models: dict[int, SeasonalModel] = field(default_factory=dict)
    predictions: OrderedDict[tuple[int, int], FloatArray] = field(default_factory=OrderedDict)
    samples: ForecastSamples | None = None  # every vintage against the actuals, built on first use
    calibrations: OrderedDict[int, ForecastCalibration] = field(default_factory=OrderedDict)  # by hour


class Replay:
    """The actual (and forecast) world a backtest replays.

    :param carbon: per zone, the actual carbon series.
    :param price: per zone, the actual price series (day-ahead: visible once published).
    :param carbon_vintages: per zone, forecast vintages ``(issued_at_s, points)`` of carbon.
    :param objective: the weights of the normalised signals.
    :param config: grid and forecaster settings.
    """

    def __init__(
        self,
        *,
        carbon: Mapping[str, PointSeries],
        price: Mapping[str, PointSeries] | None = None,
        carbon_vintages: Mapping[str, Sequence[tuple[int, PointSeries]]] | None = None,
        objective: Objective | None = None,
        config: ReplayConfig | None = None,
    ) -> None:
        self.config = config or ReplayConfig()
        self.objective = objective or Objective()
        price = price or {}
        carbon_vintages = carbon_vintages or {}
        if not carbon and not price:
            raise ValueError("a replay needs at least one actual series")
        if self.objective.price_weight > 0 and not price:
            raise ValueError("the objective weights price but no price series was given")
        if self.objective.carbon_weight > 0 and not carbon:
            raise ValueError("the objective weights carbon but no carbon series was given")
        step = self.config.step_s
        all_series = [*carbon.values(), *price.values()]
        first = min(int(s.starts[0]) for s in all_series if s.starts.size)
        last = max(int(s.ends[-1]) for s in all_series if s.ends.size)
        self.origin_s = first - first % DAY_S
        self.data_end_s = last
        self.slots = -(-(last + self.config.horizon_s - self.origin_s) // step)
        self.zones = tuple(sorted(set(carbon) | set(price)))
        self._tracks: dict[tuple[str, str], _Track] = {}
        for zone, series in carbon.items():
            self._tracks[(zone, "carbon")] = self._track(series, carbon_vintages.get(zone, ()), False, True)
        for zone, series in price.items():
            self._tracks[(zone, "price")] = self._track(series, (), True, False)
        self.scales = {
            kind: typical_level(
                np.concatenate([t.truth[: 7 * DAY_S // step] for (_, k), t in self._tracks.items() if k == kind])
            )
            for kind in ("carbon", "price")
            if any(k == kind for _, k in self._tracks)
        }
        self._outlooks: OrderedDict[tuple[str, int, int], FloatArray] = OrderedDict()
        self._forecaster = SeasonalForecaster(
            step_s=self.config.forecaster_step_s,
            horizon_slots=-(-self.config.horizon_s // self.config.forecaster_step_s) + 1,
            training_days=self.config.training_days,
        )

    # -- set-up ----------------------------------------------------------------------------------
    def _track(
        self, series: PointSeries, vintages: Iterable[tuple[int, PointSeries]], day_ahead: bool, nonnegative: bool
    ) -> _Track:
        step, slots = self.config.step_s, self.slots
        seen = resample(series.starts, series.ends, series.values, origin_s=self.origin_s, step_s=step, slots=slots)
        seen[(self.origin_s + step * np.arange(slots)) >= self.data_end_s] = np.nan
        truth = _fill_gaps(seen)
        truth_prefix = np.concatenate(([0.0], np.cumsum(truth)))
        coarse_step = self.config.forecaster_step_s
        coarse = resample(
            series.starts,
            series.ends,
            series.values,
            origin_s=self.origin_s,
            step_s=coarse_step,
            slots=slots * step // coarse_step,
        )
        ordered = sorted(vintages, key=lambda v: v[0])
        resampled = []
        for _issued, points in ordered:
            if points.starts.size == 0:
                resampled.append((0, np.zeros(0)))
                continue
            first = max(0, (int(points.starts[0]) - self.origin_s) // step)
            last = min(slots, -(-(int(points.ends[-1]) - self.origin_s) // step))
            values = resample(
                points.starts,
                points.ends,
                points.values,
                origin_s=self.origin_s + first * step,
                step_s=step,
                slots=max(0, last - first),
            )
            resampled.append((first, values))
        # A slot finer than the data is known only when the whole source point covering it has ended.
        known_at = known_times(series.starts, series.ends, self.origin_s + step * np.arange(1, slots + 1))
        return _Track(
            seen, truth, truth_prefix, coarse, [v[0] for v in ordered], resampled, day_ahead, nonnegative, known_at
        )

    # -- what policies may see -------------------------------------------------------------------
    def slot_of(self, t_s: int) -> int:
        """The replay-grid slot containing ``t_s``.

        :param t_s: epoch seconds.
        """
        return (t_s - self.origin_s) // self.config.step_s

    def slot_start(self, slot: int) -> int:
        """Epoch seconds where ``slot`` starts.

        :param slot: slot index.
        """
        return self.origin_s + slot * self.config.step_s

    def covers(self, zone: str, start_s: int, end_s: int) -> bool:
        """Whether the actuals of ``zone`` span ``[start_s, end_s]`` (jobs outside are skipped).

        :param zone: the zone.
        :param start_s: epoch seconds.
        :param end_s: epoch seconds.
        """
        return any(z == zone for z, _ in self._tracks) and self.origin_s <= start_s and end_s <= self.data_end_s

    def latest_actual(self, zone: str, t_s: int) -> float:
        """The objective of the last slot that ended by ``t_s`` (NaN if unknown).

        :param zone: the zone.
        :param t_s: the decision time.
        """
        c = self.slot_of(t_s)
        return float(self._combine(zone, lambda track: track.seen[c - 1 : c])[0]) if c > 0 else float("nan")

    def trailing_actuals(self, zone: str, t_s: int, seconds: int) -> FloatArray:
        """The objective of the slots that ended by ``t_s`` within the last ``seconds``.

        :param zone: the zone.
        :param t_s: the decision time.
        :param seconds: how far back.
        """
        c = self.slot_of(t_s)
        first = max(0, c - seconds // self.config.step_s)
        return self._combine(zone, lambda track: track.seen[first:c])

    def outlook(self, zone: str, t_s: int, slots: int) -> FloatArray:
        """The normalised objective a policy expects at ``t_s`` for ``slots`` slots from the slot of ``t_s``.

        :param zone: the zone.
        :param t_s: the decision time.
        :param slots: how many slots (at most the configured horizon).
        """
        c = self.slot_of(t_s)
        vintage = self._vintage_key(zone, t_s)
        key = (zone, c, vintage)
        cached = self._outlooks.get(key)
        if cached is None or cached.size < slots:
            width = max(slots, self.config.horizon_s // self.config.step_s)
            cached = self._combine(zone, lambda track: self._track_outlook(track, t_s, c, width))
            self._outlooks[key] = cached
            if len(self._outlooks) > self.config.cache_size:
                self._outlooks.popitem(last=False)
        else:
            self._outlooks.move_to_end(key)
        return cached[:slots]

    def truth(self, zone: str, first_slot: int, slots: int) -> FloatArray:
        """The actual normalised objective (gap-filled): for the oracle only.

        :param zone: the zone.
        :param first_slot: first slot.
        :param slots: how many.
        """
        return self._combine(zone, lambda track: track.truth[first_slot : first_slot + slots])

    def spread(self, zone: str, t_s: int, slots: int) -> FloatArray:
        """The expected absolute forecast error of :meth:`outlook`, per slot, in the same normalised units.

        It grows with the lead (from the forecaster's own training residuals) and is 0 where values are
        already known (published day-ahead prices).

        :param zone: the zone.
        :param t_s: the decision time.
        :param slots: how many slots.
        """
        c = self.slot_of(t_s)
        return self._combine(zone, lambda track: self._track_spread(track, t_s, c, slots), absolute=True)

    def _track_spread(self, track: _Track, t_s: int, c: int, width: int) -> FloatArray:
        spread = self._own_spread(track, t_s, c, width)
        calibrated = self._vintage_calibration(track, t_s, c, width)
        if calibrated is not None:
            # Where the calibrated provider forecast is used, its measured error replaces the own residuals.
            calibration, lead_s, provider = calibrated
            provider_spread = calibration.spread(lead_s, provider, *self._blend_inputs(track, t_s, c, width))
            np.copyto(spread, provider_spread, where=np.isfinite(provider) & np.isfinite(provider_spread))
        return spread

    def _own_spread(self, track: _Track, t_s: int, c: int, width: int) -> FloatArray:
        step = self.config.step_s
        leads_s = self.slot_start(c) + step * np.arange(width) - t_s + step // 2
        coarse_leads = np.maximum(leads_s // self.config.forecaster_step_s, 0)
        model = track.models.get((t_s - self.origin_s) // self.config.refit_s)
        if model is None or model.error is None:
            return np.zeros(width)  # no error model (naive forecaster, too little history): no credit
        per_lead = model.error[model.block((t_s - self.origin_s) // self.config.forecaster_step_s)]
        relative = per_lead[np.minimum(coarse_leads, per_lead.size - 1)]
        first = max(0, c - 7 * DAY_S // step)
        recent = track.seen[first:c]
        recent = recent[np.isfinite(recent)]
        level = float(np.mean(np.abs(recent))) if recent.size else 0.0
        spread = relative * level
        if track.day_ahead:
            day = (t_s - t_s % DAY_S) + DAY_S
            published_until = day + DAY_S if t_s % DAY_S >= DAY_AHEAD_PUBLISHED_S else day
            known = min(max(self.slot_of(published_until) - c, 0), width)
            spread[:known] = 0.0
        result: FloatArray = spread
        return result

    def planning_grid(self, zones: Sequence[str], t_s: int, until_s: int) -> PlanningGrid:
        """What a live trigger would have on its planning grid at ``t_s``: the outlook and its expected error
        per zone and signal (no future), from the slot of ``t_s`` to ``until_s``.

        :param zones: the job's candidate zones (a zone without data is an unusable row).
        :param t_s: the decision time.
        :param until_s: the last time the job may need.
        """
        from airflow_provider_gridaware.planning.planner import PlanningGrid

        c = self.slot_of(t_s)
        slots = max(1, self.slot_of(until_s) - c + 2)
        rows: dict[str, tuple[FloatArray, FloatArray] | None] = {}
        for kind, weight in (("carbon", self.objective.carbon_weight), ("price", self.objective.price_weight)):
            if not weight or not any(k == kind for _, k in self._tracks):
                rows[kind] = None
                continue
            values, spreads = [], []
            for zone in zones:
                track = self._tracks.get((zone, kind))
                if track is None:
                    values.append(np.full(slots, np.nan))
                    spreads.append(np.zeros(slots))
                    continue
                values.append(self._track_outlook(track, t_s, c, slots))
                spreads.append(self._track_spread(track, t_s, c, slots))
            rows[kind] = (np.stack(values), np.stack(spreads))
        carbon, price = rows["carbon"], rows["price"]
        return PlanningGrid(
            origin_s=self.slot_start(c),
            step_s=self.config.step_s,
            slots=slots,
            zones=tuple(zones),
            carbon=None if carbon is None else carbon[0],
            price=None if price is None else price[0],
            carbon_spread=None if carbon is None else carbon[1],
            price_spread=None if price is None else price[1],
            carbon_unit=None if carbon is None else CARBON_UNIT,
            price_unit=None if price is None else PRICE_UNIT,
        )

    def _vintage_key(self, zone: str, t_s: int) -> int:
        track = self._tracks.get((zone, "carbon"))
        if track is None or not track.vintage_issued:
            return -1
        return bisect_right(track.vintage_issued, t_s) - 1

    def _combine(self, zone: str, get: Callable[[_Track], FloatArray], *, absolute: bool = False) -> FloatArray:
        carbon = self._tracks.get((zone, "carbon"))
        price = self._tracks.get((zone, "price"))
        c_values = get(carbon) if carbon is not None and self.objective.carbon_weight else None
        p_values = get(price) if price is not None and self.objective.price_weight else None
        reference = c_values if c_values is not None else p_values
        shape = (0,) if reference is None else np.shape(reference)
        return self.objective.combine(
            c_values,
            p_values,
            carbon_scale=self.scales.get("carbon", 1.0),
            price_scale=self.scales.get("price", 1.0),
            shape=shape,
        )

    def _track_outlook(self, track: _Track, t_s: int, c: int, width: int) -> FloatArray:
        calibrated = self._vintage_calibration(track, t_s, c, width)
        if calibrated is None:
            out = self._vintage_values(track, t_s, c, width)
        else:
            calibration, lead_s, provider = calibrated
            out, _ = calibration.apply(lead_s, provider, *self._blend_inputs(track, t_s, c, width))
        end = min(c + width, self.slots)
        if track.day_ahead:
            day = (t_s - t_s % DAY_S) + DAY_S
            published_until = day + DAY_S if t_s % DAY_S >= DAY_AHEAD_PUBLISHED_S else day
            known_end = min(self.slot_of(published_until), end)
            if known_end > c:
                part = out[: known_end - c]
                np.copyto(part, track.seen[c:known_end], where=np.isnan(part))
        if np.isnan(out).any() and self.config.forecaster != "none":
            forecast = self._own_forecast(track, t_s, c, width)
            np.copyto(out, forecast, where=np.isnan(out))
        return out

    def _blend_inputs(self, track: _Track, t_s: int, c: int, width: int) -> tuple[FloatArray | None, FloatArray | None]:
        """The own forecast issued at ``t_s`` a vintage is blended with, and each slot's lead from ``t_s``."""
        if self.config.forecaster == "none":
            return None, None
        step = self.config.step_s
        own_lead_s = (self.slot_start(c) + step * np.arange(width) + step // 2 - t_s).astype(np.float64)
        return self._own_forecast(track, t_s, c, width), own_lead_s

    def _vintage_values(self, track: _Track, t_s: int, c: int, width: int) -> FloatArray:
        """The newest vintage issued by ``t_s`` as published, on slots ``c .. c + width`` (NaN = not covered)."""
        out = np.full(width, np.nan)
        end = min(c + width, self.slots)
        if track.vintages:
            index = bisect_right(track.vintage_issued, t_s) - 1
            if index >= 0:
                first, values = track.vintages[index]
                lo, hi = max(first, c), min(first + values.size, end)
                if hi > lo:
                    out[lo - c : hi - c] = values[lo - first : hi - first]
        return out

    def _vintage_calibration(
        self, track: _Track, t_s: int, c: int, width: int
    ) -> tuple[ForecastCalibration, FloatArray, FloatArray] | None:
        """The calibration, each slot's lead from the vintage's issue and the vintage as published.

        ``None`` when not calibrating, when the track has no vintage yet, or when no past vintage could be
        checked against actuals yet (then the vintage is used as published, as without calibration).
        """
        if not self.config.calibrate or not track.vintages:
            return None
        index = bisect_right(track.vintage_issued, t_s) - 1
        if index < 0:
            return None
        calibration = self._calibration(track, c)
        if not calibration.has_history:
            return None
        step = self.config.step_s
        lead_s = self.slot_start(c) + step * np.arange(width) + step // 2 - track.vintage_issued[index]
        return calibration, lead_s.astype(np.float64), self._vintage_values(track, t_s, c, width)

    def _calibration(self, track: _Track, c: int) -> ForecastCalibration:
        """The track's calibration as of the whole hour at or before slot ``c``'s start, cached.

        A track record changes slowly; learning it once an hour (from what had ended by then, never later
        than the decision) costs a quarter of learning it per 15-minute slot.

        :param track: a track with vintages.
        :param c: the decision's slot.
        """
        hour = (self.slot_start(c) - self.origin_s) // 3600
        cached = track.calibrations.get(hour)
        if cached is None:
            if track.samples is None:
                track.samples = self._vintage_samples(track)
            cached = calibrate(track.samples, self.origin_s + hour * 3600, self.config.calibration)
            track.calibrations[hour] = cached
            if len(track.calibrations) > 256:
                track.calibrations.popitem(last=False)
        else:
            track.calibrations.move_to_end(hour)
        return cached

    def _vintage_samples(self, track: _Track) -> ForecastSamples:
        """Every vintage's targets with the actuals and what the own forecaster said at the vintage's issue."""
        step = self.config.step_s
        parts = []
        for issued, (first, values) in zip(track.vintage_issued, track.vintages, strict=True):
            if values.size == 0:
                continue
            slots = np.arange(first, first + values.size, dtype=np.int64)
            own = np.full(values.size, np.nan)
            c_issued = self.slot_of(issued)
            if self.config.forecaster != "none" and 0 <= c_issued < first + values.size:
                predicted = self._own_forecast(track, issued, c_issued, first + values.size - c_issued)
                lo = max(first, c_issued)
                own[lo - first :] = predicted[lo - c_issued :]
            starts = self.origin_s + step * slots
            issued_at = np.full(values.size, issued, np.int64)
            ends = starts + step
            parts.append(
                ForecastSamples(issued_at, starts, ends, values, track.seen[slots], own, track.known_at[slots])
            )
        return ForecastSamples.concat(parts)

    def _own_forecast(self, track: _Track, t_s: int, c: int, width: int) -> FloatArray:
        ratio = self.config.forecaster_step_s // self.config.step_s
        coarse_cut = (t_s - self.origin_s) // self.config.forecaster_step_s
        first_coarse = c // ratio
        leads = -(-(c + width) // ratio) - coarse_cut
        if self.config.forecaster == "repeat-day":
            key = (coarse_cut, -1)
            predicted = track.predictions.get(key)
            if predicted is None or predicted.size < leads:
                predicted = repeat_last_day(track.coarse, coarse_cut, leads, step_s=self.config.forecaster_step_s)
        else:
            refit = (t_s - self.origin_s) // self.config.refit_s
            key = (coarse_cut, refit)
            predicted = track.predictions.get(key)
            # A cached forecast made for a shorter width is extended, never padded with unknowns.
            if predicted is None or predicted.size < leads:
                model = track.models.get(refit)
                if model is None:
                    fit_cut = (refit * self.config.refit_s) // self.config.forecaster_step_s
                    model = self._fit(track, fit_cut)
                    # A few kB per model: keep them all, so every policy replays with the same fits at no cost.
                    track.models[refit] = model
                predicted = model.predict(track.coarse, coarse_cut, leads)
        if predicted.size < leads:
            predicted = np.concatenate((predicted, np.full(leads - predicted.size, np.nan)))
        track.predictions[key] = predicted
        if len(track.predictions) > 256:
            track.predictions.popitem(last=False)
        fine = np.repeat(predicted[first_coarse - coarse_cut :], ratio)
        offset = c - first_coarse * ratio
        result = fine[offset : offset + width]
        if result.size < width:
            result = np.concatenate((result, np.full(width - result.size, np.nan)))
        return result

    def _fit(self, track: _Track, cutoff: int) -> SeasonalModel:
        forecaster = self._forecaster
        if not track.nonnegative:
            forecaster = SeasonalForecaster(
                step_s=forecaster.step_s,
                horizon_slots=forecaster.horizon_slots,
                training_days=forecaster.training_days,
                nonnegative=False,
            )
        return forecaster.fit(track.coarse, max(cutoff, 0))

    # -- accounting ------------------------------------------------------------------------------
    def integral(self, zone: str, kind: str, start_s: int, end_s: int) -> float:
        """The actual signal integrated over ``[start_s, end_s)``, in value x hours (gap-filled).

        :param zone: the zone.
        :param kind: ``carbon`` or ``price``.
        :param start_s: epoch seconds.
        :param end_s: epoch seconds.
        """
        track = self._tracks.get((zone, kind))
        if track is None:
            return float("nan")
        return (self._running(track, end_s) - self._running(track, start_s)) / 3600.0

    def has(self, zone: str, kind: str) -> bool:
        """Whether the replay has ``kind`` actuals for ``zone``.

        :param zone: the zone.
        :param kind: ``carbon`` or ``price``.
        """
        return (zone, kind) in self._tracks

    def _running(self, track: _Track, t_s: int) -> float:
        step = self.config.step_s
        offset = min(max(t_s - self.origin_s, 0), self.slots * step)
        k = min(offset // step, self.slots - 1)
        return float(track.truth_prefix[k] * step + track.truth[k] * (offset - k * step))


def _fill_gaps(values: FloatArray) -> FloatArray:
    """Linear interpolation over NaN (held flat at the edges); all-NaN becomes zeros."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    index = np.arange(values.size)
    filled: FloatArray = np.interp(index, index[finite], values[finite])
    return filled
