"""Grid signal traces from CSV files: loading, validation and reading in the trace's own time.

Three layouts are recognised from the header row (extra columns are ignored, ``.gz`` is accepted):

- long, as the backtest files of DESIGN section 6: ``time,zone,value`` (one row per zone and interval);
- wide: ``time,<zone>,<zone>...`` (one column per zone, e.g. the ENTSO-E day-ahead price file);
- "Let's Wait Awhile": ``Time,Carbon Intensity`` (one zone, named by the caller).

Times are the start of each interval, ISO 8601; a time without offset is read as UTC (the published
traces are UTC without saying so). Each point ends where the next one starts, unless the next one is
further away than the trace's usual step: then the point lasts one step and the hole stays a gap.

Pure Python: no Airflow, no HTTP, no numpy, so hooks, tests and benchmarks all share it cheaply.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path

from airflow_provider_gridaware.signals.errors import (
    InvalidSignalError,
    MalformedPayloadError,
    SourceConfigError,
)
from airflow_provider_gridaware.times import parse_time

UTC = timezone.utc
SOURCE = "replay"
BUNDLED_TRACE = "gb_national_actual_2023-05-26_2023-06-25.csv"
BUNDLED_ZONE = "GB"
DEFAULT_STEP = timedelta(hours=1)  # for a trace of a single point, where no spacing can be seen

RawPoint = tuple[datetime, datetime, float]

_TIME_COLUMNS = ("time", "datetime", "timestamp", "start")
_LWA_HEADER = ("time", "carbon intensity")


def bundled_trace_path() -> Path:
    """The GB national carbon-intensity trace shipped with the package (CC BY 4.0, see ``data/README.md``)."""
    return Path(__file__).resolve().parent.parent / "data" / BUNDLED_TRACE


def to_epoch(value: datetime) -> float:
    """Seconds since the Unix epoch of an aware datetime."""
    return value.timestamp()


def from_epoch(seconds: float) -> datetime:
    """The aware UTC datetime at ``seconds`` since the Unix epoch."""
    return datetime.fromtimestamp(seconds, UTC)


def parse_trace_time(text: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 string; ``Z`` and offsets are honoured, naive means UTC.

    :param text: e.g. ``2023-05-26T03:30:00Z`` or ``2019-12-20 00:00:00``.
    :raises ValueError: when ``text`` is not an ISO 8601 date and time.
    """
    return parse_time(text, what="trace time", naive="utc")


@dataclass(frozen=True)
class TraceSpec:
    """One trace file to load, and optionally the zone to take from it.

    :param path: a CSV file (``.csv`` or ``.csv.gz``) in one of the recognised layouts.
    :param zone: for the "Let's Wait Awhile" layout, the zone its single column describes; for the long and
        wide layouts, the one zone to keep (the others are dropped).
    """

    path: Path
    zone: str | None = None

    @classmethod
    def parse(cls, text: str | Path | TraceSpec) -> TraceSpec:
        """A spec from ``FILE`` or ``FILE:ZONE`` (the zone part may not contain a path separator).

        :param text: the command-line or connection form, a path, or a spec (returned as is).
        """
        if isinstance(text, TraceSpec):
            return text
        if isinstance(text, Path):
            return cls(text)
        head, sep, tail = text.rpartition(":")
        # "C:\x.csv" or "./a:b/c.csv" are paths, not FILE:ZONE: a zone never contains a separator.
        if sep and head and tail and "/" not in tail and "\\" not in tail and len(head) > 1:
            return cls(Path(head).expanduser(), tail.strip())
        return cls(Path(text).expanduser())

    def __str__(self) -> str:
        return f"{self.path}:{self.zone}" if self.zone else str(self.path)


