"""Backtest inputs from public data: actual-signal CSVs and synthetic jobs files.

The data stay where they are (``../shared/data`` beside the checkout); these helpers read them in place
and write the backtest formats, typically to a temporary directory.

* :func:`read_lets_wait_awhile` reads the "Let's Wait Awhile" carbon traces (``Time``, ``Carbon Intensity``).
* :func:`read_price_table` reads a wide hourly price table (``time,DE,FR,...``).
* :func:`generate_jobs` draws jobs: arrivals from the Alibaba PAI trace's pattern (or uniform), durations
  and slack uniform in ranges, optional extra candidate zones and an interruptible share.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from airflow_provider_gridaware.planning.backtest import JobSpec

if TYPE_CHECKING:
    import argparse
from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.times import parse_time

UTC = timezone.utc
PAI_TICK_S = 5  # the PAI trace counts in ticks of 5 s


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), newline="")
    return path.open(newline="")


def _utc_seconds(text: str) -> int:
    return int(parse_time(text, what="trace time", naive="utc").timestamp())  # the traces are documented as UTC


def read_lets_wait_awhile(path: Path) -> tuple[list[int], list[float]]:
    """Times (epoch seconds) and values of a "Let's Wait Awhile" trace (``Time``, ``Carbon Intensity``).

    :param path: ``.csv`` or ``.csv.gz``.
    """
    times, values = [], []
    with _open_text(path) as handle:
        for row in csv.DictReader(handle):
            times.append(_utc_seconds(row["Time"]))
            values.append(float(row["Carbon Intensity"]))
    return times, values


def read_price_table(path: Path, zones: Sequence[str]) -> dict[str, tuple[list[int], list[float]]]:
    """Per zone, times and prices from a wide table with a ``time`` column and one column per zone.

    :param path: ``.csv`` or ``.csv.gz``.
    :param zones: the zone columns to keep.
    """
    result: dict[str, tuple[list[int], list[float]]] = {z: ([], []) for z in zones}
    with _open_text(path) as handle:
        for row in csv.DictReader(handle):
            t = _utc_seconds(row["time"])
            for zone in zones:
                text = row.get(zone, "")
                if text not in ("", None):
                    result[zone][0].append(t)
                    result[zone][1].append(float(text))
    return result


def write_actual(rows: Iterable[tuple[int, str, float]], out: IO[str]) -> None:
    """Write an actual-signal file (``time,zone,value``).

    :param rows: ``(epoch seconds, zone, value)``.
    :param out: a text stream.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("time", "zone", "value"))
    for t, zone, value in rows:
        writer.writerow((format_time(datetime.fromtimestamp(t, tz=UTC)), zone, repr(float(value))))


def convert_lets_wait_awhile(
    source: Path, zone: str, dest: Path, *, start_s: int | None = None, end_s: int | None = None
) -> int:
    """Convert a "Let's Wait Awhile" trace into an actual-signal file; returns the rows written.

    :param source: the trace.
    :param zone: the zone name to write (``DE``, ``GB``, ``FR``).
    :param dest: the output CSV.
    :param start_s: keep points at or after this time.
    :param end_s: keep points before this time.
    """
    times, values = read_lets_wait_awhile(source)
    rows = [
        (t, zone, v)
        for t, v in zip(times, values, strict=True)
        if (start_s is None or t >= start_s) and (end_s is None or t < end_s)
    ]
    with dest.open("w", newline="") as out:
        write_actual(rows, out)
    return len(rows)


def pai_arrivals(path: Path) -> list[int]:
    """Arrival offsets in seconds from the start of the Alibaba PAI trace sample (``arrival_time`` in 5 s ticks).

    :param path: ``pai_1k.csv``.
    """
    with path.open(newline="") as handle:
        return sorted(round(float(row["arrival_time"]) * PAI_TICK_S) for row in csv.DictReader(handle))


