"""Backtest: replay a jobs file against actual series with a policy, and summarise what it saved.

File formats (DESIGN.md section 6), all UTC ISO 8601:

* actual signal: ``time,zone,value`` (start of each interval);
* forecast vintages: ``issued_at,time,zone,value``;
* jobs: ``job_id,submit_time,duration_minutes,deadline,interruptible,zones`` (zones separated by ``|``);
* decisions (written): ``job_id,zone,start,end``, one row per contiguous run.

The summary compares the policy with ``run-now`` and the ``oracle`` on the same jobs and run times:
CO2 (and cost, when prices are given) saved, share of the oracle's saving captured, deadline misses,
added delay, and the saving split into time shifting (in the chosen zone) and region shifting (choosing
another zone than the home zone).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from airflow_provider_gridaware.planning.policies import (
    Execution,
    PolicySettings,
    ReplayJob,
    replay_policy,
)
from airflow_provider_gridaware.planning.replay import PointSeries, Replay
from airflow_provider_gridaware.signals.models import format_time
from airflow_provider_gridaware.times import parse_time

if TYPE_CHECKING:
    from airflow_provider_gridaware.signals.models import SignalPoint
    from airflow_provider_gridaware.store import ForecastArchive

UTC = timezone.utc
JOB_COLUMNS = ("job_id", "submit_time", "duration_minutes", "deadline", "interruptible", "zones")
DECISION_COLUMNS = ("job_id", "zone", "start", "end")


class BacktestInputError(ValueError):
    """A backtest input file is missing columns or holds a value that cannot be read (names file and line)."""


def parse_utc(text: str, *, where: str) -> int:
    """Epoch seconds of an ISO 8601 time; a time without offset is read as UTC (the file format says UTC).

    :param text: the time text.
    :param where: file and line, for the error message.
    """
    try:
        value = parse_time(text, what=where, naive="utc")
    except ValueError:
        raise BacktestInputError(f"{where}: {text!r} is not an ISO 8601 time") from None
    return int(value.timestamp())


def _rows(path: Path, required: Sequence[str]) -> Iterable[tuple[str, dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BacktestInputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(required)}")
        for number, row in enumerate(reader, start=2):
            yield f"{path}:{number}", row


def _float(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BacktestInputError(f"{where}: {text!r} is not a number") from None
    return value


def read_actuals(paths: Sequence[Path]) -> dict[str, PointSeries]:
    """Actual series per zone from ``time,zone,value`` files (several files may hold different zones).

    Non-finite values are kept as gaps.

    :param paths: the files.
    """
    times: dict[str, list[int]] = defaultdict(list)
    values: dict[str, list[float]] = defaultdict(list)
    for path in paths:
        for where, row in _rows(path, ("time", "zone", "value")):
            zone = row["zone"].strip()
            times[zone].append(parse_utc(row["time"], where=where))
            values[zone].append(_float(row["value"], where))
    return {zone: PointSeries.from_starts(times[zone], values[zone]) for zone in times}


def read_forecasts(path: Path) -> dict[str, list[tuple[int, PointSeries]]]:
    """Forecast vintages per zone from an ``issued_at,time,zone,value`` file.

    :param path: the file.
    """
    grouped: dict[tuple[str, int], tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for where, row in _rows(path, ("issued_at", "time", "zone", "value")):
        key = (row["zone"].strip(), parse_utc(row["issued_at"], where=where))
        grouped[key][0].append(parse_utc(row["time"], where=where))
        grouped[key][1].append(_float(row["value"], where))
    result: dict[str, list[tuple[int, PointSeries]]] = defaultdict(list)
    for (zone, issued), (times, vals) in grouped.items():
        result[zone].append((issued, PointSeries.from_starts(times, vals)))
    for vintages in result.values():
        vintages.sort(key=lambda v: v[0])
    return dict(result)


#: source name under which the vintages of a ``--forecasts`` file are archived.
FORECASTS_FILE_SOURCE = "forecasts-file"


def archive_forecasts(path: Path, archive: ForecastArchive, *, source: str = FORECASTS_FILE_SOURCE) -> int:
    """Record the vintages of an ``issued_at,time,zone,value`` file in ``archive`` (average carbon, gCO2eq/kWh).

    Missing (non-finite) values are left out: the replay treats them as gaps either way. A vintage without
    any value says nothing and is not stored.

    :param path: the file.
    :param archive: where to record them.
    :param source: the source name to record them under.
    :returns: how many vintages were recorded.
    """
    from airflow_provider_gridaware.signals.errors import InvalidSignalError
    from airflow_provider_gridaware.signals.models import build_series
    from airflow_provider_gridaware.signals.units import G_PER_KWH, CarbonMetric, SeriesType, SignalKind

    batch = []
    for zone, vintages in read_forecasts(path).items():
        for issued_s, points in vintages:
            issued = datetime.fromtimestamp(issued_s, tz=UTC)
            finite = np.isfinite(points.values)
            rows = zip(
                points.starts[finite].tolist(),
                points.ends[finite].tolist(),
                points.values[finite].tolist(),
                strict=True,
            )
            try:
                series = build_series(
                    kind=SignalKind.CARBON_INTENSITY,
                    metric=CarbonMetric.AVERAGE,
                    zone=zone,
                    source=source,
                    series_type=SeriesType.FORECAST,
                    unit=G_PER_KWH,
                    issued_at=issued,
                    points=[(datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC), v) for a, b, v in rows],
                )
            except InvalidSignalError as exc:
                raise BacktestInputError(f"{path}: vintage of {zone} issued {format_time(issued)}: {exc}") from None
            if series.points:
                batch.append(series)
    archive.record_many(batch)
    return len(batch)


def archived_vintages(
    archive: ForecastArchive, zones: Iterable[str], *, source: str | None = None
) -> dict[str, list[tuple[int, PointSeries]]]:
    """Carbon-intensity forecast vintages per zone, read back from ``archive`` for a replay.

    :param archive: the archive.
    :param zones: the zones to read (zones without vintages are left out).
    :param source: the source whose vintages to use; needed only if the archive holds several for a zone.
    """
    from airflow_provider_gridaware.signals.units import SignalKind

    kind = SignalKind.CARBON_INTENSITY
    result: dict[str, list[tuple[int, PointSeries]]] = {}
    for zone in zones:
        signals = [s for s in archive.signals(zone=zone, kind=kind) if source is None or s.source == source]
        if not signals:
            continue
        if len(signals) > 1:
            found = ", ".join(f"{s.source} ({s.metric.value if s.metric else '-'})" for s in signals)
            raise BacktestInputError(
                f"the store holds several {kind.value} forecasts for {zone}: {found}; pick a source"
            )
        chosen = signals[0]
        vintages = archive.vintages(chosen.source, zone, kind, metric=chosen.metric)
        if vintages:
            result[zone] = [(int(v.issued_at.timestamp()), _point_series(v.points)) for v in vintages]
    return result


def load_vintages(
    zones: Iterable[str], *, forecasts: Path | None = None, store_url: str | None = None, source: str | None = None
) -> dict[str, list[tuple[int, PointSeries]]]:
    """Forecast vintages for a replay, always through the forecast archive.

    A ``forecasts`` file is recorded into the store first (an in-memory one unless ``store_url`` is given),
    so a backtest replays file vintages and those a live deployment archived the same way.

    :param zones: the zones of the actuals.
    :param forecasts: an ``issued_at,time,zone,value`` file.
    :param store_url: a store to read (and record the file into); nothing in it is pruned.
    :param source: the source to replay (default: the file's, or the only one in the store).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_provider_gridaware.store import ForecastArchive

    try:
        with ForecastArchive(store_url or "sqlite://", retention=None) as archive:
            if forecasts is not None:
                source = source or FORECASTS_FILE_SOURCE
                archive_forecasts(forecasts, archive, source=source)
            return archived_vintages(archive, zones, source=source)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BacktestInputError(f"forecast store {store_url or 'in memory'}: {reason}") from None


def _point_series(points: Sequence[SignalPoint]) -> PointSeries:
    starts = np.fromiter((int(p.start.timestamp()) for p in points), np.int64, len(points))
    ends = np.fromiter((int(p.end.timestamp()) for p in points), np.int64, len(points))
    values = np.fromiter((p.value for p in points), np.float64, len(points))
    return PointSeries(starts, ends, values)


@dataclass(frozen=True)
class JobSpec:
    """A row of the jobs file.

    :param job_id: identifier.
    :param submit_s: submission time, epoch seconds.
    :param duration_s: the estimated run time.
    :param deadline_s: completion deadline.
    :param interruptible: may pause and resume.
    :param zones: candidate zones, home first.
    """

    job_id: str
    submit_s: int
    duration_s: int
    deadline_s: int
    interruptible: bool
    zones: tuple[str, ...]


def read_jobs(path: Path) -> list[JobSpec]:
    """Jobs from a jobs file.

    :param path: the file.
    """
    jobs = []
    for where, row in _rows(path, JOB_COLUMNS):
        zones = tuple(z.strip() for z in row["zones"].split("|") if z.strip())
        if not zones:
            raise BacktestInputError(f"{where}: no zones")
        minutes = _float(row["duration_minutes"], where)
        if not math.isfinite(minutes) or minutes <= 0:
            raise BacktestInputError(f"{where}: duration_minutes must be positive, got {row['duration_minutes']!r}")
        flag = row["interruptible"].strip().lower()
        if flag not in {"true", "false", "1", "0", "yes", "no", ""}:
            raise BacktestInputError(f"{where}: interruptible must be true or false, got {row['interruptible']!r}")
        submit = parse_utc(row["submit_time"], where=where)
        deadline = parse_utc(row["deadline"], where=where)
        if deadline <= submit:
            raise BacktestInputError(f"{where}: deadline is not after submit_time")
        jobs.append(
            JobSpec(row["job_id"].strip(), submit, round(minutes * 60), deadline, flag in {"true", "1", "yes"}, zones)
        )
    return jobs


def write_jobs(jobs: Iterable[JobSpec], out: IO[str]) -> None:
    """Write a jobs file.

    :param jobs: the jobs.
    :param out: a text stream.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(JOB_COLUMNS)
    for job in jobs:
        writer.writerow(
            [
                job.job_id,
                _iso(job.submit_s),
                f"{job.duration_s / 60:g}",
                _iso(job.deadline_s),
                "true" if job.interruptible else "false",
                "|".join(job.zones),
            ]
        )


def write_decisions(executions: Iterable[Execution], out: IO[str]) -> None:
    """Write the decisions file: one row per contiguous run.

    :param executions: what the policy ran.
    :param out: a text stream.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DECISION_COLUMNS)
    for execution in executions:
        for start, end in execution.runs:
            writer.writerow([execution.job_id, execution.zone, _iso(start), _iso(end)])


