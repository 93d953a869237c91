"""The ledger's pure computation: energy (measured, estimated), intensity over a run, the counterfactual, finalise."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_gridaware.ledger.energy import (
    DEFAULT_PUE,
    EnergyProfile,
    estimated_draw,
    measured_draw,
    normalise_gpu_model,
)
from airflow_provider_gridaware.ledger.figures import Released, ZoneSignals, build_record, finalise, run_figures
from airflow_provider_gridaware.ledger.records import EnergyMethod, TryKey, ValueBasis
from airflow_provider_gridaware.signals.models import build_series
from airflow_provider_gridaware.signals.units import CarbonMetric, SeriesType, SignalKind

UTC = timezone.utc
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HALF = timedelta(minutes=30)
KEY = TryKey("dag", "run", "task", -1, 1)


def carbon(values, *, start=T0, actual=True, zone="GB", metric=CarbonMetric.AVERAGE):
    points = [(start + i * HALF, start + (i + 1) * HALF, v) for i, v in enumerate(values)]
    return build_series(
        kind=SignalKind.CARBON_INTENSITY,
        zone=zone,
        source="test",
        series_type=SeriesType.ACTUAL if actual else SeriesType.FORECAST,
        unit="gCO2eq/kWh",
        points=points,
        metric=metric,
        issued_at=None if actual else start,
    )


def price(values, *, start=T0):
    points = [(start + i * HALF, start + (i + 1) * HALF, v) for i, v in enumerate(values)]
    return build_series(
        kind=SignalKind.PRICE,
        zone="GB",
        source="test",
        series_type=SeriesType.FORECAST,
        unit="EUR/MWh",
        currency="EUR",
        points=points,
        issued_at=start,
    )


def test_gpu_models_match_loosely_and_unknown_ones_say_what_to_do():
    assert normalise_gpu_model("NVIDIA A100-SXM4-80GB") == "A100"
    assert normalise_gpu_model("h100 pcie") == "H100-PCIE"
    assert normalise_gpu_model("L4") == "L4"
    with pytest.raises(ValueError, match="power_w"):
        normalise_gpu_model("Radeon 9000")


def test_estimated_energy_is_gpus_times_board_power_times_utilisation_times_pue():
    profile = EnergyProfile(gpu_model="H100", gpu_count=8, utilisation=0.5, pue=1.1)
    draw = estimated_draw(profile, T0, T0 + timedelta(hours=2))
    assert draw.method is EnergyMethod.ESTIMATED
    assert draw.energy_kwh == pytest.approx(8 * 700 * 0.5 * 1.1 * 2 / 1000)
    assert "8 x H100" in draw.source and "PUE 1.1" in draw.source


def test_an_estimate_counts_only_the_pieces_the_work_ran_in():
    profile = EnergyProfile(power_w=1000, pue=1.0)
    pieces = [(T0 + timedelta(hours=2), T0 + timedelta(hours=3)), (T0, T0 + timedelta(minutes=30))]
    draw = estimated_draw(profile, T0, T0 + timedelta(hours=3), running=pieces)
    assert draw.energy_kwh == pytest.approx(1.5)  # 1 kW over 1 h 30 min, not the 3 h from first start to end
    assert [s.start for s in draw.segments] == [T0, T0 + timedelta(hours=2)]
    assert any("ran in 2 pieces (1 h 30 min of 3 h" in n for n in draw.notes), draw.notes
    assert estimated_draw(profile, T0, T0 + timedelta(hours=3)).energy_kwh == pytest.approx(3.0)


def test_the_default_model_and_pue_are_noted():
    draw = estimated_draw(EnergyProfile(gpu_count=1), T0, T0 + timedelta(hours=1))
    assert draw.energy_kwh == pytest.approx(0.4 * DEFAULT_PUE)
    assert any("A100 board power assumed" in n for n in draw.notes)
    assert any("default PUE" in n for n in draw.notes)


@pytest.mark.parametrize(
    "kwargs", [{"gpu_count": -1}, {"utilisation": 0}, {"utilisation": 1.5}, {"power_w": -5}, {"pue": 0.9}]
)
def test_a_bad_profile_is_refused(kwargs):
    with pytest.raises(ValueError):
        EnergyProfile(**kwargs)


def test_measured_energy_holds_each_sample_until_the_next_and_notes_holes():
    samples = [(T0, 1000.0), (T0 + timedelta(minutes=30), 3000.0)]
    draw = measured_draw(samples, T0, T0 + timedelta(hours=1), pue=1.0, source="prom", max_gap_s=120)
    assert draw.energy_kwh == pytest.approx(0.5 + 1.5)
    assert draw.method is EnergyMethod.MEASURED
    assert draw.notes and "missing" in draw.notes[0]
    with pytest.raises(ValueError, match="no power sample"):
        measured_draw([], T0, T0 + HALF, pue=1.0, source="prom", max_gap_s=60)
    with pytest.raises(ValueError, match="not a power"):
        measured_draw([(T0, float("nan"))], T0, T0 + HALF, pue=1.0, source="prom", max_gap_s=60)


def test_intensity_is_energy_weighted_over_the_run():
    # 1 h run over two half-hours at 100 and 300 g/kWh; 1 kW then 3 kW: (0.5*100 + 1.5*300) / 2 = 250.
    draw = measured_draw([(T0, 1000.0), (T0 + HALF, 3000.0)], T0, T0 + 2 * HALF, pue=1.0, source="prom", max_gap_s=3600)
    figures, basis, notes = run_figures("GB", T0, T0 + 2 * HALF, draw, ZoneSignals(carbon_actual=carbon([100, 300])))
    assert figures.intensity_g_per_kwh == pytest.approx(250.0)
    assert figures.emissions_g == pytest.approx(2.0 * 250.0)
    assert figures.intensity_kind == "average"
    assert basis is ValueBasis.ACTUAL and notes == []


def test_actuals_win_over_forecasts_and_the_basis_says_mixed():
    draw = estimated_draw(EnergyProfile(power_w=1000, pue=1.0), T0, T0 + 2 * HALF)
    signals = ZoneSignals(carbon_actual=carbon([100]), carbon_forecast=carbon([999, 300], actual=False))
    figures, basis, _ = run_figures("GB", T0, T0 + 2 * HALF, draw, signals)
    assert figures.intensity_g_per_kwh == pytest.approx(200.0)
    assert basis is ValueBasis.MIXED


def test_price_and_cost_and_a_missing_period_is_noted():
    draw = estimated_draw(EnergyProfile(power_w=2000, pue=1.0), T0, T0 + 3 * HALF)
    signals = ZoneSignals(carbon_forecast=carbon([100, 200], actual=False), price_forecast=price([50, 70, 90]))
    figures, basis, notes = run_figures("GB", T0, T0 + 3 * HALF, draw, signals)
    assert figures.energy_kwh == pytest.approx(3.0)
    assert figures.price_per_mwh == pytest.approx(70.0) and figures.currency == "EUR"
    assert figures.cost == pytest.approx(3.0 / 1000 * 70.0)
    assert figures.intensity_g_per_kwh == pytest.approx(150.0)  # over the covered hour
    assert basis is ValueBasis.FORECAST
    assert any("no carbon value for 30 min" in n for n in notes)


def payload(waiting_since, home="GB"):
    return {
        "reason": "waited for the clean window",
        "plan": {
            "zone": "FR",
            "chunks": [{"start": (T0 + 2 * HALF).isoformat(), "end": (T0 + 4 * HALF).isoformat()}],
            "expected_signals": {"gCO2eq/kWh": 50.0},
        },
        "waiting_since": waiting_since.isoformat(),
        "waited_seconds": 3600.0,
        "counterfactual": {"zone": home, "planned_at": waiting_since.isoformat(), "signals": {"gCO2eq/kWh": 300.0}},
        "fallback": False,
        "problems": [],
    }


def released_kilowatt_run(zone, start, end, signals, **more):
    """A decorator task's successful 1 kW try (PUE 1) in ``zone``, released after waiting since T0 (:func:`payload`)."""
    return build_record(
        KEY,
        operator="decorator",
        priority_class="flexible",
        state="success",
        zone=zone,
        start=start,
        end=end,
        draw=estimated_draw(EnergyProfile(power_w=1000, pue=1.0), start, end),
        signals=signals,
        released=Released.from_payload(payload(T0)),
        **more,
    )


