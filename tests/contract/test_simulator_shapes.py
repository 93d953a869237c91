"""The simulator answers with exactly the real APIs' payload shapes (tests/fixtures/api_shapes), units and auth rules."""

from __future__ import annotations

import base64
import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from airflow_provider_gridaware.signals.units import LBS_PER_MWH_TO_G_PER_KWH
from airflow_provider_gridaware.simulator import SimulatorHandle, start_simulator
from airflow_provider_gridaware.traces.trace import load_traces
from tests.conftest import FIXTURES, api_shape

UTC = timezone.utc
FIVE_MINUTES = timedelta(minutes=5)
ENTSOE_NS = {"p": "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"}
GB_EIC = "10YGB----------A"


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys of objects, the first element's shape for lists, 'scalar' otherwise."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return "scalar"


def xml_paths(text: str) -> set[str]:
    """Every element path (tags without namespace) of an XML document."""
    root = ET.fromstring(text.encode())
    paths: set[str] = set()

    def walk(element: ET.Element, prefix: str) -> None:
        path = f"{prefix}/{element.tag.split('}', 1)[-1]}"
        paths.add(path)
        for child in element:
            walk(child, path)

    walk(root, "")
    return paths


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    with start_simulator(entsoe_resolution="60") as handle:
        yield handle


@pytest.fixture(autouse=True)
def _no_faults(sim: SimulatorHandle) -> Iterator[None]:
    yield
    sim.clear_faults()


def get(sim: SimulatorHandle, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{sim.url}{path}", timeout=10, **kwargs)


@pytest.fixture(scope="module")
def bearer(sim: SimulatorHandle) -> dict[str, str]:
    token = requests.get(f"{sim.url}/watttime/login", auth=("user", "pass"), timeout=10).json()["token"]
    return {"Authorization": f"Bearer {token}"}


# -- WattTime -------------------------------------------------------------------------------------------------
def test_watttime_login_shape(sim):
    response = get(sim, "/watttime/login", auth=("user", "pass"))
    assert response.status_code == 200
    assert shape(response.json()) == shape(api_shape("watttime_v3_login_response.json"))


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("/watttime/v3/forecast?region=GB&signal_type=co2_moer", "watttime_v3_forecast_response.json"),
        ("/watttime/v3/signal-index?region=GB&signal_type=co2_moer", "watttime_v3_signal-index_response.json"),
        ("/watttime/v3/region-from-loc?latitude=51.5&longitude=-0.1&signal_type=co2_moer", None),
    ],
)
def test_watttime_current_shapes(sim, bearer, path, fixture):
    response = get(sim, path, headers=bearer)
    assert response.status_code == 200, response.text
    expected = api_shape(fixture or "watttime_v3_region-from-loc_response.json")
    assert shape(response.json()) == shape(expected)


def test_watttime_history_shapes(sim, bearer):
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=1)
    params = {"region": "GB", "signal_type": "co2_moer", "start": start.isoformat(), "end": end.isoformat()}
    historical = get(sim, "/watttime/v3/historical", headers=bearer, params=params).json()
    assert shape(historical) == shape(api_shape("watttime_v3_historical_response.json"))
    assert len(historical["data"]) == 12
    vintages = get(sim, "/watttime/v3/forecast/historical", headers=bearer, params={**params, "horizon_hours": 1})
    body = vintages.json()
    assert shape(body) == shape(api_shape("watttime_v3_forecast_historical_response.json"))
    assert len(body["data"]) == 12 and len(body["data"][0]["forecast"]) == 12


def test_watttime_values_are_lbs_per_mwh_in_5_minute_steps(sim, bearer):
    body = get(sim, "/watttime/v3/forecast?region=GB&horizon_hours=2", headers=bearer).json()
    assert body["meta"]["units"] == "lbs_co2_per_mwh" and body["meta"]["data_point_period_seconds"] == 300
    times = [datetime.fromisoformat(p["point_time"]) for p in body["data"]]
    assert len(times) == 24 and all(b - a == FIVE_MINUTES for a, b in itertools.pairwise(times))
    assert times[0] == datetime.fromisoformat(body["meta"]["generated_at"])
    gb = sim.grid.carbon("GB")
    first = body["data"][0]
    assert first["value"] * LBS_PER_MWH_TO_G_PER_KWH == pytest.approx(gb.value_at(times[0]), abs=0.01)