@dataclass(frozen=True)
class ZoneTrace:
    """The points of one zone from one file, sorted, in the trace's own time.

    Times are kept as epoch seconds (floats) so lookups are a bisect, not datetime arithmetic.

    :param zone: the zone name (``GB``, ``DE``, ``CAISO_NORTH``...).
    :param source_file: where the points came from, for messages.
    :param starts: start of each interval, epoch seconds, strictly increasing.
    :param ends: end of each interval, epoch seconds.
    :param values: one finite value per interval, in the file's unit.
    :param step: the trace's usual spacing (the most common distance between starts).
    """

    zone: str
    source_file: str
    starts: tuple[float, ...]
    ends: tuple[float, ...]
    values: tuple[float, ...]
    step: timedelta

    def __post_init__(self) -> None:
        if not self.starts:
            raise InvalidSignalError(f"{self.source_file}: no points for zone {self.zone}", source=SOURCE)
        if not len(self.starts) == len(self.ends) == len(self.values):
            raise ValueError("starts, ends and values must have the same length")

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def start(self) -> datetime:
        """Start of the first interval."""
        return from_epoch(self.starts[0])

    @property
    def end(self) -> datetime:
        """End of the last interval."""
        return from_epoch(self.ends[-1])

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @cached_property
    def scale(self) -> float:
        """The typical size of a value (mean of absolute values): forecast noise is a fraction of it."""
        return sum(abs(v) for v in self.values) / len(self.values) or 1.0

    @cached_property
    def _sorted_values(self) -> list[float]:
        return sorted(self.values)

    def percentile_of(self, value: float) -> float:
        """Where ``value`` ranks among all the trace's values, 0-100 (mid-rank for ties).

        :param value: a value in the trace's unit.
        """
        ordered = self._sorted_values
        below = bisect.bisect_left(ordered, value)
        equal = bisect.bisect_right(ordered, value) - below
        return 100.0 * (below + equal / 2) / len(ordered)

    def index_at(self, seconds: float) -> int | None:
        """Index of the interval containing ``seconds`` (epoch), or ``None`` in a gap or outside."""
        index = bisect.bisect_right(self.starts, seconds) - 1
        if index >= 0 and self.ends[index] > seconds:
            return index
        return None

    def value_at(self, when: datetime) -> float | None:
        """The value whose interval contains ``when``, or ``None``.

        :param when: an aware datetime, in trace time.
        """
        index = self.index_at(to_epoch(when))
        return None if index is None else self.values[index]

    def indices_overlapping(self, start: float, end: float) -> range:
        """Indices of the intervals that overlap ``[start, end)`` (epoch seconds)."""
        first = bisect.bisect_right(self.starts, start) - 1
        if first < 0 or self.ends[first] <= start:
            first += 1
        last = bisect.bisect_left(self.starts, end)
        return range(max(first, 0), max(last, first, 0))

    def points_between(self, start: datetime, end: datetime) -> list[RawPoint]:
        """The intervals overlapping ``[start, end)`` as ``(start, end, value)``, in trace time.

        :param start: aware datetime.
        :param end: aware datetime.
        """
        return [
            (from_epoch(self.starts[i]), from_epoch(self.ends[i]), self.values[i])
            for i in self.indices_overlapping(to_epoch(start), to_epoch(end))
        ]

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary (for ``/_sim/state`` and messages)."""
        return {
            "zone": self.zone,
            "file": self.source_file,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "step_seconds": int(self.step.total_seconds()),
            "points": len(self),
        }


@dataclass(frozen=True)
class TraceSet:
    """Traces by zone, loaded from one or more files.

    :param traces: zone -> trace.
    """

    traces: Mapping[str, ZoneTrace] = field(default_factory=dict)

    @property
    def zones(self) -> list[str]:
        return list(self.traces)

    def __len__(self) -> int:
        return len(self.traces)

    def __iter__(self) -> Iterator[ZoneTrace]:
        return iter(self.traces.values())

    def __contains__(self, zone: object) -> bool:
        return zone in self.traces

    def zone(self, name: str) -> ZoneTrace:
        """The trace of zone ``name``; an unknown zone names the zones there are.

        :param name: the zone; matched exactly, then case-insensitively.
        :raises SourceConfigError: no trace for that zone.
        """
        if name in self.traces:
            return self.traces[name]
        folded = {z.casefold(): z for z in self.traces}
        if name.casefold() in folded:
            return self.traces[folded[name.casefold()]]
        known = ", ".join(sorted(self.traces)) or "none"
        raise SourceConfigError(f"no trace for zone {name!r}; known zones: {known}", source=SOURCE)

    def merged(self, other: TraceSet) -> TraceSet:
        """Both sets' zones; a zone in both is an error (which file should win is not ours to guess)."""
        clash = set(self.traces) & set(other.traces)
        if clash:
            zone = sorted(clash)[0]
            raise SourceConfigError(
                f"zone {zone!r} comes from both {self.traces[zone].source_file} and {other.traces[zone].source_file}",
                source=SOURCE,
            )
        return TraceSet({**self.traces, **other.traces})


