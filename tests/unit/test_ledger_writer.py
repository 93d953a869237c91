"""Writing a try's ledger record from a task's end path: actuals from the task's own connection (the bundled GB
replay), the counterfactual, measured power from a Prometheus double, the sensor's planned run, a store that
fails, and ``gridaware ledger`` reading it back."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from airflow_provider_gridaware.cli import main
from airflow_provider_gridaware.hooks.store import close_shared_archives
from airflow_provider_gridaware.ledger.records import EnergyMethod, TryKey, ValueBasis
from airflow_provider_gridaware.ledger_writer import LedgerSpec, record_released_try, record_try
from airflow_provider_gridaware.store.ledger import LedgerStore
from tests.support.scripted_server import Reply

UTC = timezone.utc
RUN_START = datetime(2023, 6, 1, 12, 0, tzinfo=UTC)
WAIT_BEGAN = datetime(2023, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("GRIDAWARE_STORE_URL", url)
    yield url
    close_shared_archives()


@pytest.fixture
def replay(make_connection):
    return make_connection("gb_replay", "gridaware_replay")


def context(try_number=1, task_id="train"):
    ti = SimpleNamespace(dag_id="dag", run_id="run1", task_id=task_id, map_index=-1, try_number=try_number)
    return {"ti": ti}


def spec(replay, **overrides):
    fields = {
        "operator": "decorator",
        "priority_class": "flexible",
        "duration_s": 7200.0,
        "deadline": "2023-06-01T20:00:00Z",
        "profile": {"gpu_model": "H100", "gpu_count": 2, "utilisation": 0.5, "pue": 1.1},
        "sources": ((replay, "GB", "carbon_intensity"),),
    }
    return LedgerSpec(**{**fields, **overrides})


def released(zone="GB"):
    return {
        "status": "released",
        "released_at": RUN_START.isoformat(),
        "reason": "released after waiting 4 h in GB",
        "plan": {
            "zone": zone,
            "chunks": [{"start": RUN_START.isoformat(), "end": (RUN_START + timedelta(hours=2)).isoformat()}],
            "expected_signals": {"gCO2eq/kWh": 90.0},
        },
        "waiting_since": WAIT_BEGAN.isoformat(),
        "waited_seconds": 4 * 3600.0,
        "counterfactual": {"zone": "GB", "planned_at": WAIT_BEGAN.isoformat(), "signals": {"gCO2eq/kWh": 150.0}},
        "fallback": False,
        "problems": [],
    }


def write(task_spec, *, start=RUN_START, hours=2.0, try_number=1, state="success", task_id="train"):
    """The decorator's end path for a run of ``hours`` from ``start`` in GB."""
    return record_try(
        context(try_number, task_id),
        task_spec,
        state=state,
        zone="GB",
        started_at=start,
        ended_at=start + timedelta(hours=hours),
        released=released(),
    )


def trace_mean(replay, start, end):
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery

    series = hook_for_connection(replay).get_signal(
        SignalQuery("GB", SignalKind.CARBON_INTENSITY, forecast=False, start=start, end=end)
    )
    values = [p.value for p in series.points if p.start >= start and p.end <= end]
    assert len(values) == (end - start) / timedelta(minutes=30)
    return sum(values) / len(values)


def test_a_try_is_recorded_with_actuals_and_its_counterfactual_and_a_re_report_replaces_it(store_url, replay):
    end = RUN_START + timedelta(hours=2)
    record = write(spec(replay))
    assert record is not None
    energy = 2 * 700 * 0.5 * 1.1 * 2 / 1000
    assert record.actual.energy_kwh == pytest.approx(energy)
    assert record.energy_method is EnergyMethod.ESTIMATED and "2 x H100" in record.energy_source
    assert record.actual.intensity_g_per_kwh == pytest.approx(trace_mean(replay, RUN_START, end))
    assert record.actual.intensity_kind == "average"
    cf = record.counterfactual
    assert cf is not None and (cf.start, cf.end, cf.zone) == (WAIT_BEGAN, WAIT_BEGAN + timedelta(hours=2), "GB")
    assert cf.intensity_g_per_kwh == pytest.approx(trace_mean(replay, WAIT_BEGAN, WAIT_BEGAN + timedelta(hours=2)))
    assert record.saved_g == pytest.approx(energy * (cf.intensity_g_per_kwh - record.actual.intensity_g_per_kwh))
    assert record.basis is ValueBasis.ACTUAL
    assert record.deadline == datetime(2023, 6, 1, 20, tzinfo=UTC) and not record.missed_deadline
    assert record.waited_s == 4 * 3600 and record.planned_start == RUN_START
    with LedgerStore(store_url) as store:
        key = TryKey("dag", "run1", "train", -1, 1)
        assert store.get(key) == record
        write(spec(replay))
        write(spec(replay), try_number=2, state="failed")
        assert store.counts().tries == 2 and store.versions(key) == 2


