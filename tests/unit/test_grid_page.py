"""The Grid page: waiting tasks from their triggers' requests, savings per DAG, zones, and the plugin app's
access rules (Airflow's own security dependencies over a stand-in auth manager)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_gridaware.ledger.records import TryKey
from airflow_provider_gridaware.planning.decision import Counterfactual, decide
from airflow_provider_gridaware.planning.job import Job
from airflow_provider_gridaware.planning.signal_grid import grid_for
from airflow_provider_gridaware.signals.models import CarbonMetric, SeriesType, SignalKind, build_series
from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger
from airflow_provider_gridaware.ui.page import grid_page
from airflow_provider_gridaware.ui.savings import savings_by_dag
from airflow_provider_gridaware.ui.waiting import NO_DECISION_KEPT, waiting_task
from airflow_provider_gridaware.ui.zones import CurvePoint, cleanest_window, zone_view
from airflow_provider_gridaware.window import FirstDecision, GridWindowArgs
from tests.support.ledger import InMemoryLedger, record

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=timezone.utc)
UNIT = "gCO2eq/kWh"


def carbon_series(*, dirty: float = 231.0, clean: float = 142.0, clean_from_h: int = 4, clean_hours: int = 4):
    points = []
    for i in range(48):
        start = T0 + timedelta(minutes=30 * i)
        inside = T0 + timedelta(hours=clean_from_h) <= start < T0 + timedelta(hours=clean_from_h + clean_hours)
        points.append((start, start + timedelta(minutes=30), clean if inside else dirty))
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        metric=CarbonMetric.AVERAGE,
        zone="GB",
        source="ukci",
        series_type=SeriesType.FORECAST,
        issued_at=T0,
        unit="g/kWh",
        points=points,
    )


def waiting_request(dag_id: str = "retrain") -> tuple[dict[str, Any], Any, Job]:
    """A real first decision to wait, made into the trigger's request and serialised as Airflow stores it."""
    args = GridWindowArgs(
        duration=timedelta(hours=1), deadline=timedelta(hours=16), conn_id="gridaware_ukci_default", zones=["GB"]
    )
    job = args.job(run_start=T0, job_id=f"{dag_id}.train")
    grid = grid_for(job, carbon={"GB": carbon_series()}, price={}, now=T0)
    decision = decide(job, grid, T0)
    assert not decision.release, decision.reason
    first = FirstDecision(job, decision, [], Counterfactual.of(decision.plan, "GB"))
    request = args.request(run_start=T0, first=first)
    _, kwargs = GridWindowTrigger(request).serialize()  # what the trigger table keeps
    return kwargs["request"], decision, job


def test_a_waiting_task_shows_the_decision_that_made_it_wait():
    request, decision, job = waiting_request()
    task = waiting_task(TryKey("retrain", "manual_1", "train", -1, 1), request)
    assert task.reason == decision.reason
    assert task.reason.startswith("waiting ")
    assert task.planned_start == decision.plan.start == T0 + timedelta(hours=4)
    assert task.latest_start == job.latest_start
    assert task.zone == "GB"
    assert task.now_signals[UNIT] == pytest.approx(231.0)
    assert task.expected_signals[UNIT] == pytest.approx(142.0)
    assert task.expected_saving[UNIT] == pytest.approx((231 - 142) / 231)
    shown = task.to_json()
    assert shown["planned_start"] == "2026-12-04T14:00:00Z"
    assert shown["reason"] == decision.reason


def test_a_request_without_a_decision_says_so_and_a_broken_one_is_named():
    request, _, _ = waiting_request()
    request = {k: v for k, v in request.items() if k != "first_decision"}
    assert waiting_task(TryKey("d", "r", "t", -1, 1), request).reason == NO_DECISION_KEPT
    with pytest.raises(ValueError, match=r"d\.t: the trigger's request has no job"):
        waiting_task(TryKey("d", "r", "t", -1, 1), {"sources": []})
    with pytest.raises(ValueError, match=r"d\.t: the trigger's job is unreadable"):
        waiting_task(TryKey("d", "r", "t", -1, 1), {"job": {"deadline": "soon"}})


