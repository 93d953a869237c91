"""The grid-event response: the policy, the planner's exactly-once arithmetic, and a pass over a real store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest

from airflow_provider_gridaware.planning.event_constraints import shedding_spans
from airflow_provider_gridaware.planning.grid_response import (
    Hold,
    InFlightWork,
    TargetKind,
    WorkState,
    plan_response,
)
from airflow_provider_gridaware.planning.job import PriorityClass
from airflow_provider_gridaware.planning.response_policy import (
    PolicyError,
    ResponseAction,
    ResponsePolicy,
    response_table,
)
from airflow_provider_gridaware.responder import respond
from airflow_provider_gridaware.signals.grid_event import (
    EventInterval,
    EventSignal,
    EventSignalKind,
    EventStatus,
    EventTarget,
)
from airflow_provider_gridaware.store.responses import ResponseRecord, ResponseStore
from tests.support.grid_events import T0, make_event, price_signal, simple_signal

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
GB = (EventTarget(kind="zone", value="GB"),)
DURING = T0 + timedelta(minutes=30)
AFTER = T0 + 2 * HOUR


def work(
    target: str,
    cls: str,
    *,
    zone: str | None = "GB",
    state: WorkState = WorkState.RUNNING,
    power_kw: float = 1.0,
    weight: float = 1.0,
    kind: TargetKind = TargetKind.KUBERNETES_JOB,
) -> InFlightWork:
    return InFlightWork(target, kind, PriorityClass(cls), zone, state, power_kw, weight)


FLEET = [work("crit", "critical"), work("flex", "flexible"), work("batch", "batch")]


def event(event_id: str = "e1", mod: int = 0, status: EventStatus = EventStatus.ACTIVE, **overrides: Any):
    return make_event(event_id=event_id, modification_number=mod, status=status, targets=GB, **overrides)


def capacity(limit_kw: float, start: datetime = T0) -> EventSignal:
    return EventSignal(
        kind=EventSignalKind.IMPORT_CAPACITY_LIMIT,
        name="IMPORT_CAPACITY_LIMIT",
        unit="kW",
        intervals=(EventInterval(start=start, end=start + HOUR, value=limit_kw),),
    )


def holds_of(plan, start_id: int = 1) -> list[Hold]:
    return [
        Hold(start_id + i, p.work.target, (p.event.source, p.event.event_id), p.hold_no)
        for i, p in enumerate(plan.pauses)
    ]


# -- the policy ---------------------------------------------------------------------------------------
def test_defaults_critical_keeps_flexible_checkpoints_batch_stops():
    plan = plan_response([event()], FLEET, [], now=DURING)
    assert {(p.work.target, p.action) for p in plan.pauses} == {
        ("flex", ResponseAction.CHECKPOINT),
        ("batch", ResponseAction.STOP),
    }
    assert all("SIMPLE level 2" in p.reason for p in plan.pauses)


def test_configured_levels_and_price_threshold():
    policy = ResponsePolicy.from_config('{"simple_min_level": {"flexible": 3}, "price_thresholds": {"EUR": 300}}')
    plan = plan_response([event()], FLEET, [], now=DURING, policy=policy)
    assert [p.work.target for p in plan.pauses] == ["batch"]  # level 2: flexible only from 3
    pricey = event("p", signals=(price_signal(prices=(350.0,)),))
    cheap = event("c", signals=(price_signal(prices=(250.0,)),))
    assert {p.work.target for p in plan_response([pricey], FLEET, [], now=DURING, policy=policy).pauses} == {
        "flex",
        "batch",
    }
    assert not plan_response([cheap], FLEET, [], now=DURING, policy=policy)
    assert not plan_response([pricey], FLEET, [], now=DURING)  # no threshold by default: prices only steer


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"actions": {"critical": "stop"}}, "critical work always keeps running"),
        ({"simple_min_level": {"batch": 0}}, "not 1-3"),
        ({"price_thresholds": {"EURO": 1}}, "ISO 4217"),
        ({"gpu_kw": -1}, "positive power"),
        ({"actions": {"batch": "explode"}}, "actions: keep, checkpoint, stop"),
        ({"shed": True}, "unknown response policy key"),
        ("{not json", "not valid JSON"),
    ],
)
def test_a_bad_policy_says_what_is_wrong(config, says):
    with pytest.raises(PolicyError, match=says):
        ResponsePolicy.from_config(config)


def test_capacity_limit_sheds_least_valuable_first_until_under_the_limit():
    fleet = [
        work("crit", "critical", power_kw=4.0),
        work("flex-hi", "flexible", power_kw=2.8, weight=5),
        work("flex-lo", "flexible", power_kw=2.8, weight=1),
        work("batch", "batch", power_kw=1.4),
    ]
    # 11 kW planned, limit 7: batch (1.4) then the low-weight flexible (2.8) -> 6.8 kW.
    plan = plan_response([event(signals=(capacity(7.0),))], fleet, [], now=DURING)
    assert [p.work.target for p in plan.pauses] == ["batch", "flex-lo"]
    # Re-planned with those held (paused): the same set, nothing released (no flapping).
    paused = [
        w
        if w.target not in ("batch", "flex-lo")
        else work(w.target, w.priority_class.value, state=WorkState.PAUSED, power_kw=w.power_kw, weight=w.weight)
        for w in fleet
    ]
    again = plan_response([event(signals=(capacity(7.0),))], paused, holds_of(plan), now=DURING)
    assert not again


def test_power_from_gpus_or_declared_or_default():
    policy = ResponsePolicy(gpu_kw=0.7, default_task_kw=0.3)
    assert policy.task_kw(gpus=8) == pytest.approx(5.6)
    assert policy.task_kw(gpus=8, power_kw=3.0) == 3.0
    assert policy.task_kw() == 0.3


def test_waiting_triggers_use_the_same_rule():
    assert "GB" in shedding_spans([event()])
    policy = ResponsePolicy.from_config({"simple_min_level": {"flexible": 3, "batch": 3}})
    assert shedding_spans([event()], policy=policy) == {}
    assert shedding_spans([event(signals=(simple_signal(levels=(3,)),))], policy=policy)["GB"]
    assert shedding_spans([event(signals=(capacity(5.0),))])["GB"]
    assert shedding_spans([event(signals=(price_signal(prices=(500.0,)),))]) == {}
    priced = ResponsePolicy.from_config({"price_thresholds": {"EUR": 300}})
    assert shedding_spans([event(signals=(price_signal(prices=(500.0,)),))], policy=priced)["GB"]


def test_the_docs_table():
    rows = response_table()
    assert rows[0] == ("SIMPLE level 1", "keep", "checkpoint", "stop")
    assert rows[-1][0] == "import capacity limit" and rows[-1][1] == "keep"


# -- exactly once under duplicates, late, out-of-order, overlapping events ---------------------------------
def test_duplicates_and_recorded_holds_plan_nothing_new():
    first = plan_response([event(), event()], FLEET, [], now=DURING)
    assert len(first.pauses) == 2
    paused = [
        work("crit", "critical"),
        work("flex", "flexible", state=WorkState.PAUSED),
        work("batch", "batch", state=WorkState.PAUSED),
    ]
    assert not plan_response([event(), event()], paused, holds_of(first), now=DURING)


def test_the_end_releases_and_resumes_exactly_what_was_held():
    first = plan_response([event()], FLEET, [], now=DURING)
    paused = [
        work("crit", "critical"),
        work("flex", "flexible", state=WorkState.PAUSED),
        work("batch", "batch", state=WorkState.PAUSED),
        work("manual", "batch", state=WorkState.PAUSED),
    ]
    for events, now, why in [
        ([event()], AFTER, "event ended"),  # the intervals ended, no message
        ([event(), event(status=EventStatus.COMPLETED)], DURING, "event ended"),  # ended early by the party
        ([event(status=EventStatus.COMPLETED), event()], DURING, "event ended"),  # a late "active" after it
        ([event(), event(mod=1, status=EventStatus.CANCELLED)], DURING, "event cancelled"),
        (
            [event(), event(mod=1, signals=(simple_signal(levels=(2,), step=timedelta(minutes=20)),))],
            DURING,
            "event ended",
        ),  # modified: shortened to 20 minutes
    ]:
        plan = plan_response(events, paused, holds_of(first), now=now)
        assert not plan.pauses
        assert {(r.hold.target, r.resume) for r in plan.releases} == {("flex", True), ("batch", True)}
        assert all(why in r.reason for r in plan.releases)


def test_a_cancellation_before_the_start_pauses_nothing_and_a_late_lower_modification_is_ignored():
    cancelled = event(mod=1, status=EventStatus.CANCELLED)
    assert not plan_response([cancelled, event(mod=0)], FLEET, [], now=DURING)  # mod 0 arrives late
    assert not plan_response([event(status=EventStatus.FAR)], FLEET, [], now=T0 - HOUR)


def test_overlapping_events_resume_only_when_the_last_hold_goes():
    second = event("e2", signals=(simple_signal(levels=(1, 1)),))  # two hours
    first_plan = plan_response([event()], FLEET, [], now=DURING)
    paused = [
        work("crit", "critical"),
        work("flex", "flexible", state=WorkState.PAUSED),
        work("batch", "batch", state=WorkState.PAUSED),
    ]
    joined = plan_response([event(), second], paused, holds_of(first_plan), now=DURING)
    assert {(p.work.target, p.join) for p in joined.pauses} == {("flex", True), ("batch", True)}
    holds = holds_of(first_plan) + holds_of(joined, start_id=10)
    later = plan_response([event(), second], paused, holds, now=T0 + timedelta(minutes=90))
    assert {(r.hold.event[1], r.resume) for r in later.releases} == {("e1", False)}
    done = plan_response([event(), second], paused, holds_of(joined, start_id=10), now=T0 + 3 * HOUR)
    assert {(r.hold.target, r.resume) for r in done.releases} == {("flex", True), ("batch", True)}


def test_waiting_finished_and_hand_paused_work_is_never_touched_and_test_events_are_ignored():
    others = [work("waiting", "batch", state=WorkState.OTHER), work("hand", "flexible", state=WorkState.PAUSED)]
    assert not plan_response([event()], others, [], now=DURING)
    assert not plan_response([event(test_event=True)], FLEET, [], now=DURING)
    assert not plan_response([event()], [work("nl", "batch", zone="NL")], [], now=DURING)
    assert plan_response([event()], [work("site", "batch", zone=None)], [], now=DURING).pauses


# -- a pass over a real store --------------------------------------------------------------------------
class FakeJobs:
    kind = TargetKind.KUBERNETES_JOB

    def __init__(self, fleet: list[InFlightWork]) -> None:
        self.state = {w.target: w for w in fleet}
        self.calls: list[tuple[str, str]] = []

    def owns(self, target: str) -> bool:
        return target in self.state

    def discover(self) -> list[InFlightWork]:
        return list(self.state.values())

    def pause(self, w: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        self.calls.append(("pause", w.target))
        if w.target == "broken":
            raise ConnectionError("cluster unreachable")
        self.state[w.target] = work(w.target, w.priority_class.value, state=WorkState.PAUSED)
        return "paused", {"why": reason}

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        self.calls.append(("resume", record.target))
        w = self.state[record.target]
        self.state[record.target] = work(w.target, w.priority_class.value)
        return "resumed", {}


def test_two_runners_apply_each_step_once_and_the_record_says_how_long_it_waited(tmp_path: Path):
    now = [DURING]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeJobs([*FLEET, work("broken", "batch")])
    with ResponseStore(url, clock=lambda: now[0]) as one, ResponseStore(url, clock=lambda: now[0]) as two:
        first = respond(events=[event()], actuators=[jobs], store=one, now=DURING)
        second = respond(events=[event(), event()], actuators=[jobs], store=two, now=DURING)
        assert sorted(p["target"] for p in first.paused) == ["batch", "flex"]
        assert [f["target"] for f in first.failed] == ["broken"] and "unreachable" in first.failed[0]["error"]
        # The failed pause is closed: the next pass tries again (a new hold number), not twice at once.
        assert [f["target"] for f in second.failed] == ["broken"] and not second.paused
        now[0] = AFTER + timedelta(minutes=5)
        ended = respond(events=[event()], actuators=[jobs], store=one, now=AFTER)
        again = respond(events=[event()], actuators=[jobs], store=two, now=AFTER)
        assert sorted(r["target"] for r in ended.resumed) == ["batch", "flex"] and not again.resumed
        assert jobs.calls.count(("pause", "flex")) == 1 and jobs.calls.count(("resume", "flex")) == 1
        assert ("pause", "crit") not in jobs.calls
        records = {r.target: r for r in one.records() if r.result == "paused"}
        assert records["flex"].waited_seconds == pytest.approx(95 * 60)
        assert records["flex"].resume_reason.startswith("event ended")
        assert not one.open_holds()


def test_a_pause_claimed_by_a_runner_that_stopped_is_applied_by_a_later_pass_once(tmp_path: Path):
    """A runner claimed the pause of 'flex' (the row is in the store) and died before pausing it: within the
    lease nobody touches it; after it one pass (of two) pauses the Job and records it, and the event's end
    resumes it."""
    now = [DURING]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeJobs([work("flex", "flexible")])
    with ResponseStore(url, clock=lambda: now[0]) as one, ResponseStore(url, clock=lambda: now[0]) as two:
        plan = plan_response([event()], jobs.discover(), [], now=DURING)
        (claimed,) = one.claim_pauses(plan.pauses)  # ... and the runner stops here
        assert claimed is not None and one.open_holds()[0].result == "claimed"

        within = DURING + timedelta(minutes=1)
        now[0] = within
        assert not respond(events=[event()], actuators=[jobs], store=one, now=within).paused
        assert jobs.calls == []  # the claimant may still be applying it

        later = DURING + timedelta(minutes=3)
        now[0] = later
        taken = respond(events=[event()], actuators=[jobs], store=one, now=later)
        other = respond(events=[event()], actuators=[jobs], store=two, now=later)
        assert [p["target"] for p in taken.paused] == ["flex"] and not other.paused
        assert jobs.calls == [("pause", "flex")]
        (held,) = one.open_holds()
        assert held.result == "paused" and "runner that stopped" in held.detail["note"]

        now[0] = AFTER
        ended = respond(events=[event()], actuators=[jobs], store=two, now=AFTER)
        assert [r["target"] for r in ended.resumed] == ["flex"] and not one.open_holds()


def test_on_an_accelerated_clock_a_live_runners_fresh_claim_is_not_taken_over(tmp_path: Path):
    """Under ``GRIDAWARE_CLOCK=scaled:...`` a pass's "now" runs ahead of the wall clock the store stamps its
    claims with (an hour after 60 s of wall time at 60x): a claim made a moment ago is not a stopped runner's,
    so another pass leaves it to its claimant (which may be applying it right now)."""
    wall = [DURING]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeJobs([work("flex", "flexible")])
    with ResponseStore(url, clock=lambda: wall[0]) as one, ResponseStore(url, clock=lambda: wall[0]) as two:
        plan = plan_response([event()], jobs.discover(), [], now=DURING)
        (claimed,) = one.claim_pauses(plan.pauses)  # the claimant is applying it ...
        assert claimed is not None
        wall[0] = DURING + timedelta(seconds=5)
        ahead = DURING + timedelta(minutes=10)  # ... while the provider clock reads 10 minutes on
        assert not respond(events=[event()], actuators=[jobs], store=two, now=ahead).paused
        assert jobs.calls == [] and two.open_holds()[0].result == "claimed"
        # Past the lease on the store's clock, the claim is a stopped runner's after all.
        wall[0] = DURING + timedelta(minutes=3)
        assert [p["target"] for p in respond(events=[event()], actuators=[jobs], store=two, now=ahead).paused] == [
            "flex"
        ]


def test_a_pause_the_stopped_runner_had_applied_is_held_and_resumed_at_the_end(tmp_path: Path):
    now = [DURING]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeJobs([work("flex", "flexible")])
    with ResponseStore(url, clock=lambda: now[0]) as store:
        plan = plan_response([event()], jobs.discover(), [], now=DURING)
        store.claim_pauses(plan.pauses)
        jobs.pause(plan.pauses[0].work, "applied, then the runner stopped before recording it")
        later = DURING + timedelta(minutes=3)
        now[0] = later
        taken = respond(events=[event()], actuators=[jobs], store=store, now=later)
        assert [p["target"] for p in taken.paused] == ["flex"]
        assert jobs.calls == [("pause", "flex")]  # not paused a second time
        assert "found already paused" in store.open_holds()[0].detail["note"]
        now[0] = AFTER
        ended = respond(events=[event()], actuators=[jobs], store=store, now=AFTER)
        assert [r["target"] for r in ended.resumed] == ["flex"] and jobs.calls[-1] == ("resume", "flex")


class FakeTerminatingJobs(FakeJobs):
    """Work that, once paused, is no longer listed (as an AWS Batch job is terminated); found by
    ``find_paused``, which fails while ``lookup_error`` is set."""

    def __init__(self, fleet: list[InFlightWork]) -> None:
        super().__init__(fleet)
        self.lookup_error: Exception | None = None

    def owns(self, target: str) -> bool:
        return True  # the test's only actuator: its work that finished is still its own

    def discover(self) -> list[InFlightWork]:
        return [w for w in self.state.values() if w.state is not WorkState.PAUSED]

    def find_paused(self, target: str) -> dict[str, Any] | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        w = self.state.get(target)
        return {"job_id": f"{target}-1"} if w is not None and w.state is WorkState.PAUSED else None

    def resume(self, record: ResponseRecord, reason: str) -> tuple[str, dict[str, Any]]:
        assert record.detail["job_id"] == f"{record.target}-1"  # what the resume needs was recorded
        return super().resume(record, reason)


def test_a_pause_applied_but_not_listed_is_found_and_a_failed_lookup_leaves_the_claim_for_later(tmp_path: Path):
    now = [DURING]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeTerminatingJobs([work("flex", "flexible"), work("batch", "batch")])
    with ResponseStore(url, clock=lambda: now[0]) as store:
        plan = plan_response([event()], jobs.discover(), [], now=DURING)
        store.claim_pauses(plan.pauses)
        jobs.pause(work("flex", "flexible"), "applied, then the runner stopped before recording it")
        jobs.state.pop("batch")  # finished meanwhile: nothing to hold
        jobs.lookup_error = ConnectionError("queue unreachable")
        now[0] = DURING + timedelta(minutes=3)
        failing = respond(events=[event()], actuators=[jobs], store=store, now=now[0])
        assert {(f["target"], f["step"]) for f in failing.failed} == {("flex", "find paused"), ("batch", "find paused")}
        assert {h.target: h.result for h in store.open_holds()} == {"flex": "claimed", "batch": "claimed"}

        jobs.lookup_error = None
        now[0] += timedelta(minutes=1)  # within the lease of the pass that took the claims over
        assert not respond(events=[event()], actuators=[jobs], store=store, now=now[0]).paused
        now[0] += timedelta(minutes=2)
        found = respond(events=[event()], actuators=[jobs], store=store, now=now[0])
        assert [p["target"] for p in found.paused] == ["flex"] and not found.failed
        (held,) = store.open_holds()
        assert held.result == "paused" and held.detail["job_id"] == "flex-1"
        assert {r.target: r.result for r in store.records()}["batch"] == "gone"
        now[0] = AFTER
        ended = respond(events=[event()], actuators=[jobs], store=store, now=AFTER)
        assert [r["target"] for r in ended.resumed] == ["flex"] and jobs.calls.count(("pause", "flex")) == 1


def claim_releases_from_two_runners_and_check(url: str, rounds: int = 5, holds: int = 40) -> None:
    """Two runners (two stores, two threads started together) claim the releases of the same holds of two
    events, each with its own view (runner two has seen a later modification, and lists the holds in the
    opposite order): every hold is won by exactly one, and its row carries the winner's modification and
    reason. Shared with the PostgreSQL contract test."""
    fleet = [work(f"job-{i}", "batch") for i in range(holds)]
    with ResponseStore(url) as one, ResponseStore(url) as two, ThreadPoolExecutor(2) as pool:
        for n in range(rounds):
            events = [event(f"r{n}-a"), event(f"r{n}-b", signals=(simple_signal(levels=(1,)),))]
            ids = [i for i in one.claim_pauses(plan_response(events, fleet, [], now=DURING).pauses) if i]
            one.finish_pauses([(i, "paused", None) for i in ids])
            assert len(ids) == 2 * holds
            first = [(i, 1, f"event ended (modification 1) {i % 2}") for i in ids]
            second = [(i, 2, f"event cancelled (modification 2) {i % 2}") for i in reversed(ids)]
            start = Barrier(2)
            won_one, won_two = pool.map(_claim_at_once, (start, start), (one, two), (first, second))
            assert all(won_one[i] != won_two[i] for i in ids)  # each hold claimed exactly once
            rows = {r.id: r for r in one.records() if r.id in won_one}
            for i in ids:
                winner = first if won_one[i] else second
                (expected,) = [(m, r) for j, m, r in winner if j == i]
                assert (rows[i].resume_modification_number, rows[i].resume_reason) == expected
            assert not one.open_holds()


def _claim_at_once(
    start: Barrier, store: ResponseStore, releases: list[tuple[int, int | None, str]]
) -> dict[int, bool]:
    start.wait()
    return dict(zip([i for i, _, _ in releases], store.claim_releases(releases), strict=True))


def test_two_runners_claiming_the_same_releases_at_once_win_each_exactly_once(tmp_path: Path):
    claim_releases_from_two_runners_and_check(f"sqlite:///{tmp_path / 'store.db'}")


def test_claims_of_more_releases_than_one_statement_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from airflow_provider_gridaware.store import responses

    monkeypatch.setattr(responses, "_IN_CHUNK", 7)  # the claims and the reasons span several statements
    claim_releases_from_two_runners_and_check(f"sqlite:///{tmp_path / 'store.db'}", rounds=2, holds=10)


def test_a_fleet_is_recorded_in_batches_each_row_with_its_own_result_detail_and_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from airflow_provider_gridaware.store import responses

    monkeypatch.setattr(responses, "_IN_CHUNK", 2)  # the release's read spans several chunks
    now = [DURING]
    fleet = [work(f"job-{i}", ("flexible", "batch")[i % 2]) for i in range(5)]
    jobs = FakeJobs([*fleet, work("broken", "batch")])
    with ResponseStore(f"sqlite:///{tmp_path / 'store.db'}", clock=lambda: now[0]) as store:
        respond(events=[event()], actuators=[jobs], store=store, now=DURING)
        rows = {r.target: r for r in store.records()}
        assert {t: r.result for t, r in rows.items()} == {**{w.target: "paused" for w in fleet}, "broken": "failed"}
        assert all(rows[w.target].applied_at == DURING and rows[w.target].resumed_at is None for w in fleet)
        assert all(rows[w.target].detail["why"].startswith("grid event") for w in fleet)
        assert rows["broken"].resume_result == "not held" and rows["broken"].waited_seconds == 0.0
        assert "unreachable" in rows["broken"].detail["error"]

        now[0] = DURING + timedelta(minutes=50)
        ended = respond(events=[event()], actuators=[jobs], store=store, now=AFTER)
        assert sorted(r["waited_seconds"] for r in ended.resumed) == [50 * 60] * 5
        rows = {r.target: r for r in store.records() if r.result == "paused"}
        for w in fleet:
            assert rows[w.target].resume_result == "resumed" and rows[w.target].waited_seconds == 50 * 60
            assert rows[w.target].resumed_at == now[0]
            assert rows[w.target].detail["why"].startswith("grid event")  # the pause's detail is kept
        assert not store.open_holds()


class InterleavedJobs(FakeJobs):
    """Jobs whose listing lets another runner act first: ``meanwhile`` runs while this pass is listing them."""

    def __init__(self, fleet: list[InFlightWork]) -> None:
        super().__init__(fleet)
        self.meanwhile: list[Any] = []

    def discover(self) -> list[InFlightWork]:
        listed = super().discover()
        while self.meanwhile:
            self.meanwhile.pop(0)()
        return listed


def test_a_hold_another_runner_makes_during_a_pass_is_not_released_by_it(tmp_path: Path):
    """The task's pass starts before the event is stored; while it lists the Jobs the event arrives and the
    triggerer's pass pauses them. The task's pass then reads the triggerer's holds: it must read their event
    too (events after holds), not release them as if their event were over."""
    from airflow_provider_gridaware.store.events import EventStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = InterleavedJobs([work("flex", "flexible"), work("crit", "critical")])
    with EventStore(url) as events, ResponseStore(url) as task, ResponseStore(url) as triggerer:

        def the_event_arrives_and_the_triggerer_responds() -> None:
            events.record(event())
            done = respond(
                event_store=events, actuators=[FakeJobs(list(jobs.state.values()))], store=triggerer, now=DURING
            )
            jobs.state.update(
                {t: work(t, "flexible", state=WorkState.PAUSED) for t in [p["target"] for p in done.paused]}
            )

        jobs.meanwhile.append(the_event_arrives_and_the_triggerer_responds)
        outcome = respond(event_store=events, actuators=[jobs], store=task, now=DURING, runner="task")
        assert not outcome.resumed and not outcome.released and not outcome.paused
        assert jobs.calls == []  # the task's pass applied nothing: no pause twice, no resume
        (hold,) = task.open_holds()
        assert (hold.target, hold.result) == ("flex", "paused")


def test_respond_needs_the_events_or_their_store(tmp_path: Path):
    with ResponseStore(f"sqlite:///{tmp_path / 'store.db'}") as store, pytest.raises(ValueError, match="events"):
        respond(actuators=[], store=store, now=DURING)


def test_the_clock_is_read_after_the_holds_so_an_event_another_runner_saw_start_stays_in_force(tmp_path: Path):
    """The task's pass starts a moment before the event's start; the triggerer's pass, a moment after it, pauses
    the work. Had the task's pass fixed its time first, the triggerer's holds would be 'not in force yet' at it
    and released: the work resumed inside the event. Its clock is read once it has the holds."""
    from airflow_provider_gridaware.store.events import EventStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = InterleavedJobs([work("flex", "flexible")])
    holds_when_read: list[int] = []
    with EventStore(url) as events, ResponseStore(url) as task, ResponseStore(url) as triggerer:
        events.record(event())  # in force from T0

        def the_triggerer_responds_just_after_the_start() -> None:
            done = respond(
                event_store=events, actuators=[FakeJobs(list(jobs.state.values()))], store=triggerer, now=T0 + SECOND
            )
            jobs.state.update({p["target"]: work(p["target"], "flexible", state=WorkState.PAUSED) for p in done.paused})

        def task_clock() -> datetime:
            holds_when_read.append(len(task.open_holds()))
            return T0 + 2 * SECOND

        jobs.meanwhile.append(the_triggerer_responds_just_after_the_start)
        outcome = respond(event_store=events, actuators=[jobs], store=task, now=task_clock)
        assert holds_when_read == [1]
        assert not outcome.resumed and jobs.calls == []
        assert [h.result for h in task.open_holds()] == ["paused"]
        # The same pass with its time fixed before the start releases the hold: what the clock prevents.
        stale = respond(event_store=events, actuators=[jobs], store=task, now=T0 - SECOND)
        assert [r["target"] for r in stale.resumed] == ["flex"]


class SlowPausingJobs(FakeJobs):
    """Jobs whose pause request is slow: ``meanwhile`` runs between the claim and the pause landing."""

    def __init__(self, fleet: list[InFlightWork]) -> None:
        super().__init__(fleet)
        self.meanwhile: list[Any] = []

    def pause(self, w: InFlightWork, reason: str) -> tuple[str, dict[str, Any]]:
        while self.meanwhile:
            self.meanwhile.pop(0)()
        return super().pause(w, reason)


def test_a_release_while_the_pause_is_in_flight_leaves_the_work_running_not_stranded(tmp_path: Path):
    """The event is cancelled while the triggerer's PATCH is in flight; the task's pass releases the claimed
    hold (finding the work still running), then the PATCH lands: the pausing runner must resume it, or the
    work stays paused with no hold left to bring it back."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = SlowPausingJobs([work("flex", "flexible")])
    with ResponseStore(url) as triggerer, ResponseStore(url) as task:
        cancelled = event(mod=1, status=EventStatus.CANCELLED)

        def the_event_is_cancelled_and_the_task_passes() -> None:
            late = respond(events=[cancelled], actuators=[FakeJobs(list(jobs.state.values()))], store=task, now=DURING)
            assert [r["target"] for r in late.resumed] == ["flex"]  # released; the work was still running

        jobs.meanwhile.append(the_event_is_cancelled_and_the_task_passes)
        outcome = respond(events=[event()], actuators=[jobs], store=triggerer, now=DURING, runner="triggerer")
        assert jobs.state["flex"].state is WorkState.RUNNING  # paused, then resumed by the pausing runner
        assert jobs.calls == [("pause", "flex"), ("resume", "flex")]
        assert [r["target"] for r in outcome.resumed] == ["flex"]
        (record,) = task.records()
        assert (record.result, record.resume_result) == ("paused", "resumed")
        assert "in flight" in record.detail["note"] and record.detail["resumed_by"] == "triggerer"
        assert not task.open_holds()