def _iso(seconds: int) -> str:
    return format_time(datetime.fromtimestamp(seconds, tz=UTC))


def replay_jobs(
    specs: Sequence[JobSpec], replay: Replay, *, runtime_error: float = 0.0, seed: int = 0
) -> tuple[list[ReplayJob], list[str]]:
    """The replayable jobs, with actual run times ``estimate x (1 + U(-e, e))``, and the ids skipped.

    The draw depends only on ``seed`` and the file order, so every policy sees the same run times.

    :param specs: jobs from the file.
    :param replay: the world (jobs whose window it does not cover are skipped).
    :param runtime_error: ``e``, the relative error of the estimates.
    :param seed: random seed.
    """
    rng = np.random.default_rng(seed)
    factors = 1.0 + rng.uniform(-runtime_error, runtime_error, len(specs)) if runtime_error > 0 else np.ones(len(specs))
    jobs, skipped = [], []
    for spec, factor in zip(specs, factors, strict=True):
        actual = max(1, round(spec.duration_s * float(factor)))
        end = max(spec.deadline_s, spec.submit_s + actual) + 3600
        if not all(replay.covers(z, spec.submit_s, end) for z in spec.zones):
            skipped.append(spec.job_id)
            continue
        jobs.append(
            ReplayJob(
                spec.job_id, spec.submit_s, spec.duration_s, actual, spec.deadline_s, spec.interruptible, spec.zones
            )
        )
    return jobs, skipped