def test_savings_per_dag_match_a_hand_computed_case():
    start = T0 - timedelta(days=3)
    records = [
        # 10 kWh at 100 vs 200 g/kWh: 1,000 g saved; cost 10/1000 x (50 - 80) EUR
        record("a", start, intensity=100, counterfactual_intensity=200, price=50, counterfactual_price=80),
        # 10 kWh at 250 vs 200: the wait cost 500 g
        record("a", start + timedelta(hours=5), intensity=250, counterfactual_intensity=200),
        # no counterfactual: counted as a run, not compared
        record("a", start + timedelta(hours=9), counterfactual_intensity=None),
        # another kind never adds to the average rows
        record("a", start + timedelta(hours=12), kind="marginal", intensity=400, counterfactual_intensity=600),
        record("b", start, intensity=100, counterfactual_intensity=300, deadline=start),
    ]
    rows = {(r.dag_id, r.intensity_kind): r.to_json() for r in savings_by_dag(records)}
    assert rows[("a", "average")] == {
        "dag_id": "a",
        "intensity_kind": "average",
        "runs": 3,
        "runs_compared": 2,
        "clean_runs": 1,
        "clean_share": 0.5,
        "emitted_kg": 4.5,  # 1,000 + 2,500 + 1,000 g
        "saved_kg": 0.5,  # 1,000 - 500 g
        "saved_cost": {"EUR": 0.3},
        "missed_deadlines": 0,
    }
    assert rows[("a", "marginal")]["saved_kg"] == 2.0
    assert rows[("b", "average")]["saved_kg"] == 2.0
    assert rows[("b", "average")]["missed_deadlines"] == 1  # ended an hour after its deadline
    order = [(r.dag_id, r.intensity_kind) for r in savings_by_dag(records)]
    assert order == [("a", "marginal"), ("b", "average"), ("a", "average")]  # biggest saving first


def test_the_cleanest_window_is_found_and_compared_with_now():
    curve = [CurvePoint(T0 + timedelta(hours=h), v) for h, v in enumerate([300, 300, 120, 100, 300, 90, 500])]
    window = cleanest_window(curve, length=timedelta(hours=2), now=T0 + timedelta(minutes=30), current=300)
    assert window is not None
    assert (window.start, window.end, window.mean) == (T0 + timedelta(hours=2), T0 + timedelta(hours=4), 110)
    assert window.lower_than_now == pytest.approx(190 / 300)
    assert cleanest_window(curve[:2], length=timedelta(hours=3), now=T0, current=None) is None


def test_a_zone_view_draws_the_calibrated_curve_beside_the_raw_one():
    class Shifted:
        """A calibration that says the provider ran 20 high."""

        has_history = True

        def apply(self, lead_s, provider, own=None):
            return [v - 20 for v in provider], [5.0 for _ in provider]

        def reason(self) -> str:
            return "ukci forecast corrected -20 gCO2eq/kWh at 12 h"

    view = zone_view("GB", "c", carbon_series(), now=T0, calibration=Shifted()).to_json()  # type: ignore[arg-type]
    assert view["forecast"][0] == ["2026-12-04T10:00:00Z", 231.0]
    assert view["calibrated"][0] == ["2026-12-04T10:00:00Z", 211.0]
    assert view["current"] == 231.0
    assert view["clean_window"]["start"] == "2026-12-04T14:00:00Z"
    assert view["clean_window"]["mean"] == 122.0
    assert "corrected -20" in view["calibration_note"]

    class Untested(Shifted):
        has_history = False

        def reason(self) -> str:
            return "ukci forecast used as published (no past forecasts to check it against yet)"

    plain = zone_view("GB", "c", carbon_series(), now=T0, calibration=Untested()).to_json()  # type: ignore[arg-type]
    assert plain["calibrated"] == []
    assert plain["clean_window"]["mean"] == 142.0
    assert plain["calibration_note"].endswith("(no past forecasts to check it against yet)")