def test_power_measured_through_prometheus(store_url, replay, make_connection, scripted_server):
    stamps = [RUN_START + timedelta(minutes=m) for m in (0, 30, 60, 90)]
    scripted_server.add(
        "/api/v1/query_range",
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [  # two GPUs: summed per timestamp
                    {"metric": {"gpu": "0"}, "values": [[t.timestamp(), "300"] for t in stamps]},
                    {"metric": {"gpu": "1"}, "values": [[t.timestamp(), "100"] for t in stamps]},
                ],
            },
        },
    )
    power = make_connection(
        "dcgm",
        "http",
        host=scripted_server.url,
        extra={"query": 'sum(DCGM_FI_DEV_POWER_USAGE{pod=~"{task_id}-.*"})', "step_s": 1800},
    )
    record = write(spec(replay, power_conn_id=power))
    assert record is not None and record.energy_method is EnergyMethod.MEASURED
    assert record.actual.energy_kwh == pytest.approx(400 * 1.1 * 2 / 1000)
    sent = scripted_server.requests_to("/api/v1/query_range")[0]
    assert sent.query["query"] == ['sum(DCGM_FI_DEV_POWER_USAGE{pod=~"train-.*"})']


def test_power_requests_load_the_ca_bundle_once(make_connection, scripted_server, ca_bundle_loads):
    """Every ledger record with measured power asks Prometheus once; the CA bundle is loaded once per process."""
    from airflow_provider_gridaware.hooks.power import GridPowerHook

    stamps = [RUN_START + timedelta(minutes=m) for m in (0, 30, 60)]
    hook = GridPowerHook(make_connection("dcgm", "http", host=scripted_server.url))
    for _ in range(3):
        scripted_server.add(
            "/api/v1/query_range",
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [{"metric": {}, "values": [[t.timestamp(), "250"] for t in stamps]}],
                },
            },
        )
        samples, _, _ = hook.get_samples(RUN_START, stamps[-1])
        assert [watts for _, watts in samples] == [250.0] * 3
    assert ca_bundle_loads.call_count == 1


def test_a_failing_power_source_falls_back_to_the_profile_and_says_so(
    store_url, replay, make_connection, scripted_server
):
    scripted_server.add(
        "/api/v1/query_range",
        Reply(status=400, body={"status": "error", "errorType": "bad_data", "error": "parse error"}),
    )
    power = make_connection("dcgm", "http", host=scripted_server.url)
    record = write(spec(replay, power_conn_id=power), hours=1)
    assert record is not None and record.energy_method is EnergyMethod.ESTIMATED
    assert any("power measurement failed" in n and "parse error" in n for n in record.notes)


def test_without_actuals_the_planners_values_stand_in_as_forecasts(store_url, make_connection):
    broken = make_connection("nowhere", "gridaware_ukci", host="http://127.0.0.1:9")
    from airflow_provider_gridaware.hooks.store import shared_archive
    from airflow_provider_gridaware.signals.models import build_series
    from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind

    # What the planner read is in the archive: it says the zone's intensity is an average one.
    shared_archive(store_url).record(
        build_series(
            kind=SignalKind.CARBON_INTENSITY,
            zone="GB",
            source="ukci",
            series_type=SeriesType.ACTUAL,
            unit="gCO2eq/kWh",
            metric=CarbonMetric.AVERAGE,
            points=[(WAIT_BEGAN, RUN_START, 100.0)],
        )
    )
    record = write(spec(broken))
    assert record is not None and record.basis is ValueBasis.FORECAST
    assert record.actual.intensity_g_per_kwh == pytest.approx(90.0)
    assert record.counterfactual is not None and record.counterfactual.intensity_g_per_kwh == pytest.approx(150.0)
    assert any("measured carbon_intensity not read from nowhere" in n for n in record.notes)


