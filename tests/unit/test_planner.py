"""The planner: exact small examples, the vectorised core against brute force, and properties for any forecast."""

from __future__ import annotations

import itertools
import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_gridaware.planning import core
from airflow_provider_gridaware.planning.decision import Window, decide
from airflow_provider_gridaware.planning.job import Job, PriorityClass
from airflow_provider_gridaware.planning.objective import IncomparableSignalsError, Objective
from airflow_provider_gridaware.planning.plan import Plan, PlanStatus
from airflow_provider_gridaware.planning.planner import PlannerSettings, ZoneSignals, plan, plan_jobs, prepare
from airflow_provider_gridaware.signals import CarbonMetric, SeriesType, SignalKind, build_series

UTC = timezone.utc
T0 = datetime(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)


def carbon(zone, values, *, start=T0, step=H, metric=CarbonMetric.AVERAGE, gaps=(), actual=False):
    points, t = [], start
    for i, v in enumerate(values):
        if i in gaps:
            t += step
            continue
        points.append((t, t + step, v))
        t += step
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=metric,
        zone=zone,
        source="test",
        series_type=SeriesType.ACTUAL if actual else SeriesType.FORECAST,
        issued_at=None if actual else start,
        unit="gCO2eq/kWh",
        points=points,
    )


def price(zone, values, *, start=T0, currency="EUR"):
    points = [(start + i * H, start + (i + 1) * H, v) for i, v in enumerate(values)]
    return build_series(
        kind=SignalKind.PRICE,
        zone=zone,
        source="test",
        series_type=SeriesType.FORECAST,
        issued_at=start,
        unit=f"{currency}/MWh",
        currency=currency,
        points=points,
    )


def job(hours=2.0, slack_hours=10.0, zones=("A",), now=T0, **kw):
    duration = timedelta(hours=hours)
    kw.setdefault("runtime_margin", 0.0)
    kw.setdefault("min_gain", 0.0)
    return Job(
        duration=duration, earliest_start=now, deadline=now + duration + timedelta(hours=slack_hours), zones=zones, **kw
    )


# -- exact examples ---------------------------------------------------------------------------
def test_lowest_mean_window_and_counterfactual():
    p = plan(job(), [ZoneSignals("A", carbon=carbon("A", [5, 4, 1, 1, 3, 9, 9, 9, 9, 9, 9, 9, 9]))], now=T0)
    assert p.start == T0 + 2 * H and p.end == T0 + 4 * H
    assert p.expected_objective is not None and p.now_objective is not None
    assert p.expected_signals == {"gCO2eq/kWh": 1.0}
    assert p.now_signals == {"gCO2eq/kWh": 4.5}
    assert p.status is PlanStatus.SHIFTED and not p.run_now
    assert "starts 2024-05-01T02:00:00Z" in p.reason


def test_partial_slots_are_weighted_by_overlap():
    # 90 minutes from 00:30: half of 100, all of 300 -> (100*30 + 300*60) / 90.
    grid = core.ObjectiveGrid.from_values([[1.0, 3.0]], origin_s=0, step_s=3600)
    total, ok = grid.integral(0, 1800, 1800 + 5400)
    assert bool(ok) and int(total) == (1 * 1800 + 3 * 3600) * core.QUANTUM