def test_watttime_signal_index_is_a_percentile_of_the_trace(sim, bearer):
    body = get(sim, "/watttime/v3/signal-index?region=GB", headers=bearer).json()
    assert body["meta"]["units"] == "percentile"
    point = body["data"][0]
    when = datetime.fromisoformat(point["point_time"])
    gb = sim.grid.carbon("GB")
    assert point["value"] == round(gb.trace.percentile_of(gb.value_at(when)))
    assert 0 <= point["value"] <= 100


def test_watttime_needs_a_valid_bearer_token(sim, bearer):
    assert get(sim, "/watttime/v3/forecast?region=GB").status_code == 401
    assert get(sim, "/watttime/v3/forecast?region=GB", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert get(sim, "/watttime/login").status_code == 401
    basic = base64.b64encode(b"user-only").decode()
    assert get(sim, "/watttime/login", headers={"Authorization": f"Basic {basic}"}).status_code == 401


def test_watttime_token_expires(make_connection):
    with start_simulator(token_ttl=3600) as short:
        token = requests.get(f"{short.url}/watttime/login", auth=("u", "p"), timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert get(short, "/watttime/v3/signal-index?region=GB", headers=headers).status_code == 200
        short.revoke_tokens()  # the same as the TTL running out, without sleeping for it
        assert get(short, "/watttime/v3/signal-index?region=GB", headers=headers).status_code == 401
    with start_simulator(token_ttl=0) as expired:
        token = requests.get(f"{expired.url}/watttime/login", auth=("u", "p"), timeout=10).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert get(expired, "/watttime/v3/signal-index?region=GB", headers=headers).status_code == 401


def test_watttime_configured_credentials_are_checked():
    with start_simulator(watttime_username="alice", watttime_password="s3cret") as strict:
        assert requests.get(f"{strict.url}/watttime/login", auth=("alice", "s3cret"), timeout=10).status_code == 200
        assert requests.get(f"{strict.url}/watttime/login", auth=("alice", "wrong"), timeout=10).status_code == 403


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("region=XX", "region 'XX' is not available"),
        ("", "missing required parameter 'region'"),
        ("region=GB&signal_type=health_damage", "signal_type"),
        ("region=GB&horizon_hours=99", "horizon_hours"),
    ],
)
def test_watttime_bad_queries_are_400(sim, bearer, query, message):
    response = get(sim, f"/watttime/v3/forecast?{query}", headers=bearer)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_watttime_historical_longer_than_32_days_is_refused(sim, bearer):
    params = {"region": "GB", "start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}
    response = get(sim, "/watttime/v3/historical", headers=bearer, params=params)
    assert response.status_code == 400 and "32 days" in response.text


# -- Electricity Maps ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("latest", "electricitymaps_v3_carbon-intensity_latest_response.json"),
        ("history", "electricitymaps_v3_carbon-intensity_history_response.json"),
        ("forecast", "electricitymaps_v3_carbon-intensity_forecast_response.json"),
    ],
)
def test_electricity_maps_shapes(sim, path, fixture):
    response = get(sim, f"/electricitymaps/v3/carbon-intensity/{path}?zone=GB", headers={"auth-token": "t"})
    assert response.status_code == 200, response.text
    assert shape(response.json()) == shape(api_shape(fixture))


def test_electricity_maps_values_are_hourly_means_of_the_trace(sim):
    body = get(sim, "/electricitymaps/v3/carbon-intensity/history?zone=GB", headers={"auth-token": "t"}).json()
    assert len(body["history"]) == 24
    record = body["history"][0]
    start = datetime.fromisoformat(record["datetime"].replace("Z", "+00:00"))
    gb = sim.grid.carbon("GB")
    mean = (gb.value_at(start) + gb.value_at(start + timedelta(minutes=30))) / 2
    assert record["carbonIntensity"] == round(mean)
    assert isinstance(record["carbonIntensity"], int)
    forecast = get(
        sim, "/electricitymaps/v3/carbon-intensity/forecast?zone=GB&horizonHours=72", headers={"auth-token": "t"}
    )
    assert len(forecast.json()["forecast"]) == 72


def test_electricity_maps_past_range(sim):
    end = datetime.now(UTC) - timedelta(hours=2)
    params = {"zone": "GB", "start": (end - timedelta(days=2)).isoformat(), "end": end.isoformat()}
    body = get(
        sim, "/electricitymaps/v3/carbon-intensity/past-range", params=params, headers={"auth-token": "t"}
    ).json()
    assert len(body["data"]) in (48, 49)
    assert shape(body["data"][0]) == shape(api_shape("electricitymaps_v3_carbon-intensity_latest_response.json"))
    too_long = {**params, "start": (end - timedelta(days=11)).isoformat()}
    response = get(sim, "/electricitymaps/v3/carbon-intensity/past-range", params=too_long, headers={"auth-token": "t"})
    assert response.status_code == 400