# -- loading ----------------------------------------------------------------------------------------------
def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8-sig", newline="")


def zone_from_filename(path: Path) -> str:
    """A zone name guessed from a file name: the part before the first ``_`` or ``.``, upper-cased.

    ``gb_ci.csv.gz`` -> ``GB``, ``fr_ci.csv.gz`` -> ``FR``. Say the zone explicitly (``FILE:ZONE``) when
    the file name does not start with it.
    """
    stem = path.name.split(".", 1)[0]
    return stem.split("_", 1)[0].upper()


def load_trace_file(path: str | Path, *, zone: str | None = None) -> TraceSet:
    """Load every zone of one CSV trace file.

    :param path: a ``.csv`` or ``.csv.gz`` file in the long, wide or "Let's Wait Awhile" layout.
    :param zone: for the "Let's Wait Awhile" layout, the zone of its column (default: from the file
        name); for the other layouts, the one zone to keep.
    :raises SourceConfigError: missing file, unknown layout, or ``zone`` not in the file.
    :raises MalformedPayloadError: a row that cannot be read, named by file and line.
    :raises InvalidSignalError: a non-finite value or a time given twice, named by file and line.
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise SourceConfigError(f"trace {path}: {what}", source=SOURCE)
    try:
        with _open_text(path) as handle:
            rows: Iterator[list[str]] = csv.reader(handle)
            header = next(rows, None)
            if header is None:
                raise SourceConfigError(f"trace {path}: the file is empty", source=SOURCE)
            columns = [c.strip() for c in header]
            wide = "zone" not in {c.lower() for c in columns}
            points = _read_rows(path, columns, rows, zone)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise MalformedPayloadError(f"trace {path}: cannot read the file ({exc})", source=SOURCE) from None
    if zone is not None:
        if zone not in points:
            known = ", ".join(sorted(points)) or "none"
            raise SourceConfigError(f"trace {path} has no zone {zone!r}; zones in the file: {known}", source=SOURCE)
        points = {zone: points[zone]}
    # In a wide file every zone shares the time column: its spacing is the step, even where a zone has gaps.
    shared_step = infer_step(sorted({t for found in points.values() for t in found})) if wide else None
    traces = {name: _build_trace(name, str(path), found, shared_step) for name, found in points.items()}
    if not traces:
        raise SourceConfigError(f"trace {path}: no data rows", source=SOURCE)
    return TraceSet(traces)


def _read_rows(
    path: Path, columns: list[str], rows: Iterable[list[str]], zone: str | None
) -> dict[str, dict[float, tuple[float, int]]]:
    """Rows -> zone -> {start epoch: (value, line)}, whatever the layout; ``zone`` names a single-column file."""
    lowered = [c.lower() for c in columns]
    points: dict[str, dict[float, tuple[float, int]]] = {}

    def add(name: str, raw_time: str, raw_value: str, line: int, column: str) -> None:
        try:
            start = to_epoch(parse_trace_time(raw_time))
        except ValueError:
            raise MalformedPayloadError(
                f"{path}:{line}: time {raw_time!r} is not an ISO 8601 date and time", source=SOURCE
            ) from None
        try:
            value = float(raw_value)
        except ValueError:
            raise MalformedPayloadError(
                f"{path}:{line}: {column} {raw_value!r} is not a number", source=SOURCE
            ) from None
        if not math.isfinite(value):
            raise InvalidSignalError(f"{path}:{line}: {column} is {raw_value.strip()}", source=SOURCE)
        seen = points.setdefault(name, {})
        if start in seen:
            raise InvalidSignalError(
                f"{path}:{line}: zone {name} time {raw_time.strip()} already given on line {seen[start][1]}",
                source=SOURCE,
            )
        seen[start] = (value, line)

    if {"time", "zone", "value"} <= set(lowered):
        t, z, v = lowered.index("time"), lowered.index("zone"), lowered.index("value")
        for line, row in enumerate(rows, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(t, z, v):
                raise MalformedPayloadError(
                    f"{path}:{line}: expected {len(columns)} columns, got {len(row)}", source=SOURCE
                )
            name = row[z].strip()
            if not name:
                raise MalformedPayloadError(f"{path}:{line}: zone is empty", source=SOURCE)
            add(name, row[t], row[v], line, "value")
        return points

    if not lowered or lowered[0] not in _TIME_COLUMNS or len(columns) < 2:
        raise SourceConfigError(
            f"trace {path}: unknown layout {','.join(columns)!r}; expected 'time,zone,value',"
            " 'time,<zone>,<zone>...' or 'Time,Carbon Intensity'",
            source=SOURCE,
        )
    if tuple(lowered[:2]) == _LWA_HEADER:
        wanted = {1: zone or zone_from_filename(path)}
    else:
        wanted = {i: name for i, name in enumerate(columns) if i > 0 and name}
    for line, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        for index, name in wanted.items():
            raw = row[index] if index < len(row) else ""
            if raw.strip():  # an empty cell in a wide file is a gap in that zone, not an error
                add(name, row[0], raw, line, columns[index])
    return points


def infer_step(starts: list[float]) -> timedelta:
    """The trace's usual spacing: the most common distance between consecutive starts (the smaller on a tie)."""
    counts = Counter(round(b - a, 3) for a, b in itertools.pairwise(starts) if b > a)
    if not counts:
        return DEFAULT_STEP
    best = max(counts.items(), key=lambda item: (item[1], -item[0]))[0]
    return timedelta(seconds=best)