def random_grid(
    rng: np.random.Generator, *, zones: tuple[int, int], slots: tuple[int, int], gaps: float, origin_slots: int
) -> tuple[core.ObjectiveGrid, int, int, int]:
    """A grid of 5-minute slots with values 0-5 and a share ``gaps`` of unusable slots (windows touching them
    are not candidates); returns it with its zone count, slot count and step."""
    z, n, step = int(rng.integers(*zones)), int(rng.integers(*slots)), 300
    values = rng.integers(0, 6, size=(z, n)).astype(float)
    values[rng.random((z, n)) < gaps] = math.nan
    return core.ObjectiveGrid.from_values(values, origin_s=origin_slots * step, step_s=step), z, n, step


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_one_window_integral_equals_the_array_integral(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    grid, zones, n, step = random_grid(rng, zones=(1, 4), slots=(1, 12), gaps=0.15, origin_slots=7)
    for _ in range(20):
        z = int(rng.integers(0, zones))
        a = int(rng.integers(0, (n + 9) * step))  # before, inside and after the grid
        b = a + int(rng.integers(-step, n * step))
        total, ok = grid.integral(z, a, b)  # the scalar path
        totals, oks = grid.integral([z], [a], [b])
        assert (int(total), bool(ok)) == (int(totals[0]), bool(oks[0])), (z, a, b)


def test_ties_go_to_the_earliest_start():
    p = plan(job(hours=1), [ZoneSignals("A", carbon=carbon("A", [3, 1, 2, 1, 1, 3, 3, 3, 3, 3, 3, 3]))], now=T0)
    assert p.start == T0 + H


def test_flat_forecast_runs_now():
    p = plan(job(), [ZoneSignals("A", carbon=carbon("A", [7] * 20))], now=T0)
    assert p.run_now and p.status is PlanStatus.BEST_NOW


def test_not_worth_waiting_below_min_gain():
    values = [100, 100, 99, 99] + [100] * 16
    p = plan(job(min_gain=0.05), [ZoneSignals("A", carbon=carbon("A", values))], now=T0)
    assert p.run_now and p.status is PlanStatus.NOT_WORTH_WAITING
    p = plan(job(min_gain=0.0), [ZoneSignals("A", carbon=carbon("A", values))], now=T0)
    assert p.start == T0 + 2 * H


def test_gaps_are_unusable_and_no_signal_runs_now():
    values = [9, 9, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9]
    p = plan(job(), [ZoneSignals("A", carbon=carbon("A", values, gaps=(3,)))], now=T0)
    assert p.start != T0 + 2 * H  # the window over the hole is not a candidate
    p = plan(job(), [ZoneSignals("A")], now=T0)
    assert p.run_now and p.status is PlanStatus.NO_SIGNAL


def test_latest_start_keeps_the_runtime_margin():
    j = job(hours=4, slack_hours=4, runtime_margin=0.5)  # deadline at +8h, latest start at +2h
    values = [9, 9, 9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1]
    p = plan(j, [ZoneSignals("A", carbon=carbon("A", values))], now=T0)
    assert p.latest_start == T0 + 2 * H
    assert p.start <= p.latest_start and p.end <= j.deadline - j.duration * 0.5


def test_deadline_at_risk_runs_now():
    j = job(hours=4, slack_hours=0.5, runtime_margin=0.25)
    p = plan(j, [ZoneSignals("A", carbon=carbon("A", [9, 1, 1, 1, 1, 1, 1]))], now=T0)
    assert p.run_now and p.status is PlanStatus.DEADLINE_AT_RISK


def test_critical_jobs_never_wait():
    signals = [ZoneSignals("A", carbon=carbon("A", [9, 1, 1, 1] * 5))]
    critical = job(priority_class=PriorityClass.CRITICAL)
    decision = decide(critical, prepare(signals, now=T0, until=critical.deadline), T0)
    assert decision.release and decision.plan.status is PlanStatus.CRITICAL


def test_region_shifting_with_penalty():
    signals = [ZoneSignals("A", carbon=carbon("A", [300] * 20)), ZoneSignals("B", carbon=carbon("B", [200] * 20))]
    p = plan(job(zones=("A", "B")), signals, now=T0)
    assert p.zone == "B" and p.run_now and "lower than A now" in p.reason
    # A penalty of 0.5 typical levels (250) outweighs the 100 g difference.
    p = plan(job(zones=("A", "B"), zone_penalty={"B": 0.5}), signals, now=T0)
    assert p.zone == "A"


def test_carbon_and_price_weights_are_normalised():
    c = carbon("A", [100, 100, 50, 50, 100, 100, 100, 100, 100, 100])
    p_ = price("A", [10, 10, 40, 40, 5, 5, 40, 40, 40, 40])
    signals = [ZoneSignals("A", carbon=c, price=p_)]
    assert plan(job(carbon_weight=1, price_weight=0), signals, now=T0).start == T0 + 2 * H
    assert plan(job(carbon_weight=0, price_weight=1), signals, now=T0).start == T0 + 4 * H


def test_average_and_marginal_are_never_mixed():
    signals = [
        ZoneSignals("A", carbon=carbon("A", [1] * 5)),
        ZoneSignals("B", carbon=carbon("B", [1] * 5, metric=CarbonMetric.MARGINAL)),
    ]
    with pytest.raises(IncomparableSignalsError, match="average and marginal"):
        prepare(signals, now=T0, until=T0 + 5 * H)


def test_price_currencies_are_never_mixed():
    signals = [ZoneSignals("A", price=price("A", [1] * 5)), ZoneSignals("B", price=price("B", [1] * 5, currency="GBP"))]
    with pytest.raises(IncomparableSignalsError):
        prepare(signals, now=T0, until=T0 + 5 * H)


def test_own_forecaster_fills_beyond_the_horizon():
    # Three weeks of a clean daily pattern (low at 03:00) as history, and a provider forecast of 2 hours only.
    history = [100 + 80 * math.cos(2 * math.pi * ((h % 24) - 15) / 24) for h in range(21 * 24)]
    past = carbon("A", history, start=T0 - 21 * 24 * H, actual=True)
    forecast = carbon("A", [180, 180])
    j = job(hours=2, slack_hours=20)
    p = plan(j, [ZoneSignals("A", carbon=forecast, carbon_history=past)], now=T0)
    assert p.start.hour in {2, 3}, p.reason  # found the nightly low beyond the provider's 2 hours
    grid = prepare([ZoneSignals("A", carbon=forecast, carbon_history=past)], now=T0, until=j.deadline)
    assert "own forecast" in grid.sources["A"]


def test_interruptible_uses_the_cheap_slots_with_min_chunk():
    values = [1, 1, 9, 9, 9, 9, 1, 1, 9, 9, 9, 9, 9, 9]
    j = job(hours=4, slack_hours=10, interruptible=True, min_chunk=2 * H)
    p = plan(j, [ZoneSignals("A", carbon=carbon("A", values))], now=T0)
    assert [(c.start, c.end) for c in p.chunks] == [(T0, T0 + 2 * H), (T0 + 6 * H, T0 + 8 * H)]
    assert all(c.duration >= j.min_chunk for c in p.chunks)
    # A resume costing more than the saving keeps the job in one piece.
    j = job(hours=4, slack_hours=10, interruptible=True, min_chunk=2 * H, resume_cost=10 * H)
    p = plan(j, [ZoneSignals("A", carbon=carbon("A", values))], now=T0)
    assert len(p.chunks) == 1


def test_dp_beats_greedy_when_chunks_have_a_minimum():
    # Greedy would take slots 0, 2 and 3 (cost 3) but a chunk of one slot is not allowed.
    choice = core.cheapest_chunks([1, 9, 1, 1, 9, 1], need=3, min_chunk=2)
    assert choice is not None and choice.cost == 11 and choice.runs == ((0, 3),)
    assert core.cheapest_chunks([1, 9, 1, 1, 9, 1], need=3, min_chunk=1).runs == ((0, 1), (2, 4))
    assert core.cheapest_chunks([1, 1], need=3) is None


def test_plan_and_job_round_trip_through_json():
    j = job(zones=("A", "B"), interruptible=True, min_chunk=H, zone_penalty={"B": 0.1}, job_id="j-1")
    assert Job.from_dict(json.loads(json.dumps(j.to_dict()))) == j
    p = plan(j, [ZoneSignals("A", carbon=carbon("A", [5, 1, 1, 5, 5, 5] * 3))], now=T0)
    assert Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_job_validation():
    with pytest.raises(ValueError, match="timezone"):
        Job(duration=H, earliest_start=datetime(2024, 1, 1), deadline=T0, zones=("A",))
    with pytest.raises(ValueError, match="both 0"):
        job(carbon_weight=0, price_weight=0)
    with pytest.raises(ValueError, match="not after"):
        Job(duration=H, earliest_start=T0, deadline=T0, zones=("A",))
    with pytest.raises(ValueError):
        Objective(0, 0)


def test_previous_plan_is_kept_unless_clearly_beaten():
    values = [9, 9, 9, 2.0, 2.0, 9, 9, 1.99, 1.99, 9, 9, 9, 9, 9]
    signals = [ZoneSignals("A", carbon=carbon("A", values))]
    j = job(hours=2, slack_hours=12)
    fresh = plan(j, signals, now=T0, settings=PlannerSettings(optimism=0))
    assert fresh.start == T0 + 7 * H
    earlier = Window("A", T0 + 3 * H)
    kept = plan(j, signals, now=T0, previous=earlier, settings=PlannerSettings(optimism=0))
    assert kept.start == T0 + 3 * H


def test_plan_jobs_batches_match_single_plans():
    signals = [
        ZoneSignals("A", carbon=carbon("A", [5, 3, 1, 4, 2, 6, 1, 1, 7, 3] * 3)),
        ZoneSignals("B", carbon=carbon("B", [4] * 30)),
    ]
    jobs = [
        job(hours=h, slack_hours=s, zones=z) for h, s, z in itertools.product((1, 2.5), (3, 12), (("A",), ("B", "A")))
    ]
    grid = prepare(signals, now=T0, until=T0 + 30 * H)
    batch = plan_jobs(jobs, grid, now=T0)
    assert [(p.zone, p.start) for p in batch] == [
        (plan(j, signals, now=T0).zone, plan(j, signals, now=T0).start) for j in jobs
    ]


def test_decide_waits_for_the_window_and_releases_by_the_latest_start():
    j = job(hours=1, slack_hours=10)
    signals = [ZoneSignals("A", carbon=carbon("A", [9, 9, 9, 9, 1] + [9] * 10))]
    waiting = decide(j, prepare(signals, now=T0, until=j.deadline), T0, refresh=timedelta(minutes=30))
    assert not waiting.release and waiting.plan.start == T0 + 4 * H
    assert T0 + timedelta(minutes=30) <= waiting.wake_at <= T0 + timedelta(minutes=31)  # next refresh (+ spread)
    late = j.latest_start
    assert decide(j, prepare(signals, now=late, until=j.deadline), late).release


# -- the core against brute force -------------------------------------------------------------
def brute_force(values, step, duration, earliest, latest, allowed, home, min_gain):
    zones, n = values.shape

    def integral(z, a, b):
        if a < 0 or b > n * step:
            return None
        total = 0.0
        for k in range(n):
            lo, hi = max(a, k * step), min(b, (k + 1) * step)
            if hi > lo:
                if not np.isfinite(values[z, k]):
                    return None
                total += values[z, k] * (hi - lo)
        return total

    candidates = []
    for z in range(zones):
        if not (allowed[z] or z == home):
            continue
        for s in [earliest] + [k * step for k in range(n + 1) if earliest < k * step <= latest]:
            v = integral(z, s, s + duration)
            if v is not None:
                candidates.append((v, s, -1 if z == home else z, z))
    now = integral(home, earliest, earliest + duration)
    if not candidates or latest < earliest:
        return home, earliest
    best = min(candidates, key=lambda c: (round(c[0], 6), c[1], c[2]))
    if (
        now is not None
        and not (best[1] == earliest and best[3] == home)
        and (now - best[0]) / max(abs(now), 1e-9) < min_gain
    ):
        return home, earliest
    return best[3], best[1]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_best_windows_matches_brute_force(data):
    zones = data.draw(st.integers(1, 3))
    n = data.draw(st.integers(1, 10))
    step = data.draw(st.sampled_from([60, 300]))
    values = np.array(
        data.draw(
            st.lists(
                st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, math.nan]), min_size=n, max_size=n),
                min_size=zones,
                max_size=zones,
            )
        )
    )
    duration = data.draw(st.integers(1, n * step))
    earliest = data.draw(st.integers(-step, n * step))
    latest = data.draw(st.integers(earliest - step, n * step + step))
    allowed = np.array(data.draw(st.lists(st.booleans(), min_size=zones, max_size=zones)))
    home = data.draw(st.integers(0, zones - 1))
    min_gain = data.draw(st.sampled_from([0.0, 0.2]))
    grid = core.ObjectiveGrid.from_values(values, origin_s=0, step_s=step)
    got = core.best_windows(
        grid,
        duration_s=[duration],
        earliest_s=[earliest],
        latest_start_s=[latest],
        zone_ok=allowed[None],
        home_zone=[home],
        min_gain=min_gain,
    )
    assert (int(got.zone[0]), int(got.start_s[0])) == brute_force(
        values, step, duration, earliest, latest, allowed, home, min_gain
    )


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_batch_equals_one_by_one(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    grid, zones, n, step = random_grid(rng, zones=(1, 5), slots=(5, 40), gaps=0.1, origin_slots=10_000)
    count = 12
    duration = rng.choice([300, 600, 1234], count)
    earliest = 10_000 * step + rng.integers(0, n * step // 2, count)
    if data.draw(st.booleans()):
        earliest[:] = earliest[0]  # the trigger's case: every job planned "now" (running-minimum path)
    latest = earliest + rng.integers(-600, n * step // 2, count)
    allowed = rng.random((count, zones)) < 0.6
    home = rng.integers(0, zones, count)
    penalty = rng.choice([0.0, 0.1, -0.05, 0.5], (count, zones))
    min_gain = rng.choice([0.0, 0.05, 0.3], count)
    batch = core.best_windows(
        grid,
        duration_s=duration,
        earliest_s=earliest,
        latest_start_s=latest,
        zone_ok=allowed,
        home_zone=home,
        penalty=penalty,
        min_gain=min_gain,
    )
    fields = ("zone", "start_s", "score", "now_score", "run_now", "status")
    for k in range(count):
        # One job takes its own path (a trigger's call); it must answer as the batch does, field by field.
        one = core.best_windows(
            grid,
            duration_s=duration[k : k + 1],
            earliest_s=earliest[k : k + 1],
            latest_start_s=latest[k : k + 1],
            zone_ok=allowed[k : k + 1],
            home_zone=home[k : k + 1],
            penalty=penalty[k : k + 1],
            min_gain=min_gain[k : k + 1],
        )
        assert [getattr(one, f)[0] for f in fields] == [getattr(batch, f)[k] for f in fields], k
        assert all(getattr(one, f).dtype == getattr(batch, f).dtype for f in fields)


def brute_chunks(costs, need, min_chunk, resume, final):
    best = None
    for selected in itertools.product([0, 1], repeat=len(costs)):
        if sum(selected) != need:
            continue
        runs = core._runs(np.array(selected, bool))
        if any(b - a < min(min_chunk, need) for a, b in runs):
            continue
        last = runs[-1][1] - 1
        cost = sum(costs[i] for i in range(len(costs)) if selected[i]) - costs[last] + final[last]
        if (
            any(costs[i] >= core.INVALID for i in range(len(costs)) if selected[i] and i != last)
            or final[last] >= core.INVALID
        ):
            continue
        cost += sum(resume[a] for a, _ in runs[1:])
        best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_cheapest_chunks_matches_brute_force(data):
    n = data.draw(st.integers(1, 9))
    costs = data.draw(st.lists(st.sampled_from([0, 1000, 2000, 5000, int(core.INVALID)]), min_size=n, max_size=n))
    final = [c if c >= core.INVALID else c // 2 for c in costs]
    resume = data.draw(st.lists(st.sampled_from([0, 500, 3000]), min_size=n, max_size=n))
    need = data.draw(st.integers(1, n))
    min_chunk = data.draw(st.integers(1, 4))
    got = core.cheapest_chunks(costs, need=need, min_chunk=min_chunk, resume_costs=resume, final_costs=final)
    expected = brute_chunks(costs, need, min_chunk, resume, final)
    assert (None if got is None else got.cost) == expected
    if got is not None:
        assert sum(b - a for a, b in got.runs) == need
        assert all(b - a >= min(min_chunk, need) for a, b in got.runs)


# -- properties for any forecast --------------------------------------------------------------
garbage = st.one_of(
    st.floats(0, 1e4),
    st.floats(0, 1e300),
    st.sampled_from([0.0, 1e-300, 5e299]),
)


@st.composite
def forecasts(draw):
    """Any carbon forecast a source might return: none, empty, gapped, tiny, huge, starting late or early."""
    kind = draw(st.sampled_from(["none", "empty", "series"]))
    if kind == "none":
        return None
    if kind == "empty":
        return carbon("A", [])
    offset = draw(st.integers(-6, 12))
    step = draw(st.sampled_from([timedelta(minutes=5), timedelta(minutes=30), H]))
    values = draw(st.lists(garbage, min_size=1, max_size=40))
    gaps = draw(st.sets(st.integers(0, 39), max_size=5))
    return carbon("A", values, start=T0 + offset * H, step=step, gaps=gaps)


@st.composite
def jobs(draw):
    interruptible = draw(st.booleans())
    return Job(
        duration=timedelta(minutes=draw(st.integers(5, 12 * 60))),
        earliest_start=T0 + timedelta(minutes=draw(st.integers(0, 180))),
        deadline=T0 + timedelta(hours=draw(st.integers(1, 30))) + timedelta(hours=13),
        zones=("A",),
        interruptible=interruptible,
        min_chunk=timedelta(minutes=draw(st.sampled_from([0, 15, 60, 120]))),
        runtime_margin=draw(st.sampled_from([0.0, 0.1, 0.25])),
        min_gain=draw(st.sampled_from([0.0, 0.01, 0.1])),
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(forecasts(), jobs(), st.integers(0, 6 * 60))
def test_no_plan_starts_after_its_latest_start_nor_crosses_its_deadline(forecast, j, minutes_late):
    now = T0 + timedelta(minutes=minutes_late)
    signals = [ZoneSignals("A", carbon=forecast)]
    p = plan(j, signals, now=now, settings=PlannerSettings(step=timedelta(minutes=5)))
    effective_now = max(now, j.earliest_start)
    assert p.start >= effective_now
    assert p.start <= max(j.latest_start, effective_now)
    assert p.latest_start == max(j.latest_start, effective_now)
    if j.latest_start >= effective_now:
        assert p.end <= j.deadline  # a plan never crosses its deadline when it can be kept
    else:
        assert p.run_now
    if j.interruptible and len(p.chunks) > 1:
        assert all(c.duration >= j.min_chunk for c in p.chunks)
    assert sum((c.duration for c in p.chunks), timedelta(0)) >= j.duration


@settings(max_examples=40, deadline=None)
@given(forecasts(), jobs())
def test_receding_releases_never_pass_the_latest_start(forecast, j):
    """A trigger that re-plans on every wake-up (the forecast may even vanish) releases by the latest start."""
    signals = [ZoneSignals("A", carbon=forecast)]
    now, previous = j.earliest_start, None
    for _ in range(2000):  # a dead source is asked again every 5 minutes
        grid = prepare(signals, now=now, until=max(j.deadline, now)) if signals[0].carbon is not None else None
        decision = decide(j, grid, now, previous, refresh=timedelta(minutes=30))
        if decision.release:
            break
        assert decision.wake_at is not None and decision.wake_at > now
        now, previous = decision.wake_at, (None if decision.fallback else decision.window)
        # the source fails now and then
        signals = [ZoneSignals("A")] if now.minute == 30 else [ZoneSignals("A", carbon=forecast)]
    assert decision.release
    assert now <= max(j.latest_start, j.earliest_start)
