"""Replay source: grid signals read from CSV traces instead of an API (no HTTP, no Airflow).

The connection's Host names a CSV file or a folder of CSVs (``FILE[:ZONE]`` as on the simulator's command
line); empty means the bundled GB national trace (zone ``GB``). A forecast is the next ``horizon_hours``
of the trace issued at the current trace step, with deterministic lead-growing noise
(``forecast_error``); actuals are the settled points before now.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from airflow_provider_gridaware.signals.errors import NoSignalDataError, SourceConfigError, UnknownUnitError
from airflow_provider_gridaware.signals.models import SignalSeries, build_series, ensure_utc, format_time
from airflow_provider_gridaware.signals.units import G_PER_KWH, CarbonMetric, SeriesType, SignalKind, canonical_unit
from airflow_provider_gridaware.sources.common import floor_time
from airflow_provider_gridaware.sources.flow import SignalQuery
from airflow_provider_gridaware.sources.settings import SourceSettings
from airflow_provider_gridaware.traces.forecast import ForecastNoise
from airflow_provider_gridaware.traces.timeline import Anchor, ZoneReplay
from airflow_provider_gridaware.traces.trace import (
    SOURCE,
    TraceSet,
    TraceSpec,
    load_traces,
    trace_files,
)

DEFAULT_HORIZON_HOURS = 48.0
DEFAULT_FORECAST_ERROR = 0.05
DEFAULT_ACTUALS_WINDOW = timedelta(hours=24)
_KINDS = {SignalKind.CARBON_INTENSITY.value: SignalKind.CARBON_INTENSITY, SignalKind.PRICE.value: SignalKind.PRICE}


@dataclass(frozen=True)
class ReplaySettings:
    """What a ``gridaware_replay`` connection says, checked.

    :param trace: the file or folder to read, ``None`` for the bundled GB trace.
    :param kind: ``carbon_intensity`` or ``price``.
    :param metric: ``average`` or ``marginal`` (carbon only).
    :param unit: the unit of the trace's values (converted to the canonical unit).
    :param currency: ISO 4217 code (price only).
    :param anchor: ``now`` (shift to the present, looping) or ``fixed`` (trace times).
    :param horizon: how far ahead a forecast reaches.
    :param forecast_error: forecast error at 24 h as a fraction of the zone's typical value (0 = perfect).
    :param seed: seed of the forecast error paths.
    """

    trace: TraceSpec | None
    kind: SignalKind = SignalKind.CARBON_INTENSITY
    metric: CarbonMetric | None = CarbonMetric.AVERAGE
    unit: str = G_PER_KWH
    currency: str | None = None
    anchor: Anchor = Anchor.NOW
    horizon: timedelta = timedelta(hours=DEFAULT_HORIZON_HOURS)
    forecast_error: float = DEFAULT_FORECAST_ERROR
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: SourceSettings) -> ReplaySettings:
        """Parse and check the connection (Host and extras).

        :param settings: the connection as a value object; ``base_url`` holds the raw Host.
        :raises SourceConfigError: an extra with a wrong value, naming it.
        """
        where = settings.conn_id
        host = settings.base_url.strip()
        trace = TraceSpec.parse(host) if host else None
        kind_name = (settings.get_str("kind", SignalKind.CARBON_INTENSITY.value) or "").strip().lower()
        if kind_name not in _KINDS:
            raise SourceConfigError(f"extra 'kind' must be carbon_intensity or price, not {kind_name!r}", source=where)
        kind = _KINDS[kind_name]
        currency = settings.get_str("currency")
        metric: CarbonMetric | None = None
        if kind is SignalKind.PRICE:
            currency = (currency or "EUR").upper()
            unit = settings.get_str("unit", f"{currency}/MWh") or f"{currency}/MWh"
        else:
            metric_name = (settings.get_str("metric", CarbonMetric.AVERAGE.value) or "").strip().lower()
            try:
                metric = CarbonMetric(metric_name)
            except ValueError:
                raise SourceConfigError(
                    f"extra 'metric' must be average or marginal, not {metric_name!r}", source=where
                ) from None
            unit = settings.get_str("unit", G_PER_KWH) or G_PER_KWH
        try:
            canonical_unit(kind, unit, currency)
        except UnknownUnitError as exc:
            raise SourceConfigError(f"extra 'unit': {str(exc).split('] ', 1)[-1]}", source=where) from None
        try:
            anchor = Anchor.parse(settings.get_str("anchor", Anchor.NOW.value) or Anchor.NOW.value)
        except SourceConfigError as exc:
            raise SourceConfigError(str(exc).split("] ", 1)[-1], source=where) from None
        horizon_hours = settings.get_float("horizon_hours", DEFAULT_HORIZON_HOURS)
        error = _non_negative(settings, "forecast_error", DEFAULT_FORECAST_ERROR)
        seed = int(_non_negative(settings, "seed", 0))
        return cls(
            trace=trace,
            kind=kind,
            metric=metric,
            unit=unit,
            currency=currency,
            anchor=anchor,
            horizon=timedelta(hours=horizon_hours),
            forecast_error=error,
            seed=seed,
        )


def _non_negative(settings: SourceSettings, key: str, default: float) -> float:
    value = settings.extra.get(key)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceConfigError(f"extra {key!r} must be a number, not {value!r}", source=settings.conn_id) from None
    if not number >= 0 or number == float("inf"):
        raise SourceConfigError(f"extra {key!r} must be 0 or more, not {value!r}", source=settings.conn_id)
    return number


# -- the loaded traces, cached per file so a trigger's every poll does not re-read the CSV --------------------
_cache_lock = threading.Lock()
_cache: dict[str, tuple[tuple[tuple[str, float, int], ...], TraceSet]] = {}


def _signature(spec: TraceSpec | None) -> tuple[str, tuple[tuple[str, float, int], ...]]:
    from airflow_provider_gridaware.traces.trace import bundled_trace_path

    path = spec.path if spec is not None else bundled_trace_path()
    if not path.exists():
        raise SourceConfigError(f"trace {path}: no such file or folder", source=SOURCE)
    files = trace_files(path)
    stats = tuple((str(f), f.stat().st_mtime, f.stat().st_size) for f in files)
    return f"{path.resolve()}:{spec.zone if spec else ''}", stats


def load_cached(spec: TraceSpec | None) -> TraceSet:
    """The traces of ``spec`` (``None``: the bundled GB trace), re-read only when a file changed. Blocking.

    :param spec: the file or folder, and optionally the zone.
    """
    key, stats = _signature(spec)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stats:
        return hit[1]
    traces = load_traces([spec] if spec is not None else None)
    with _cache_lock:
        _cache[key] = (stats, traces)
    return traces


def clear_cache() -> None:
    """Forget every loaded trace (tests)."""
    with _cache_lock:
        _cache.clear()


def replay_signal(traces: TraceSet, settings: ReplaySettings, query: SignalQuery, now: datetime) -> SignalSeries:
    """Answer ``query`` from ``traces`` at time ``now``: a forecast series or an actual series.

    :param traces: the loaded traces.
    :param settings: the connection's meaning of the values (kind, unit ...), anchor and forecast model.
    :param query: zone, forecast or actuals, optional range.
    :param now: the present (the hook's clock).
    :raises SourceConfigError: unknown zone (the message lists the known ones).
    :raises NoSignalDataError: nothing in the asked range.
    """
    now = ensure_utc(now, what="now")
    replay = ZoneReplay(traces.zone(query.zone), settings.anchor)
    if query.forecast:
        issued = floor_time(now, replay.step)
        limit = issued + settings.horizon
        start = max(query.start or issued, issued)
        end = min(query.end or limit, limit)
        points = replay.points(start, end) if end > start else []
        noise = ForecastNoise(error_fraction=settings.forecast_error, seed=settings.seed)
        points = noise.apply(
            points,
            key=f"{replay.zone}|{settings.kind.value}",
            issued_at=issued,
            scale=replay.scale,
            lower=None if settings.kind is SignalKind.PRICE else 0.0,
        )
        series_type, issued_at = SeriesType.FORECAST, issued
    else:
        end = min(query.end or now, now)
        start = query.start or end - DEFAULT_ACTUALS_WINDOW
        points = [p for p in replay.points(start, end) if p[1] <= now] if end > start else []
        series_type, issued_at = SeriesType.ACTUAL, None
    if not points:
        what = "forecast" if query.forecast else "actual"
        raise NoSignalDataError(
            f"no {what} values for {replay.zone} between {format_time(start)} and {format_time(end)} in"
            f" {Path(replay.trace.source_file).name} (trace {format_time(replay.trace.start)} to"
            f" {format_time(replay.trace.end)}, anchor {settings.anchor.value})",
            source=SOURCE,
        )
    return build_series(
        kind=settings.kind,
        metric=settings.metric,
        zone=replay.zone,
        source=SOURCE,
        series_type=series_type,
        unit=settings.unit,
        currency=settings.currency,
        issued_at=issued_at,
        points=points,
    )