def test_the_counterfactual_starts_when_the_wait_began_in_the_home_zone_with_the_same_energy():
    start, end = T0 + 2 * HALF, T0 + 4 * HALF
    signals = {
        "FR": ZoneSignals(carbon_forecast=carbon([50, 50], start=start, zone="FR", actual=False)),
        "GB": ZoneSignals(carbon_actual=carbon([300, 200], zone="GB")),
    }
    record = released_kilowatt_run("FR", start, end, signals, placement="k8s_paris")
    assert record.actual.emissions_g == pytest.approx(1.0 * 50)
    cf = record.counterfactual
    assert cf is not None and cf.zone == "GB" and cf.start == T0 and cf.end == T0 + 2 * HALF
    assert cf.energy_kwh == pytest.approx(1.0) and cf.emissions_g == pytest.approx(250.0)
    assert record.saved_g == pytest.approx(200.0)
    assert record.planned_start == start and record.waited_s == 3600.0 and record.reason.startswith("waited")
    assert record.basis is ValueBasis.MIXED and not record.finalised
    assert record.signal_source == "test:FR, test:GB"


def test_average_and_marginal_are_never_compared():
    draw = estimated_draw(EnergyProfile(power_w=1000, pue=1.0), T0, T0 + HALF)
    signals = {
        "FR": ZoneSignals(carbon_actual=carbon([50], zone="FR")),
        "GB": ZoneSignals(carbon_actual=carbon([400], zone="GB", metric=CarbonMetric.MARGINAL)),
    }
    record = build_record(
        KEY,
        operator="batch",
        priority_class="batch",
        state="success",
        zone="FR",
        start=T0,
        end=T0 + HALF,
        draw=draw,
        signals=signals,
        released=Released.from_payload(payload(T0)),
    )
    assert record.counterfactual is not None and record.counterfactual.emissions_g is None
    assert record.saved_g is None
    assert any("not compared" in n for n in record.notes)


