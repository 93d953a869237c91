"""A run's energy: measured from a power series, or estimated from a declared profile (pure).

Power is kept as piecewise-constant facility-side segments (PUE applied), so emissions can be weighted
by when the energy was drawn, not only by how long the run lasted.

Estimated energy uses the GPUs' board power (their TDP, the most a board draws) times a utilisation;
without a declared model, :data:`DEFAULT_GPU_MODEL` is used and the record says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from airflow_provider_gridaware.ledger.records import EnergyMethod
from airflow_provider_gridaware.times import format_duration

#: Board power (W) of common data-centre GPUs: NVIDIA's published TDP / max board power per board.
GPU_BOARD_POWER_W: dict[str, float] = {
    "B200": 1000.0,
    "H200": 700.0,
    "H100": 700.0,  # SXM5
    "H100-PCIE": 350.0,
    "A100": 400.0,  # SXM4, 40 and 80 GB
    "A100-PCIE": 300.0,
    "L40S": 350.0,
    "L40": 300.0,
    "A10G": 300.0,  # AWS g5
    "A10": 150.0,
    "L4": 72.0,
    "T4": 70.0,
    "V100": 300.0,  # SXM2
}
DEFAULT_GPU_MODEL = "A100"
#: Facility overhead when none is declared: a typical large data centre (Uptime Institute surveys ~1.5
#: across all sites; hyperscale 1.1-1.2). The record notes when this default was used.
DEFAULT_PUE = 1.2
#: The note an estimated draw carries (the daily report summarises it per method instead of repeating it).
ESTIMATED_NOTE = "energy estimated from the declared profile, not measured"


def normalise_gpu_model(model: str) -> str:
    """``"nvidia a100-sxm4-80gb"`` -> ``"A100"``: the table's key for a model name, or a clear error.

    :param model: a GPU model name as people write it.
    :raises ValueError: the model is not in :data:`GPU_BOARD_POWER_W` (the message lists them; declare
        ``power_w`` instead for another board).
    """
    name = model.upper().replace("NVIDIA", "").replace("_", "-").replace(" ", "-").strip("-")
    if name in GPU_BOARD_POWER_W:
        return name
    # Longest table key that prefixes the name, honouring a PCIe suffix: "H100-PCIE-80GB" -> "H100-PCIE".
    for key in sorted(GPU_BOARD_POWER_W, key=len, reverse=True):
        if name.startswith(key) and ("PCIE" in key or "PCIE" not in name):
            return key
    raise ValueError(
        f"unknown GPU model {model!r}: known are {', '.join(sorted(GPU_BOARD_POWER_W))}; "
        "give power_w (the task's IT power in watts) for another board"
    )


@dataclass(frozen=True)
class EnergyProfile:
    """What a task declares about its power draw (the task parameters ``gpu_model``, ``gpu_count``,
    ``gpu_utilisation``, ``power_w``, ``pue``).

    :param gpu_model: the GPU model (a key of :data:`GPU_BOARD_POWER_W`, loosely matched); default A100.
    :param gpu_count: how many GPUs the task uses.
    :param utilisation: mean fraction of board power drawn, in (0, 1].
    :param power_w: the task's IT power in watts; replaces the GPU estimate when given.
    :param pue: facility power usage effectiveness (>= 1); ``None`` = :data:`DEFAULT_PUE`.
    """

    gpu_model: str | None = None
    gpu_count: int = 0
    utilisation: float = 1.0
    power_w: float | None = None
    pue: float | None = None

    def __post_init__(self) -> None:
        if self.gpu_count < 0:
            raise ValueError(f"gpu_count must be >= 0, got {self.gpu_count}")
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"gpu_utilisation must be in (0, 1], got {self.utilisation}")
        if self.power_w is not None and not (math.isfinite(self.power_w) and self.power_w > 0):
            raise ValueError(f"power_w must be a positive number of watts, got {self.power_w}")
        if self.pue is not None and not (math.isfinite(self.pue) and self.pue >= 1):
            raise ValueError(f"pue must be >= 1, got {self.pue}")
        if self.gpu_model is not None:
            normalise_gpu_model(self.gpu_model)

    @property
    def declared(self) -> bool:
        """Whether anything lets the energy be estimated (GPUs or an IT power)."""
        return self.power_w is not None or self.gpu_count > 0

    @property
    def facility_pue(self) -> float:
        return DEFAULT_PUE if self.pue is None else self.pue

    def it_power_w(self) -> float:
        """The IT power the profile declares, in watts."""
        if self.power_w is not None:
            return self.power_w
        model = normalise_gpu_model(self.gpu_model or DEFAULT_GPU_MODEL)
        return self.gpu_count * GPU_BOARD_POWER_W[model] * self.utilisation

    def describe(self) -> str:
        """The profile in words, as the record's ``energy_source``."""
        if self.power_w is not None:
            what = f"declared IT power {self.power_w:g} W"
        else:
            model = normalise_gpu_model(self.gpu_model or DEFAULT_GPU_MODEL)
            default = " (default model)" if self.gpu_model is None else ""
            what = (
                f"{self.gpu_count} x {model}{default} at {GPU_BOARD_POWER_W[model]:g} W board power, "
                f"{self.utilisation:.0%} utilisation"
            )
        default_pue = " (default)" if self.pue is None else ""
        return f"{what}, PUE {self.facility_pue:g}{default_pue}"