def test_a_release_in_flight_keeps_the_work_paused_when_another_hold_holds_it(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = SlowPausingJobs([work("flex", "flexible")])
    with ResponseStore(url) as one, ResponseStore(url) as two:
        other = event("e2")

        def e1_is_cancelled_while_e2_holds() -> None:
            respond(
                events=[event(mod=1, status=EventStatus.CANCELLED), other],
                actuators=[FakeJobs(list(jobs.state.values()))],
                store=two,
                now=DURING,
            )

        jobs.meanwhile.append(e1_is_cancelled_while_e2_holds)
        respond(events=[event()], actuators=[jobs], store=one, now=DURING)
        assert jobs.state["flex"].state is WorkState.PAUSED  # e2's hold keeps it paused
        assert [(h.event_id, h.target) for h in one.open_holds()] == [("e2", "flex")]


def test_two_runners_never_hold_the_same_work_for_the_same_event_twice(tmp_path: Path):
    """Runner B reads the open holds (none), then runner A claims and pauses; B numbers its own hold after A's
    (the hold count is read later) and would insert a second open hold for the same work and event, pausing it
    twice and releasing it twice. The claim refuses it: one open hold per work and event."""
    from airflow_provider_gridaware.store.events import EventStore

    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = FakeJobs([work("flex", "flexible")])
    with EventStore(url) as events, ResponseStore(url) as one, ResponseStore(url) as two:
        events.record(event())

        def a_claims_first() -> datetime:
            respond(event_store=events, actuators=[jobs], store=one, now=DURING)
            return DURING

        late = respond(
            event_store=events, actuators=[FakeJobs(list(jobs.state.values()))], store=two, now=a_claims_first
        )
        assert not late.paused and not late.joined
        assert [(r.target, r.hold_no, r.result) for r in one.records()] == [("flex", 1, "paused")]
        assert jobs.calls == [("pause", "flex")]