@dataclass(frozen=True)
class JobOutcome:
    """The accounting of one execution.

    :param co2: gCO2/kWh x h of actual carbon over the runs (per kW of load), NaN without carbon actuals.
    :param cost: currency/MWh x h of actual price (per MW of load), NaN without price actuals.
    :param objective: the normalised objective actually incurred.
    :param late: whether it ended after the deadline.
    :param delay_h: completion later than running at once, in hours.
    """

    co2: float
    cost: float
    objective: float
    late: bool
    delay_h: float


def outcome(replay: Replay, job: ReplayJob, execution: Execution, settings: PolicySettings) -> JobOutcome:
    """Account one execution against the actuals.

    :param replay: the world.
    :param job: the job.
    :param execution: what ran.
    :param settings: for the resume cost.
    """
    from airflow_provider_gridaware.planning.policies import objective_cost

    spans = list(execution.runs) + [
        (r, r + settings.resume_cost_s) for r in execution.resumes if settings.resume_cost_s
    ]

    def total(kind: str) -> float:
        if not replay.has(execution.zone, kind):
            return math.nan
        return sum(replay.integral(execution.zone, kind, a, b) for a, b in spans)

    return JobOutcome(
        co2=total("carbon"),
        cost=total("price"),
        objective=objective_cost(replay, execution, settings),
        late=execution.end_s > job.deadline_s,
        delay_h=(execution.end_s - (job.submit_s + job.actual_s)) / 3600.0,
    )