@dataclass(frozen=True)
class PowerSegment:
    """Facility-side power drawn over ``[start, end)``.

    :param start: segment start (UTC).
    :param end: segment end.
    :param watts: power in watts, PUE applied.
    """

    start: datetime
    end: datetime
    watts: float

    @property
    def energy_kwh(self) -> float:
        return self.watts * (self.end - self.start).total_seconds() / 3.6e6


@dataclass(frozen=True)
class PowerDraw:
    """A run's power over time and how it was obtained.

    :param segments: non-overlapping segments in time order.
    :param method: measured or estimated.
    :param source: the power query's connection or the profile, in words.
    :param notes: what a reader of the figures should know (default PUE, samples missing ...).
    """

    segments: tuple[PowerSegment, ...]
    method: EnergyMethod
    source: str
    notes: tuple[str, ...] = ()

    @property
    def energy_kwh(self) -> float:
        return sum(s.energy_kwh for s in self.segments)

    @classmethod
    def constant(
        cls, start: datetime, end: datetime, energy_kwh: float, method: EnergyMethod, source: str
    ) -> PowerDraw:
        """``energy_kwh`` drawn evenly over ``[start, end)`` (what a stored record can say about its power)."""
        seconds = (end - start).total_seconds()
        watts = energy_kwh * 3.6e6 / seconds if seconds > 0 else 0.0
        return cls((PowerSegment(start, end, watts),) if seconds > 0 else (), method, source)


def estimated_draw(
    profile: EnergyProfile,
    start: datetime,
    end: datetime,
    running: Sequence[tuple[datetime, datetime]] | None = None,
) -> PowerDraw:
    """The profile's power, constant while the work ran.

    :param profile: the declared profile.
    :param start: run start.
    :param end: run end.
    :param running: the pieces the work actually ran in, when it paused in between (a task that paused for a
        grid event draws nothing while deferred); ``None``: it ran from ``start`` to ``end``.
    """
    watts = profile.it_power_w() * profile.facility_pue
    notes = [ESTIMATED_NOTE]
    if running is not None and len(running) > 1:
        ran = sum((b - a).total_seconds() for a, b in running if b > a)
        notes.append(
            f"ran in {len(running)} pieces ({format_duration(ran)} of {format_duration((end - start).total_seconds())}"
            " from first start to end): energy counts the running pieces only"
        )
    if profile.pue is None:
        notes.append(f"default PUE {DEFAULT_PUE:g} assumed")
    if profile.power_w is None and profile.gpu_model is None:
        notes.append(f"GPU model not declared: {DEFAULT_GPU_MODEL} board power assumed")
    pieces = [(start, end)] if running is None else sorted(running)
    segments = tuple(PowerSegment(a, b, watts) for a, b in pieces if b > a)
    return PowerDraw(segments, EnergyMethod.ESTIMATED, profile.describe(), tuple(notes))


def measured_draw(
    samples: Sequence[tuple[datetime, float]],
    start: datetime,
    end: datetime,
    *,
    pue: float,
    source: str,
    max_gap_s: float,
) -> PowerDraw:
    """Power from samples of the IT power (watts), held from each sample to the next.

    Before the first sample the first value holds, after the last the last; a hole longer than
    ``max_gap_s`` between samples (or at either end) is bridged the same way and noted.

    :param samples: ``(time, watts)`` pairs, any order; values must be finite and >= 0.
    :param start: run start.
    :param end: run end.
    :param pue: facility overhead applied to the samples.
    :param source: the power query, in words.
    :param max_gap_s: a longer hole between samples is noted as missing data.
    :raises ValueError: no sample in the run, or a negative / non-finite value.
    """
    inside = sorted((t, w) for t, w in samples if start <= t < end)
    if not inside:
        raise ValueError(f"no power sample between {start.isoformat()} and {end.isoformat()} from {source}")
    for when, watts in inside:
        if not (math.isfinite(watts) and watts >= 0):
            raise ValueError(f"power sample {watts!r} W at {when.isoformat()} from {source} is not a power")
    edges = [start, *(t for t, _ in inside[1:]), end]
    segments = tuple(
        PowerSegment(a, b, watts * pue) for a, b, (_, watts) in zip(edges, edges[1:], inside, strict=False) if b > a
    )
    times = [start, *(t for t, _ in inside), end]
    longest = max((b - a).total_seconds() for a, b in itertools.pairwise(times))
    notes: tuple[str, ...] = ()
    if longest > max_gap_s:
        notes = (f"power samples missing for up to {longest / 60:.0f} min of the run: the nearest sample held",)
    return PowerDraw(segments, EnergyMethod.MEASURED, source, notes)