def _build_trace(
    zone: str, source_file: str, found: Mapping[float, tuple[float, int]], step: timedelta | None = None
) -> ZoneTrace:
    starts = sorted(found)
    step = step or infer_step(starts)
    seconds = step.total_seconds()
    ends = [
        nxt if nxt - start <= seconds else start + seconds
        for start, nxt in zip(starts, [*starts[1:], math.inf], strict=True)
    ]
    return ZoneTrace(
        zone=zone,
        source_file=source_file,
        starts=tuple(starts),
        ends=tuple(ends),
        values=tuple(found[s][0] for s in starts),
        step=step,
    )


def trace_files(path: Path) -> list[Path]:
    """The trace files of a folder (``*.csv`` and ``*.csv.gz``, sorted), or ``[path]`` for a file."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".csv", ".csv.gz")))
        if not files:
            raise SourceConfigError(f"trace folder {path} has no .csv or .csv.gz files", source=SOURCE)
        return files
    return [path]


def load_traces(specs: Iterable[str | Path | TraceSpec] | None = None) -> TraceSet:
    """Load and merge several traces; a folder loads every CSV in it; nothing given loads the bundled GB trace.

    :param specs: files or folders, as paths, ``FILE[:ZONE]`` strings or :class:`TraceSpec`.
    """
    parsed = [TraceSpec.parse(s) for s in specs or ()]
    if not parsed:
        parsed = [TraceSpec(bundled_trace_path(), BUNDLED_ZONE)]
    result = TraceSet()
    for spec in parsed:
        if not spec.path.exists():
            raise SourceConfigError(f"trace {spec.path}: no such file or folder", source=SOURCE)
        if not spec.path.is_dir():
            result = result.merged(load_trace_file(spec.path, zone=spec.zone))
            continue
        # In a folder, each file names its own zones; ":ZONE" then keeps just that one.
        found = TraceSet()
        for file in trace_files(spec.path):
            found = found.merged(load_trace_file(file))
        if spec.zone is not None:
            found = TraceSet({spec.zone: _rename(found.zone(spec.zone), spec.zone)})
        result = result.merged(found)
    return result


def _rename(trace: ZoneTrace, zone: str) -> ZoneTrace:
    from dataclasses import replace

    return trace if trace.zone == zone else replace(trace, zone=zone)
