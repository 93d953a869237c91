"""The pure trace model: CSV layouts, validation errors with file and line, step inference, gaps."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_gridaware.signals.errors import InvalidSignalError, MalformedPayloadError, SourceConfigError
from airflow_provider_gridaware.traces.trace import (
    BUNDLED_ZONE,
    TraceSpec,
    bundled_trace_path,
    infer_step,
    load_trace_file,
    load_traces,
    parse_trace_time,
)
from tests.conftest import SHARED_DATA

UTC = timezone.utc
T0 = datetime(2023, 5, 26, 0, 0, tzinfo=UTC)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bundled_trace_is_the_gb_month():
    traces = load_traces()
    assert traces.zones == [BUNDLED_ZONE]
    gb = traces.zone("GB")
    assert bundled_trace_path().is_file()
    assert len(gb) == 1459
    assert gb.step == timedelta(minutes=30)
    assert gb.start == datetime(2023, 5, 26, 3, 30, tzinfo=UTC)
    assert gb.end == datetime(2023, 6, 25, 13, 0, tzinfo=UTC)
    assert gb.value_at(datetime(2023, 5, 26, 3, 45, tzinfo=UTC)) == 166.0
    assert 0 < gb.scale < 400


def test_long_layout_with_extra_columns_and_several_zones(tmp_path):
    path = write(
        tmp_path / "t.csv",
        "time,zone,value,interpolated\n"
        "2023-05-26T00:00:00Z,A,10,false\n"
        "2023-05-26T00:00:00Z,B,20,false\n"
        "2023-05-26T01:30:00+01:00,A,11,true\n"  # an offset is honoured: 00:30Z
        "2023-05-26T01:00:00Z,A,12,false\n",
    )
    traces = load_trace_file(path)
    assert sorted(traces.zones) == ["A", "B"]
    a = traces.zone("A")
    assert a.values == (10.0, 11.0, 12.0)
    assert a.step == timedelta(minutes=30)
    assert a.start == T0 and a.end == T0 + timedelta(hours=1, minutes=30)
    assert load_trace_file(path, zone="B").zones == ["B"]


def test_wide_layout_is_one_zone_per_column_and_empty_cells_are_gaps(tmp_path):
    path = write(
        tmp_path / "prices.csv",
        "time,DE,FR\n2019-01-01 00:00:00,10.5,-3\n2019-01-01 01:00:00,,-4\n2019-01-01 02:00:00,12,-5\n",
    )
    traces = load_trace_file(path)
    assert traces.zone("FR").values == (-3.0, -4.0, -5.0)
    de = traces.zone("DE")
    assert de.values == (10.5, 12.0)
    assert de.start == datetime(2019, 1, 1, tzinfo=UTC)  # naive times are UTC
    assert de.value_at(datetime(2019, 1, 1, 1, 30, tzinfo=UTC)) is None  # the empty cell stays a gap
    assert load_trace_file(path, zone="FR").zones == ["FR"]


def test_lets_wait_awhile_layout_takes_the_zone_from_the_caller_or_the_file_name(tmp_path):
    text = "Time,Carbon Intensity\n2020-01-01 00:00:00,100.5\n2020-01-01 00:30:00,101.5\n"
    gz = tmp_path / "gb_ci.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert load_trace_file(gz).zones == ["GB"]
    named = load_trace_file(gz, zone="UK")
    assert named.zones == ["UK"] and named.zone("UK").values == (100.5, 101.5)
    assert load_traces([f"{gz}:XX"]).zones == ["XX"]


def test_points_end_at_the_next_start_unless_that_is_a_gap(tmp_path):
    path = write(
        tmp_path / "gap.csv",
        "time,zone,value\n"
        "2023-05-26T00:00Z,Z,1\n2023-05-26T00:30Z,Z,2\n2023-05-26T00:45Z,Z,3\n"
        "2023-05-26T01:15Z,Z,4\n2023-05-26T03:00Z,Z,5\n",
    )
    z = load_trace_file(path).zone("Z")
    assert z.step == timedelta(minutes=30)
    points = z.points_between(T0, T0 + timedelta(hours=4))
    assert [(p[0].strftime("%H:%M"), p[1].strftime("%H:%M")) for p in points] == [
        ("00:00", "00:30"),
        ("00:30", "00:45"),  # the 15-minute stretch ends where the next point starts
        ("00:45", "01:15"),
        ("01:15", "01:45"),  # the next point is 1h45 away: one step, then a gap
        ("03:00", "03:30"),
    ]
    assert z.value_at(T0 + timedelta(hours=2)) is None


def test_infer_step_prefers_the_most_common_then_the_smallest():
    base = T0.timestamp()
    assert infer_step([base, base + 900, base + 1800, base + 3600]) == timedelta(minutes=15)
    assert infer_step([base, base + 1800, base + 3600, base + 4500]) == timedelta(minutes=30)
    assert infer_step([base]) == timedelta(hours=1)


def test_percentile_is_the_rank_within_the_trace(tmp_path):
    rows = "".join(f"2023-05-26T{h:02d}:00Z,Z,{v}\n" for h, v in enumerate([10, 20, 30, 40]))
    z = load_trace_file(write(tmp_path / "p.csv", "time,zone,value\n" + rows)).zone("Z")
    assert z.percentile_of(5) == 0
    assert z.percentile_of(20) == 37.5  # one below, one equal (counted half), of four
    assert z.percentile_of(99) == 100


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ("2023-05-26T00:00Z,Z,1\n2023-05-26T00:30Z,Z,abc\n", MalformedPayloadError, r"bad\.csv:3: value 'abc'"),
        ("2023-05-26T00:00Z,Z,1\nnot-a-time,Z,2\n", MalformedPayloadError, r"bad\.csv:3: time 'not-a-time'"),
        (
            "2023-05-26T00:00Z,Z,1\n2023-05-26T00:00Z,Z,2\n",
            InvalidSignalError,
            r"bad\.csv:3: .*already given on line 2",
        ),
        ("2023-05-26T00:00Z,Z,nan\n", InvalidSignalError, r"bad\.csv:2: value is nan"),
        ("2023-05-26T00:00Z,Z\n", MalformedPayloadError, r"bad\.csv:2: expected 3 columns"),
    ],
)
def test_bad_rows_name_the_file_and_line(tmp_path, body, error, message):
    path = write(tmp_path / "bad.csv", "time,zone,value\n" + body)
    with pytest.raises(error, match=message):
        load_trace_file(path)


def test_configuration_errors(tmp_path):
    with pytest.raises(SourceConfigError, match="no such file"):
        load_trace_file(tmp_path / "missing.csv")
    with pytest.raises(SourceConfigError, match="no such file or folder"):
        load_traces([tmp_path / "missing.csv"])
    with pytest.raises(SourceConfigError, match="unknown layout"):
        load_trace_file(write(tmp_path / "x.csv", "when,what\n1,2\n"))
    with pytest.raises(SourceConfigError, match="empty"):
        load_trace_file(write(tmp_path / "e.csv", ""))
    good = write(tmp_path / "g.csv", "time,zone,value\n2023-05-26T00:00Z,A,1\n")
    with pytest.raises(SourceConfigError, match="has no zone 'B'; zones in the file: A"):
        load_trace_file(good, zone="B")
    with pytest.raises(SourceConfigError, match=r"no trace for zone 'B'; known zones: A"):
        load_traces([good]).zone("B")
    with pytest.raises(SourceConfigError, match="comes from both"):
        load_traces([good, good])


def test_zone_lookup_falls_back_to_case_insensitive():
    assert load_traces().zone("gb").zone == "GB"


def test_a_folder_loads_every_csv_and_zone_selects_one(tmp_path):
    folder = tmp_path / "traces"
    folder.mkdir()
    write(folder / "a.csv", "time,zone,value\n2023-05-26T00:00Z,A,1\n2023-05-26T00:30Z,A,2\n")
    (folder / "fr_ci.csv.gz").write_bytes(gzip.compress(b"Time,Carbon Intensity\n2020-01-01 00:00:00,50\n"))
    write(folder / "notes.txt", "ignored")
    assert sorted(load_traces([folder]).zones) == ["A", "FR"]
    assert load_traces([f"{folder}:FR"]).zones == ["FR"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceConfigError, match=r"has no \.csv"):
        load_traces([empty])


def test_trace_spec_parsing():
    assert TraceSpec.parse("/data/gb.csv") == TraceSpec(Path("/data/gb.csv"))
    assert TraceSpec.parse("/data/gb.csv:GB") == TraceSpec(Path("/data/gb.csv"), "GB")
    assert TraceSpec.parse("./dir:x/gb.csv") == TraceSpec(Path("./dir:x/gb.csv"))
    assert str(TraceSpec(Path("/a.csv"), "Z")) == "/a.csv:Z"


def test_time_parsing():
    assert parse_trace_time("2023-05-26T03:30:00Z") == datetime(2023, 5, 26, 3, 30, tzinfo=UTC)
    assert parse_trace_time("2023-05-26T04:30:00+01:00") == datetime(2023, 5, 26, 3, 30, tzinfo=UTC)
    assert parse_trace_time("2019-12-20 00:30:00") == datetime(2019, 12, 20, 0, 30, tzinfo=UTC)


@pytest.mark.skipif(not (SHARED_DATA / "carbon").is_dir(), reason="shared data not beside the checkout")
def test_shared_lets_wait_awhile_and_price_files_load():
    traces = load_traces([f"{SHARED_DATA}/carbon/ger_ci.csv.gz:DE", f"{SHARED_DATA}/carbon/gb_ci.csv.gz:GB"])
    assert traces.zone("DE").step == timedelta(minutes=15)
    assert traces.zone("GB").step == timedelta(minutes=30)  # mostly half-hourly, partly 15 min
    prices = load_trace_file(SHARED_DATA / "prices" / "elec_price_2019_2020_eur_mwh.csv.gz")
    assert set(prices.zones) == {"DE", "DK1", "ES", "FI", "FR", "NL", "NO1", "SE1"}
    assert min(prices.zone("DE").values) < 0  # negative prices are real and kept


def test_importing_the_trace_model_and_replay_hook_stays_light():
    code = (
        "import sys, json; import airflow_provider_gridaware.simulator, airflow_provider_gridaware.traces.trace,"
        " airflow_provider_gridaware.sources.replay, airflow_provider_gridaware.hooks.replay;"
        " print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    heavy = sorted(m for m in loaded if m.split(".")[0] in {"fastapi", "uvicorn", "numpy", "starlette", "pandas"})
    assert not heavy, heavy


def test_trace_model_imports_no_airflow():
    code = (
        "import sys, json; import airflow_provider_gridaware.traces.trace,"
        " airflow_provider_gridaware.traces.timeline, airflow_provider_gridaware.traces.forecast,"
        " airflow_provider_gridaware.sources.replay; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert not any(m == "airflow" or m.startswith("airflow.") for m in loaded)


def test_bundled_data_carries_its_attribution():
    readme = (bundled_trace_path().parent / "README.md").read_text()
    assert "Contains data from the Carbon Intensity API, National Grid ESO, CC BY 4.0" in readme