@dataclass(frozen=True)
class Summary:
    """Figures of one policy against run-now and the oracle on the same jobs.

    :param policy: the policy name.
    :param jobs: jobs replayed.
    :param co2_saved_pct: CO2 saved vs run-now, % (NaN without carbon).
    :param cost_saved_pct: cost saved vs run-now, % (NaN without prices).
    :param oracle_captured_pct: share of the oracle's CO2 saving captured, % (the objective's, without carbon).
    :param misses: deadline misses.
    :param run_now_misses: deadline misses of run-now on the same jobs and run times.
    :param mean_delay_h: mean added completion delay, hours.
    :param p95_delay_h: 95th percentile of the added delay, hours.
    :param time_shift_pct: CO2 saved by moving in time within the chosen zone, % of run-now.
    :param region_shift_pct: CO2 saved by choosing another zone than the home zone, % of run-now.
    :param multi_zone_jobs: jobs with more than one candidate zone.
    :param decisions: mean plans made per job.
    """

    policy: str
    jobs: int
    co2_saved_pct: float
    cost_saved_pct: float
    oracle_captured_pct: float
    misses: int
    run_now_misses: int
    mean_delay_h: float
    p95_delay_h: float
    time_shift_pct: float
    region_shift_pct: float
    multi_zone_jobs: int
    decisions: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarise(
    replay: Replay,
    jobs: Sequence[ReplayJob],
    policy: str,
    executions: Sequence[Execution],
    run_now: Sequence[Execution],
    oracle: Sequence[Execution],
    settings: PolicySettings,
) -> Summary:
    """Compare a policy's executions with run-now and the oracle.

    :param replay: the world.
    :param jobs: the jobs, in the same order as the executions.
    :param policy: the policy name.
    :param executions: the policy's executions.
    :param run_now: run-now's executions.
    :param oracle: the oracle's executions.
    :param settings: the knobs (resume cost).
    """
    mine = [outcome(replay, j, e, settings) for j, e in zip(jobs, executions, strict=True)]
    base = [outcome(replay, j, e, settings) for j, e in zip(jobs, run_now, strict=True)]
    best = [outcome(replay, j, e, settings) for j, e in zip(jobs, oracle, strict=True)]

    def saved(field: str) -> float:
        b = sum(getattr(o, field) for o in base)
        m = sum(getattr(o, field) for o in mine)
        return 100.0 * (b - m) / abs(b) if b and math.isfinite(b) and math.isfinite(m) else math.nan

    use_carbon = all(math.isfinite(o.co2) for o in base) and bool(base)
    field = "co2" if use_carbon else "objective"
    b_total = sum(getattr(o, field) for o in base)
    m_total = sum(getattr(o, field) for o in mine)
    o_total = sum(getattr(o, field) for o in best)
    potential = b_total - o_total
    captured = 100.0 * (b_total - m_total) / potential if abs(potential) > 1e-9 * max(abs(b_total), 1.0) else math.nan
    # Split the saving: run-now in the chosen zone separates "where" from "when".
    region = 0.0
    for job, execution, home in zip(jobs, executions, base, strict=True):
        there = _run_now_in(replay, job, execution.zone, settings)
        region += getattr(home, field) - getattr(there, field)
    delays = np.array([o.delay_h for o in mine]) if mine else np.zeros(1)
    return Summary(
        policy=policy,
        jobs=len(jobs),
        co2_saved_pct=saved("co2"),
        cost_saved_pct=saved("cost"),
        oracle_captured_pct=captured,
        misses=sum(o.late for o in mine),
        run_now_misses=sum(o.late for o in base),
        mean_delay_h=float(delays.mean()),
        p95_delay_h=float(np.percentile(delays, 95)),
        time_shift_pct=100.0 * (b_total - m_total - region) / b_total if b_total else math.nan,
        region_shift_pct=100.0 * region / b_total if b_total else math.nan,
        multi_zone_jobs=sum(len(j.zones) > 1 for j in jobs),
        decisions=float(np.mean([e.decisions for e in executions])) if executions else 0.0,
    )