def test_an_event_says_what_it_asks_in_a_few_words():
    from airflow_provider_gridaware.signals.grid_event import EventStatus
    from airflow_provider_gridaware.ui.page import event_json
    from tests.support.grid_events import make_event, price_signal, simple_signal

    event = make_event(status=EventStatus.ACTIVE, signals=(simple_signal(T0, levels=(2, 3, 2)), price_signal(T0)))
    shown = event_json(event, T0 + timedelta(minutes=30))
    assert shown["asks"] == "level 2, 3; price 250 EUR/MWh"
    assert shown["status"] == "active"


# -- the plugin's app, behind Airflow's security dependencies -------------------------------------------------
@dataclass(frozen=True)
class User:
    name: str
    dags: frozenset[str]

    def get_id(self) -> str:
        return self.name

    def get_name(self) -> str:
        return self.name


class StandInAuthManager:
    """The three auth-manager calls the security dependencies and the app make; tokens are user names."""

    users = {
        "ops": User("ops", frozenset({"retrain", "etl"})),
        "etl-team": User("etl-team", frozenset({"etl"})),
        "admin": User("admin", frozenset({"retrain", "etl", "nightly"})),
    }

    async def get_user_from_token(self, token: str) -> User:
        from jwt import InvalidTokenError

        if token not in self.users:
            raise InvalidTokenError("unknown")
        return self.users[token]

    def get_authorized_dag_ids(self, *, user: User, method: str = "GET", session: Any = None) -> set[str]:
        return set(user.dags)

    def is_authorized_dag(self, *, method: str, user: User, access_entity: Any = None, details: Any = None) -> bool:
        return details is not None and details.id in user.dags


@pytest.fixture
def client(monkeypatch) -> TestClient:
    from airflow.api_fastapi import app as airflow_app
    from airflow.models.dag import DagModel

    from airflow_provider_gridaware.plugins.app import GridPageSources, create_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", StandInAuthManager())
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))
    request, _, _ = waiting_request()
    tasks = [
        waiting_task(TryKey("retrain", "manual_1", "train", -1, 1), request),
        waiting_task(TryKey("etl", "manual_2", "load", -1, 1), request),
    ]
    ledger = InMemoryLedger(
        [
            record("retrain", T0 - timedelta(days=2)),
            record("etl", T0 - timedelta(days=1)),
            record("etl", T0 - timedelta(days=40)),
        ]
    )

    def waiting(dag_ids):
        shown = [t for t in tasks if dag_ids is None or t.key.dag_id in dag_ids]
        return shown, [("gridaware_ukci_default", "GB")] if shown else [], []

    def fleet(now, notes, dag_ids):
        from airflow_provider_gridaware.planning.flexibility import FleetWork

        work = [
            FleetWork(
                "retrain.train", "GB", "flexible", 400, now, now + timedelta(hours=1), running=True, interruptible=True
            ),
            FleetWork("etl.load", "DE", "batch", 50, now + timedelta(minutes=10), now + timedelta(hours=2)),
        ]
        return [w for w in work if dag_ids is None or w.name.split(".")[0] in dag_ids]

    sources = GridPageSources(
        waiting=waiting,
        ledger=lambda: ledger,
        fleet=fleet,
        events=lambda now: [],
        zones=lambda pairs, now: [zone_view(zone, conn, carbon_series(), now=now) for conn, zone in pairs],
        clock=lambda: T0,
    )
    return TestClient(create_app(sources))