def test_the_sensor_records_the_planned_run(store_url, replay):
    trace_mean(replay, WAIT_BEGAN, RUN_START)  # the sensor's decision read the zone (the archive has its kind)
    record = record_released_try(context(task_id="wait"), spec(replay, operator="sensor"), released())
    assert record is not None and record.operator == "sensor"
    assert (record.actual.start, record.actual.end) == (RUN_START, RUN_START + timedelta(hours=2))
    assert record.basis is ValueBasis.FORECAST and record.actual.intensity_g_per_kwh == pytest.approx(90.0)


def test_a_store_that_cannot_be_written_never_fails_the_task(replay, monkeypatch, caplog, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GRIDAWARE_STORE_URL", f"sqlite:///{blocker}/sub/ledger.db")  # a folder under a file
    close_shared_archives()
    caplog.set_level(logging.WARNING)
    try:
        got = write(spec(replay), hours=1)
    finally:
        close_shared_archives()
    assert got is None
    assert "carbon ledger: could not record train try 1" in caplog.text


def test_the_cli_prints_records_and_totals(store_url, replay, capsys):
    record = write(spec(replay))
    assert record is not None
    assert main(["ledger", "--since", "2023-06-01", "--until", "2023-06-02", "--store", store_url, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["task_id"] == "train" and lines[0]["saved_g"] == pytest.approx(record.saved_g)
    totals = lines[-1]["totals"]
    assert totals["tries"] == 1 and totals["carbon"]["average"]["saved_kg"] == pytest.approx(record.saved_g / 1000)
    assert main(["ledger", "--since", "2023-06-01", "--until", "2023-06-02", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "dag/train try 1 (run1)  success  GB" in out and "average intensity:" in out
    assert main(["ledger", "--since", "2023-06-02", "--until", "2023-06-03", "--store", store_url]) == 0
    assert "no ledger records" in capsys.readouterr().out
    assert main(["ledger", "--since", "2023-06-02", "--until", "2023-06-01", "--store", store_url]) == 2


def test_a_job_whose_start_and_stop_stamps_are_equal_still_gets_its_figures(store_url, replay):
    at = RUN_START + timedelta(minutes=10)
    record = write(spec(replay), start=at, hours=0)
    assert record is not None and record.energy_method is EnergyMethod.ESTIMATED
    assert record.actual.energy_kwh == 0.0 and record.actual.emissions_g == 0.0
    assert record.actual.intensity_g_per_kwh == pytest.approx(
        trace_mean(replay, RUN_START, RUN_START + timedelta(minutes=30))
    )
    assert record.basis is ValueBasis.ACTUAL and record.saved_g == 0.0


def test_a_record_is_finalised_from_the_actuals_the_archive_holds(store_url, replay):
    from airflow_provider_gridaware.hooks.registry import hook_for_connection
    from airflow_provider_gridaware.signals.units import SignalKind
    from airflow_provider_gridaware.sources.flow import SignalQuery
    from airflow_provider_gridaware.store import ForecastArchive
    from airflow_provider_gridaware.store.ledger import finalise_from_archive

    record = write(spec(replay))
    assert record is not None and not record.finalised
    # The actuals as the hooks archive them (kept: 2023 is past the default 90-day retention).
    archive = ForecastArchive(store_url, retention=None)
    archive.record(
        hook_for_connection(replay).fetch_signal(
            SignalQuery(
                "GB", SignalKind.CARBON_INTENSITY, forecast=False, start=WAIT_BEGAN, end=RUN_START + timedelta(hours=3)
            )
        )
    )
    final = finalise_from_archive(record, archive)
    archive.close()
    assert final.finalised and final.basis is ValueBasis.ACTUAL
    assert final.actual.emissions_g == pytest.approx(record.actual.emissions_g)
    assert final.saved_g == pytest.approx(record.saved_g)
    with LedgerStore(store_url) as store:
        store.write(final)
        assert store.get(record.key).finalised  # type: ignore[union-attr]