def _run_now_in(replay: Replay, job: ReplayJob, zone: str, settings: PolicySettings) -> JobOutcome:
    execution = Execution(job.job_id, zone, ((job.submit_s, job.submit_s + job.actual_s),))
    return outcome(replay, job, execution, settings)


@dataclass(frozen=True)
class BacktestResult:
    """Executions and summary per policy.

    :param jobs: the replayed jobs.
    :param skipped: ids of jobs outside the data.
    :param executions: per policy, the executions in job order.
    :param summaries: per policy, the summary.
    """

    jobs: list[ReplayJob]
    skipped: list[str]
    executions: dict[str, list[Execution]]
    summaries: dict[str, Summary]


def run_backtest(
    replay: Replay,
    specs: Sequence[JobSpec],
    policies: Sequence[str],
    *,
    settings: PolicySettings | None = None,
    runtime_error: float = 0.0,
    seed: int = 0,
) -> BacktestResult:
    """Replay ``specs`` with each policy (run-now and the oracle are always computed as references).

    :param replay: the world.
    :param specs: the jobs.
    :param policies: policy names.
    :param settings: the knobs.
    :param runtime_error: relative error of the run-time estimates (uniform +/-).
    :param seed: random seed for the actual run times.
    """
    settings = settings or PolicySettings()
    jobs, skipped = replay_jobs(specs, replay, runtime_error=runtime_error, seed=seed)
    executions: dict[str, list[Execution]] = {}
    for name in ("run-now", "oracle", *policies):
        if name not in executions:
            executions[name] = replay_policy(replay, name, jobs, settings)
    summaries = {
        name: summarise(replay, jobs, name, executions[name], executions["run-now"], executions["oracle"], settings)
        for name in policies
    }
    return BacktestResult(jobs, skipped, executions, summaries)


def format_summaries(summaries: Mapping[str, Summary] | Sequence[Summary], *, title: str = "") -> str:
    """A fixed-width table of summaries, one row per policy.

    :param summaries: the summaries.
    :param title: an optional first line.
    """
    rows = list(summaries.values()) if isinstance(summaries, Mapping) else list(summaries)
    header = (
        f"{'policy':<12} {'jobs':>5} {'CO2 saved':>9} {'cost saved':>10} {'of oracle':>9} {'misses':>7} "
        f"{'run-now':>7} {'delay h':>7} {'p95 h':>6} {'time':>6} {'region':>6} {'plans/job':>9}"
    )
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for s in rows:
        lines.append(
            f"{s.policy:<12} {s.jobs:>5} {_pct(s.co2_saved_pct):>9} {_pct(s.cost_saved_pct):>10} "
            f"{_pct(s.oracle_captured_pct):>9} {s.misses:>7} {s.run_now_misses:>7} {s.mean_delay_h:>7.2f} "
            f"{s.p95_delay_h:>6.2f} {_pct(s.time_shift_pct):>6} {_pct(s.region_shift_pct):>6} {s.decisions:>9.1f}"
        )
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}%"