@pytest.mark.parametrize("path", ["/", "/api/grid", "/static/grid.js", "/api/decision/retrain/manual_1/train"])
def test_anonymous_requests_are_refused(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer forged"}).status_code == 403


def test_a_user_sees_only_the_dags_they_may_read(client):
    everything = client.get("/api/grid", headers={"Authorization": "Bearer ops"}).json()
    assert {t["dag_id"] for t in everything["waiting"]} == {"retrain", "etl"}
    assert {r["dag_id"] for r in everything["savings"]["per_dag"]} == {"retrain", "etl"}
    assert [z["zone"] for z in everything["zones"]] == ["GB"]

    limited = client.get("/api/grid", headers={"Authorization": "Bearer etl-team"}).json()
    assert [t["dag_id"] for t in limited["waiting"]] == ["etl"]
    assert [r["dag_id"] for r in limited["savings"]["per_dag"]] == ["etl"]
    assert limited["savings"]["per_dag"][0]["runs"] == 1  # the 40-day-old run is outside the 30 days


def test_the_fleet_flexibility_covers_the_dags_the_user_may_read(client):
    everything = client.get("/api/flex", headers={"Authorization": "Bearer ops"}).json()
    assert everything["zones"]["GB"]["shed_kw"]["flexible"] == {"5": 400, "15": 400, "60": 400}
    assert everything["zones"]["DE"]["shed_kw"]["batch"] == {"5": 0, "15": 50, "60": 50}
    limited = client.get("/api/flex", headers={"Authorization": "Bearer etl-team"}).json()
    assert list(limited["zones"]) == ["DE"]
    assert client.get("/api/flex").status_code == 401


def test_a_task_decision_needs_read_access_to_its_dag(client):
    answer = client.get("/api/decision/retrain/manual_1/train", headers={"Authorization": "Bearer ops"})
    assert answer.status_code == 200
    assert answer.json()["status"] == "waiting"
    assert answer.json()["task"]["reason"].startswith("waiting ")
    refused = client.get("/api/decision/retrain/manual_1/train", headers={"Authorization": "Bearer etl-team"})
    assert refused.status_code == 403
    missing = client.get("/api/decision/etl/nope/load", headers={"Authorization": "Bearer ops"})
    assert missing.status_code == 404
    assert "not waiting and has no ledger record" in missing.json()["detail"]


def test_the_page_and_its_assets_are_served_to_a_signed_in_user(client):
    client.cookies.set("_token", "ops")
    page = client.get("/")
    assert page.status_code == 200
    assert 'src="static/grid.js"' in page.text
    assert client.get("/static/grid.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/../app.py").status_code == 404


def test_without_a_ledger_the_page_says_why_and_shows_the_rest():
    from airflow_provider_gridaware.plugins.app import GridPageSources, page_data

    def no_ledger():
        raise RuntimeError("no ledger reader 'airflow_provider_gridaware.store.ledger:LedgerStore'")

    request, _, _ = waiting_request()
    task = waiting_task(TryKey("retrain", "r", "t", -1, 1), request)
    sources = GridPageSources(
        waiting=lambda dag_ids: ([task], [], ["x.y (r): its trigger could not be read: bad"]),
        ledger=no_ledger,
        events=lambda now: [],
        zones=lambda pairs, now: [],
        clock=lambda: T0,
    )
    data = page_data(sources, {"retrain"})
    assert data["savings"]["per_dag"] is None
    assert "no ledger reader" in data["savings"]["error"]
    assert data["waiting"][0]["task_id"] == "t"
    assert data["problems"] == ["x.y (r): its trigger could not be read: bad"]


def test_grid_page_orders_waiting_tasks_by_planned_start():
    request, _, _ = waiting_request()
    early = waiting_task(TryKey("b", "r", "t", -1, 1), request)
    late = waiting_task(TryKey("a", "r", "t", -1, 1), {**request, "first_decision": None, "previous_start": None})
    data = grid_page(now=T0, zones=[], waiting=[late, early], events=[], savings=[])
    assert [t["dag_id"] for t in data["waiting"]] == ["b", "a"]  # 14:00 planned, then one by its latest start


def test_the_savings_cache_serves_the_last_value_while_it_recomputes():
    import threading

    from airflow_provider_gridaware.plugins.app import TtlCache

    now = [0.0]
    cache = TtlCache(60.0, clock=lambda: now[0])
    computed: list[int] = []
    release = threading.Event()

    def compute() -> int:
        computed.append(len(computed) + 1)
        if len(computed) > 1:
            release.wait(10)
        return computed[-1]

    assert cache.get("k", compute) == 1  # the first call waits for it
    now[0] = 30.0
    assert cache.get("k", compute) == 1  # fresh
    now[0] = 61.0
    assert cache.get("k", compute) == 1  # stale: served at once, recomputed in the background
    release.set()
    assert cache.refresh_thread is not None
    cache.refresh_thread.join(10)
    assert cache.get("k", lambda: -1) == 2
    assert computed == [1, 2]
    uncached = TtlCache(0.0)
    assert [uncached.get("k", lambda: 1), uncached.get("k", lambda: 2)] == [1, 2]


def test_the_page_lists_the_soonest_waiting_tasks_and_counts_all():
    request, _, _ = waiting_request()
    tasks = [waiting_task(TryKey(f"d{i}", "r", "t", -1, 1), request) for i in range(5)]
    data = grid_page(now=T0, zones=[], waiting=tasks, events=[], savings=[], waiting_limit=2)
    assert (len(data["waiting"]), data["waiting_total"]) == (2, 5)


def test_slos_are_shown_to_those_who_may_read_their_dags():
    from airflow_provider_gridaware.ledger.slo import SustainabilitySlo, parse_slos
    from airflow_provider_gridaware.plugins.app import GridPageSources, page_data

    ledger = InMemoryLedger(
        [
            record("retrain", T0 - timedelta(days=2), energy_kwh=100, intensity=300),
            record("etl", T0 - timedelta(days=1), energy_kwh=100, intensity=100),
            record("etl", T0 - timedelta(days=50), energy_kwh=100, intensity=900),  # inside the 60-day SLO only
        ]
    )
    slos = parse_slos(
        '[{"name": "retrain-mean", "metric": "mean_intensity", "target": 250, "dag_ids": ["retrain"]},'
        ' {"name": "nightly-mean", "metric": "mean_intensity", "target": 400, "tags": ["nightly"], "period_days": 60}]'
    )
    assert slos[1] == SustainabilitySlo(
        "nightly-mean", "mean_intensity", 400, tags=("nightly",), period=timedelta(days=60)
    )
    sources = GridPageSources(
        waiting=lambda dag_ids: ([], [], []),
        ledger=lambda: ledger,
        events=lambda now: [],
        zones=lambda pairs, now: [],
        clock=lambda: T0,
        slos=lambda: slos,
        dag_tags=lambda: {"etl": ["nightly"]},
    )
    everything = {s["name"]: s for s in page_data(sources, None)["slos"]}
    assert everything["retrain-mean"]["breached"] is True
    assert everything["nightly-mean"]["value"] == pytest.approx(500.0)  # (100 + 900) / 2 over 60 days
    assert everything["nightly-mean"]["breached"] is True
    assert len(page_data(sources, None)["savings"]["per_dag"]) == 2  # the savings table stays 30 days
    limited = page_data(sources, {"etl"})["slos"]
    assert [s["name"] for s in limited] == ["nightly-mean"]
    with pytest.raises(ValueError, match=r"\[gridaware\] slos: SLO 'x': give dag_ids or tags"):
        parse_slos('[{"name": "x", "metric": "clean_share", "target": 0.5}]')


# -- what grid events paused, and when it resumed ---------------------------------------------------------------
def _held_store(url: str):
    """A response store holding three holds of event ``peak-1``: DAG retrain paused (still held), a Kubernetes
    job paused 100 min before T0 and resumed 5 min before T0, DAG etl whose pause failed."""
    from airflow_provider_gridaware.planning.grid_response import (
        InFlightWork,
        PauseStep,
        PriorityClass,
        ResponseAction,
        TargetKind,
        WorkState,
    )
    from airflow_provider_gridaware.signals.grid_event import EventStatus
    from airflow_provider_gridaware.store.responses import ResponseStore
    from tests.support.grid_events import make_event, simple_signal

    now = [T0 - timedelta(minutes=100)]
    store = ResponseStore(url, clock=lambda: now[0])
    event = make_event(
        event_id="peak-1",
        status=EventStatus.ACTIVE,
        signals=(simple_signal(T0 - timedelta(hours=2), levels=(2, 2, 2)),),
    )
    old = make_event(event_id="peak-0", signals=(simple_signal(T0 - timedelta(days=10)),))

    def step(target: str, kind: TargetKind, cls: PriorityClass) -> PauseStep:
        work = InFlightWork(target, kind, cls, "GB", WorkState.RUNNING, 10.0)
        action = ResponseAction.CHECKPOINT if cls is PriorityClass.FLEXIBLE else ResponseAction.STOP
        return PauseStep(work, event, action, "SIMPLE level 2", 1, False)

    retrain, job, etl = store.claim_pauses(
        [
            step("dag/retrain", TargetKind.DAG, PriorityClass.BATCH),
            step("kubernetes_job/k8s/ml/train-7", TargetKind.KUBERNETES_JOB, PriorityClass.FLEXIBLE),
            step("dag/etl", TargetKind.DAG, PriorityClass.BATCH),
        ]
    )
    assert retrain and job and etl
    store.finish_pauses(
        [
            (retrain, "paused", None),
            (job, "paused", {"power_kw": 10, "paused_by": "triggerer"}),
            (etl, "failed", {"error": "x"}),
        ]
    )
    now[0] = T0 - timedelta(minutes=5)
    assert store.claim_releases([(job, 1, "event modified: level 0")]) == [True]
    store.finish_releases([(job, "resumed", {"resumed_by": "task"})])
    # A hold of an event the page no longer shows (ended 10 days ago): never read.
    old_step = step("dag/etl", TargetKind.DAG, PriorityClass.BATCH)
    assert store.claim_pauses([PauseStep(old_step.work, old, ResponseAction.STOP, "old", 1, False)]) != [None]
    return store, [event, old]


def test_grid_events_list_what_they_paused_and_when_it_resumed(monkeypatch, tmp_path):
    from airflow.api_fastapi import app as airflow_app
    from airflow.models.dag import DagModel

    from airflow_provider_gridaware.plugins.app import GridPageSources, create_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", StandInAuthManager())
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))
    store, events = _held_store(f"sqlite:///{tmp_path / 'store.db'}")
    asked: list[list[tuple[str, str]]] = []

    def responses(keys):
        asked.append(list(keys))
        return store.records_of_events(keys)

    sources = GridPageSources(
        waiting=lambda dag_ids: ([], [], []),
        ledger=lambda: InMemoryLedger([]),
        events=lambda now: events,
        zones=lambda pairs, now: [],
        clock=lambda: T0,
        responses=responses,
    )
    client = TestClient(create_app(sources))

    everything = client.get("/api/grid", headers={"Authorization": "Bearer ops"}).json()
    assert [e["event_id"] for e in everything["events"]] == ["peak-1"]
    assert asked == [[("openadr2b:vtn", "peak-1")]]  # only the shown events' holds are read
    [event] = everything["events"]
    assert event["hidden_holds"] == 0
    held = {h["name"]: h for h in event["holds"]}
    assert list(held) == ["retrain", "k8s/ml/train-7", "etl"]
    dag = held["retrain"]
    assert (dag["target_kind"], dag["action"], dag["result"], dag["open"]) == ("dag", "stop", "paused", True)
    assert dag["applied_at"] == "2026-12-04T08:20:00Z"
    assert (dag["resumed_at"], dag["resume_result"]) == (None, None)
    assert dag["waited_s"] == 100 * 60  # still held: how long so far
    job = held["k8s/ml/train-7"]
    assert (job["target_kind"], job["action"], job["priority_class"]) == ("kubernetes_job", "checkpoint", "flexible")
    assert (job["applied_at"], job["resumed_at"]) == ("2026-12-04T08:20:00Z", "2026-12-04T09:55:00Z")
    assert (job["resume_result"], job["resume_reason"], job["open"]) == ("resumed", "event modified: level 0", False)
    assert job["waited_s"] == 95 * 60
    assert (job["paused_by"], job["resumed_by"], dag["paused_by"]) == ("triggerer", "task", None)
    failed = held["etl"]
    assert (failed["result"], failed["resume_result"], failed["waited_s"], failed["open"]) == (
        "failed",
        "not held",
        0.0,
        False,
    )

    # A user who may read etl only sees the job (no DAG in its record) and etl; retrain's hold is counted, not shown.
    limited = client.get("/api/grid", headers={"Authorization": "Bearer etl-team"}).json()
    [event] = limited["events"]
    assert [h["target"] for h in event["holds"]] == ["kubernetes_job/k8s/ml/train-7", "dag/etl"]
    assert event["hidden_holds"] == 1
    store.close()