def test_electricity_maps_needs_the_auth_token_and_a_known_zone(sim):
    assert get(sim, "/electricitymaps/v3/carbon-intensity/latest?zone=GB").status_code == 401
    unknown = get(sim, "/electricitymaps/v3/carbon-intensity/latest?zone=XX", headers={"auth-token": "t"})
    assert unknown.status_code == 404 and "known zones: GB" in unknown.text
    with start_simulator(api_token="right") as strict:
        assert (
            get(
                strict, "/electricitymaps/v3/carbon-intensity/latest?zone=GB", headers={"auth-token": "wrong"}
            ).status_code
            == 401
        )
        assert (
            get(
                strict, "/electricitymaps/v3/carbon-intensity/latest?zone=GB", headers={"auth-token": "right"}
            ).status_code
            == 200
        )


# -- GB Carbon Intensity ---------------------------------------------------------------------------------------
def _ukci_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def test_ukci_shapes(sim):
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    fw48h = get(sim, f"/ukci/intensity/{now}/fw48h").json()
    assert shape(fw48h) == shape(api_shape("ukci_intensity_fw48h_response.json"))
    assert len(fw48h["data"]) == 96
    # Periods that have begun carry an actual, later ones do not. (At :00 and :30 the first period is the one
    # that ended at `from`, as the real API answers, so the split is not always after the first.)
    asked = datetime.strptime(now, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    begun = [_ukci_time(p["from"]) <= asked for p in fw48h["data"]]
    assert begun[0] and not begun[-1]
    assert [p["intensity"]["actual"] is not None for p in fw48h["data"]] == begun
    assert shape(get(sim, "/ukci/intensity").json()) == shape(api_shape("ukci_intensity_current_response.json"))
    regional = get(sim, f"/ukci/regional/intensity/{now}/fw48h/regionid/13").json()
    assert shape(regional) == shape(api_shape("ukci_regional_regionid_response.json"))
    assert sum(m["perc"] for m in regional["data"][0]["data"][0]["generationmix"]) == pytest.approx(100, abs=0.5)
    pt24h = get(sim, f"/ukci/intensity/{now}/pt24h").json()
    assert len(pt24h["data"]) == 48 and all(p["intensity"]["actual"] is not None for p in pt24h["data"])
    assert len(get(sim, f"/ukci/intensity/{now}/fw24h").json()["data"]) == 48


def test_ukci_bad_paths_are_400(sim):
    assert get(sim, "/ukci/intensity/yesterday/fw48h").status_code == 400
    assert get(sim, "/ukci/intensity/2026-01-01T00:00Z/2026-02-01T00:00Z").status_code == 400
    assert get(sim, "/ukci/regional/intensity/2026-01-01T00:00Z/fw48h/regionid/18").status_code == 400


# -- ENTSO-E -------------------------------------------------------------------------------------------------------
def entsoe_params(start: datetime, end: datetime, domain: str = GB_EIC, token: str | None = "tok") -> dict[str, str]:
    params = {
        "documentType": "A44",
        "in_Domain": domain,
        "out_Domain": domain,
        "periodStart": start.strftime("%Y%m%d%H%M"),
        "periodEnd": end.strftime("%Y%m%d%H%M"),
    }
    if token:
        params["securityToken"] = token
    return params


def today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def test_entsoe_document_has_the_real_structure(sim):
    response = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=2), today()))
    assert response.status_code == 200
    real = (FIXTURES / "api_shapes" / "entsoe_A44_dayahead_response.xml").read_text()
    assert xml_paths(response.text) == xml_paths(real)
    root = ET.fromstring(response.text.encode())
    assert root.tag == f"{{{ENTSOE_NS['p']}}}Publication_MarketDocument"
    series = root.findall("p:TimeSeries", ENTSOE_NS)
    assert len(series) in (2, 3)  # one per delivery day (Brussels days straddle UTC midnight)
    assert {s.findtext("p:Period/p:resolution", namespaces=ENTSOE_NS) for s in series} == {"PT60M"}
    assert {s.findtext("p:curveType", namespaces=ENTSOE_NS) for s in series} == {"A03"}