def test_without_power_the_intensity_is_recorded_but_no_emissions():
    record = build_record(
        KEY,
        operator="sensor",
        priority_class="flexible",
        state="success",
        zone="GB",
        start=T0,
        end=T0 + HALF,
        draw=None,
        signals={"GB": ZoneSignals(carbon_actual=carbon([120]))},
        released=Released(),
    )
    assert record.actual.intensity_g_per_kwh == pytest.approx(120.0)
    assert record.actual.emissions_g is None and record.energy_method is EnergyMethod.UNKNOWN
    assert record.counterfactual is None
    assert any("energy, emissions and cost unknown" in n for n in record.notes)


def test_finalise_recomputes_from_actuals_and_keeps_the_energy():
    forecasts = {
        "GB": ZoneSignals(carbon_forecast=carbon([300, 300, 100, 100], zone="GB", actual=False)),
    }
    record = released_kilowatt_run("GB", T0 + 2 * HALF, T0 + 4 * HALF, forecasts)
    assert record.basis is ValueBasis.FORECAST and record.saved_g == pytest.approx(200.0)
    actuals = {"GB": ZoneSignals(carbon_actual=carbon([280, 320, 150, 130], zone="GB"))}
    final = finalise(record, actuals)
    assert final.finalised and final.basis is ValueBasis.ACTUAL
    assert final.actual.energy_kwh == pytest.approx(1.0)
    assert final.actual.emissions_g == pytest.approx(140.0)
    assert final.counterfactual is not None and final.counterfactual.emissions_g == pytest.approx(300.0)
    assert final.saved_g == pytest.approx(160.0)
    partial = finalise(record, {"GB": ZoneSignals(carbon_actual=carbon([280, 320, 150], zone="GB"))})
    assert not partial.finalised and any("no carbon value" in n for n in partial.notes)


def test_a_run_too_short_to_measure_takes_the_values_at_its_start():
    draw = estimated_draw(EnergyProfile(power_w=1000, pue=1.0), T0, T0)
    figures, _, _ = run_figures("GB", T0, T0, draw, ZoneSignals(carbon_actual=carbon([120])))
    assert figures.energy_kwh == 0.0 and figures.emissions_g == 0.0
    assert figures.intensity_g_per_kwh == pytest.approx(120.0) and figures.end == T0


def test_finalising_an_instantaneous_run_keeps_the_value_at_its_start() -> None:
    # AWS Batch (moto) and Kubernetes can stamp start == stop: the energy is 0 and the intensity is the value
    # at the start; finalising must not lose it (a zero-length power curve once weighed nothing).
    from airflow_provider_gridaware.ledger.records import LedgerRecord, RunFigures
    from tests.support.ledger_day import at, half_hourly_actuals

    record = LedgerRecord(
        key=TryKey("d", "r", "t", -1, 1),
        operator="batch",
        priority_class="batch",
        state="success",
        actual=RunFigures(zone="FR", start=at(10), end=at(10), energy_kwh=0.0),
        energy_method=EnergyMethod.ESTIMATED,
    )
    finalised = finalise(record, [half_hourly_actuals("FR", {h / 2: 50.0 for h in range(48)})])
    assert finalised.actual.intensity_g_per_kwh == pytest.approx(50.0) and finalised.actual.emissions_g == 0.0
    assert finalised.basis is ValueBasis.ACTUAL


def test_finalising_without_actuals_for_the_run_keeps_what_was_recorded() -> None:
    # The daily report may finalise before a zone's actuals are in: the recorded figures must survive it.
    from airflow_provider_gridaware.ledger.records import LedgerRecord, RunFigures
    from tests.support.ledger_day import at, half_hourly_actuals

    recorded = RunFigures(
        zone="SE",
        start=at(10),
        end=at(11),
        energy_kwh=2.0,
        intensity_g_per_kwh=40.0,
        intensity_kind="average",
        emissions_g=80.0,
    )
    record = LedgerRecord(
        key=TryKey("d", "r", "t", -1, 1),
        operator="batch",
        priority_class="batch",
        state="success",
        actual=recorded,
        energy_method=EnergyMethod.ESTIMATED,
        basis=ValueBasis.FORECAST,
    )
    finalised = finalise(record, [half_hourly_actuals("FR", {h / 2: 50.0 for h in range(48)})])
    assert finalised.actual == recorded and not finalised.finalised
    assert finalised.basis is ValueBasis.FORECAST