def test_an_unreadable_response_record_is_named_and_the_events_still_shown():
    from airflow_provider_gridaware.plugins.app import GridPageSources, page_data
    from airflow_provider_gridaware.signals.grid_event import EventStatus
    from tests.support.grid_events import make_event, simple_signal

    def broken(keys):
        raise RuntimeError("no such table: gridaware_grid_response")

    event = make_event(event_id="peak-2", status=EventStatus.ACTIVE, signals=(simple_signal(T0),))
    sources = GridPageSources(
        waiting=lambda dag_ids: ([], [], []),
        ledger=lambda: InMemoryLedger([]),
        events=lambda now: [event],
        zones=lambda pairs, now: [],
        clock=lambda: T0,
        responses=broken,
    )
    data = page_data(sources, None)
    assert [e["event_id"] for e in data["events"]] == ["peak-2"]
    assert data["events"][0]["holds"] == []
    assert data["problems"] == ["what grid events paused: no such table: gridaware_grid_response"]


# -- the daily reports ---------------------------------------------------------------------------------------------
def _report(folder, dag_ids, *, headline="a day", breached=()):
    import json

    folder.mkdir(parents=True)
    (folder / "report.html").write_text(f"<h1>{headline}</h1>")
    (folder / "records.csv").write_text("dag_id\n")
    summary = {
        "headline": headline,
        "tries": len(dag_ids),
        "per_dag": [{"name": d} for d in dag_ids],
        "slos": [{"name": n, "status": "breached", "dag_ids": []} for n in breached],
    }
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def reports_client(monkeypatch, tmp_path) -> TestClient:
    """Reports of 2026-12-01 (retrain and etl), 12-02 (etl), 12-03 (no summary), a folder that is not a day,
    and two symbolic links out of the location: a day folder and a chart."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.models.dag import DagModel

    from airflow_provider_gridaware.hooks.carbon_report import open_report_location
    from airflow_provider_gridaware.plugins.app import GridPageSources, create_app
    from airflow_provider_gridaware.ui.reports import ReportShelf

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", StandInAuthManager())
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))
    root = tmp_path / "reports"
    _report(root / "2026-12-01", ["retrain", "etl"], headline="2026-12-01: 2 tries", breached=["ml-clean"])
    (root / "2026-12-01" / "charts").mkdir()
    (root / "2026-12-01" / "charts" / "intensity-GB.png").write_bytes(b"\x89PNG")
    _report(root / "2026-12-02", ["etl"], headline="2026-12-02: 1 try")
    (root / "2026-12-03").mkdir()
    (root / "2026-12-03" / "report.html").write_text("<h1>no summary</h1>")
    _report(root / "notes", ["etl"])
    (tmp_path / "secret.txt").write_text("not a report")
    _report(tmp_path / "elsewhere", ["etl"], headline="outside")
    (root / "2026-12-04").symlink_to(tmp_path / "elsewhere")
    (root / "2026-12-01" / "charts" / "leak.png").symlink_to(tmp_path / "secret.txt")
    sources = GridPageSources(
        waiting=lambda dag_ids: ([], [], []),
        ledger=lambda: InMemoryLedger([]),
        events=lambda now: [],
        zones=lambda pairs, now: [],
        clock=lambda: T0,
        reports=lambda: ReportShelf(open_report_location(f"file://{root}"), f"file://{root}"),
        all_dag_ids=lambda: {"retrain", "etl", "nightly"},
    )
    return TestClient(create_app(sources))


def _as(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}


def test_the_page_lists_the_recent_daily_reports_each_to_who_may_read_its_dags(reports_client):
    admin = reports_client.get("/api/reports", headers=_as("admin")).json()
    assert [r["day"] for r in admin["items"]] == ["2026-12-03", "2026-12-02", "2026-12-01"]  # not notes/, not the link
    first = admin["items"][-1]
    assert first["headline"] == "2026-12-01: 2 tries" and first["slos_breached"] == ["ml-clean"]
    assert first["files"] == {
        "report.html": "reports/2026-12-01/report.html",
        "summary.json": "reports/2026-12-01/summary.json",
        "records.csv": "reports/2026-12-01/records.csv",
    }
    assert admin["items"][0]["files"] == {"report.html": "reports/2026-12-03/report.html"}

    ops = reports_client.get("/api/reports", headers=_as("ops")).json()
    assert [r["day"] for r in ops["items"]] == ["2026-12-02", "2026-12-01"] and ops["hidden"] == 1  # no summary
    limited = reports_client.get("/api/reports", headers=_as("etl-team")).json()
    assert [r["day"] for r in limited["items"]] == ["2026-12-02"] and limited["hidden"] == 2
    assert reports_client.get("/api/reports").status_code == 401


def test_report_files_are_served_from_the_location_only(reports_client):
    page = reports_client.get("/reports/2026-12-01/report.html", headers=_as("ops"))
    assert page.status_code == 200 and page.text == "<h1>2026-12-01: 2 tries</h1>"
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert policy.startswith("default-src 'none';") and "script-src" not in policy  # no script runs in it
    chart = reports_client.get("/reports/2026-12-01/charts/intensity-GB.png", headers=_as("ops"))
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert reports_client.get("/reports/2026-12-01/records.csv", headers=_as("ops")).text == "dag_id\n"

    assert reports_client.get("/reports/2026-12-01/report.html", headers=_as("etl-team")).status_code == 403
    assert reports_client.get("/reports/2026-12-02/summary.json", headers=_as("etl-team")).status_code == 200
    assert reports_client.get("/reports/2026-12-01/report.html").status_code == 401

    refused = [
        "/reports/2026-12-01/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/reports/2026-12-01/..%2F..%2Fsecret.txt",
        "/reports/%2E%2E/secret.txt",
        "/reports/2026-12-01/charts/leak.png",  # a link out of the location
        "/reports/2026-12-04/report.html",  # a day folder linked from elsewhere
        "/reports/2026-12-01/charts/../../../secret.txt",
        "/reports/2026-12-01/app.py",
        "/reports/notes/report.html",
        "/reports/2026-12-05/report.html",
        "/reports/2026-13-01/report.html",
    ]
    for path in refused:
        answer = reports_client.get(path, headers=_as("admin"))
        assert answer.status_code == 404, (path, answer.status_code, answer.text)
        assert "not a report" not in answer.text


def test_without_a_report_location_the_page_says_why(client):
    answer = client.get("/api/reports", headers=_as("ops")).json()
    assert answer == {"location": None, "items": [], "hidden": 0, "error": "no report location configured"}
    assert client.get("/reports/2026-12-01/report.html", headers=_as("ops")).status_code == 404