def test_entsoe_a03_omits_repeated_prices(sim):
    text = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=2), today())).text
    root = ET.fromstring(text.encode())
    for period in root.iterfind("p:TimeSeries/p:Period", ENTSOE_NS):
        points = period.findall("p:Point", ENTSOE_NS)
        positions = [int(p.findtext("p:position", namespaces=ENTSOE_NS) or 0) for p in points]
        prices = [p.findtext("p:price.amount", namespaces=ENTSOE_NS) for p in points]
        assert positions[0] == 1 and positions == sorted(positions)
        assert all(a != b for a, b in itertools.pairwise(prices))


def test_entsoe_15_minute_resolution_after_the_sdac_switch():
    with start_simulator() as auto:
        text = get(auto, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today())).text
        assert "<resolution>PT15M</resolution>" in text  # delivery days from 2025-10-01 are 15-minute products
        state = auto.state()
        assert state["prices"]["synthetic_zones"] == ["GB"]
        assert "carbon_g_per_kwh" in state["prices"]["synthetic_formula"]


def test_entsoe_accepts_the_zone_name_and_refuses_without_token(sim):
    by_name = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today(), domain="GB"))
    assert "<Publication_MarketDocument" in by_name.text
    unauthorised = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today(), token=None))
    assert unauthorised.status_code == 401 and "Acknowledgement_MarketDocument" in unauthorised.text


def test_entsoe_no_data_is_an_acknowledgement_with_http_200(sim):
    unknown = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today(), domain="10YXX"))
    assert unknown.status_code == 200
    assert "Acknowledgement_MarketDocument" in unknown.text and "No matching data found" in unknown.text
    future = get(sim, "/entsoe/api", params=entsoe_params(today() + timedelta(days=5), today() + timedelta(days=6)))
    assert "No matching data found" in future.text  # not published yet
    bad = get(sim, "/entsoe/api", params={**entsoe_params(today(), today()), "documentType": "A65"})
    assert bad.status_code == 400 and "Acknowledgement_MarketDocument" in bad.text


def test_entsoe_outside_a_fixed_trace_is_no_data():
    gb = load_traces().zone("GB")
    with start_simulator(anchor="fixed", now=gb.end) as fixed:
        inside = get(
            fixed, "/entsoe/api", params=entsoe_params(gb.start + timedelta(days=2), gb.start + timedelta(days=3))
        )
        assert "<Publication_MarketDocument" in inside.text
        outside = get(
            fixed,
            "/entsoe/api",
            params=entsoe_params(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC)),
        )
        assert "No matching data found" in outside.text


# -- data faults in every API's own shape ------------------------------------------------------------------------
def test_nan_and_empty_faults_keep_each_shape(sim, bearer):
    sim.add_fault(
        {"target": "watttime", "mode": "nan", "count": 1}, {"target": "electricitymaps", "mode": "empty", "count": 1}
    )
    body = get(sim, "/watttime/v3/forecast?region=GB&horizon_hours=1", headers=bearer).json()
    assert all(math.isnan(p["value"]) for p in body["data"])
    empty = get(sim, "/electricitymaps/v3/carbon-intensity/history?zone=GB", headers={"auth-token": "t"}).json()
    assert empty == {"zone": "GB", "history": []}
    sim.add_fault({"target": "entsoe", "mode": "empty", "count": 1})
    assert (
        "No matching data found"
        in get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today())).text
    )
    sim.add_fault({"target": "entsoe", "mode": "nan", "count": 1})
    assert (
        "<price.amount>NaN</price.amount>"
        in get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today())).text
    )


def test_stale_fault_makes_the_newest_point_hours_old(sim, bearer):
    sim.add_fault({"target": "*", "mode": "stale", "stale_hours": 6})
    now = datetime.now(UTC)
    wt = get(sim, "/watttime/v3/forecast?region=GB", headers=bearer).json()
    newest = datetime.fromisoformat(wt["data"][-1]["point_time"])
    assert now - timedelta(hours=7) < newest <= now - timedelta(hours=6)
    em = get(sim, "/electricitymaps/v3/carbon-intensity/forecast?zone=GB", headers={"auth-token": "t"}).json()
    newest = datetime.fromisoformat(em["forecast"][-1]["datetime"].replace("Z", "+00:00"))
    assert newest <= now - timedelta(hours=6)


def test_malformed_fault_truncates_the_body(sim):
    sim.add_fault({"target": "entsoe", "mode": "malformed", "count": 1})
    text = get(sim, "/entsoe/api", params=entsoe_params(today() - timedelta(days=1), today())).text
    with pytest.raises(ET.ParseError):
        ET.fromstring(text.encode())