def generate_jobs(
    *,
    start_s: int,
    end_s: int,
    count: int,
    zones: Sequence[str],
    duration_hours: tuple[float, float] = (1.0, 24.0),
    slack_hours: tuple[float, float] = (2.0, 24.0),
    extra_zones: Sequence[str] = (),
    extra_zone_share: float = 0.0,
    interruptible_share: float = 0.0,
    arrivals: Sequence[int] | None = None,
    seed: int = 0,
) -> list[JobSpec]:
    """Draw ``count`` jobs submitted in ``[start_s, end_s)``.

    Durations and slack are uniform in their ranges (whole minutes); the deadline is
    ``submit + duration + slack``. With ``arrivals`` (offsets in seconds, e.g. :func:`pai_arrivals`) the
    submission times follow that pattern, tiled over the period; otherwise they are uniform.

    :param start_s: first submission (epoch seconds).
    :param end_s: end of the submission period (the caller leaves room for the deadlines).
    :param count: number of jobs.
    :param zones: home zones, drawn uniformly.
    :param duration_hours: range of the run time.
    :param slack_hours: range of the slack beyond the run time.
    :param extra_zones: zones that may be added as candidates (region shifting).
    :param extra_zone_share: share of jobs that get all ``extra_zones`` besides their home zone.
    :param interruptible_share: share of interruptible jobs.
    :param arrivals: an arrival pattern to tile, in seconds from its start.
    :param seed: random seed.
    """
    rng = np.random.default_rng(seed)
    span = end_s - start_s
    if arrivals:
        pattern = np.asarray(sorted(arrivals), np.int64)
        period = int(pattern[-1]) + 1
        tiles = -(-span // period)
        tiled = (pattern[None, :] + period * np.arange(tiles)[:, None]).ravel()
        tiled = tiled[tiled < span]
        picks = np.sort(rng.choice(tiled.size, size=min(count, tiled.size), replace=False))
        submit = start_s + tiled[picks]
    else:
        submit = np.sort(start_s + rng.integers(0, span, count))
    n = submit.size
    minutes = np.round(rng.uniform(duration_hours[0] * 60, duration_hours[1] * 60, n))
    slack = np.round(rng.uniform(slack_hours[0] * 3600, slack_hours[1] * 3600, n))
    homes = rng.integers(0, len(zones), n)
    multi = rng.random(n) < extra_zone_share
    interruptible = rng.random(n) < interruptible_share
    jobs = []
    for k in range(n):
        home = zones[int(homes[k])]
        candidates = (home, *[z for z in extra_zones if z != home]) if multi[k] else (home,)
        duration_s = int(minutes[k]) * 60
        jobs.append(
            JobSpec(
                job_id=f"job-{k:05d}",
                submit_s=int(submit[k]),
                duration_s=duration_s,
                deadline_s=int(submit[k]) + duration_s + int(slack[k]),
                interruptible=bool(interruptible[k]),
                zones=candidates,
            )
        )
    return jobs


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_gridaware.planning.datasets``: write backtest inputs from the shared data.

    :param argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m airflow_provider_gridaware.planning.datasets", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    actual = sub.add_parser("actual", help="convert a Let's Wait Awhile trace into time,zone,value")
    actual.add_argument("source", type=Path)
    actual.add_argument("zone")
    actual.add_argument("dest", type=Path)
    jobs = sub.add_parser("jobs", help="generate a jobs file")
    jobs.add_argument("dest", type=Path)
    jobs.add_argument("--zones", required=True, help="home zones, separated by |")
    jobs.add_argument("--extra-zones", default="", help="candidate zones for region shifting, separated by |")
    jobs.add_argument("--extra-zone-share", type=float, default=0.0)
    jobs.add_argument("--interruptible-share", type=float, default=0.0)
    jobs.add_argument("--start", required=True, help="first submission, ISO 8601")
    jobs.add_argument("--end", required=True, help="end of submissions, ISO 8601")
    jobs.add_argument("--count", type=int, default=500)
    jobs.add_argument("--pai", type=Path, help="pai_1k.csv: tile its arrival pattern")
    jobs.add_argument("--hours", default="1,24", help="run-time range in hours, MIN,MAX (default 1,24)")
    jobs.add_argument("--slack-hours", default="2,24", help="slack range in hours, MIN,MAX (default 2,24)")
    jobs.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.what == "actual":
        rows = convert_lets_wait_awhile(args.source, args.zone, args.dest)
        print(f"{args.dest}: {rows} rows")
        return 0
    specs = generate_jobs(
        start_s=_utc_seconds(args.start),
        end_s=_utc_seconds(args.end),
        count=args.count,
        zones=[z for z in args.zones.split("|") if z],
        duration_hours=_hour_range(args.hours, "--hours", parser),
        slack_hours=_hour_range(args.slack_hours, "--slack-hours", parser),
        extra_zones=[z for z in args.extra_zones.split("|") if z],
        extra_zone_share=args.extra_zone_share,
        interruptible_share=args.interruptible_share,
        arrivals=pai_arrivals(args.pai) if args.pai else None,
        seed=args.seed,
    )
    from airflow_provider_gridaware.planning.backtest import write_jobs

    with args.dest.open("w", newline="") as out:
        write_jobs(specs, out)
    print(f"{args.dest}: {len(specs)} jobs")
    return 0


def _hour_range(text: str, option: str, parser: argparse.ArgumentParser) -> tuple[float, float]:
    """``MIN,MAX`` hours, or a usage error naming the option."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        parser.error(f"{option} must be MIN,MAX in hours, got {text!r}")
    if not 0 <= low <= high:
        parser.error(f"{option} must have 0 <= MIN <= MAX, got {text!r}")
    return low, high


if __name__ == "__main__":
    raise SystemExit(main())
