"""Provider registration: the metadata Airflow reads must match its own schema and our classes."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_gridaware.get_provider_info import get_provider_info

SCHEMA = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())


def test_provider_info_matches_airflow_schema():
    jsonschema.validate(get_provider_info(), SCHEMA)


def test_entry_point_is_registered():
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_gridaware")
    ]
    assert ep.load() is get_provider_info


@pytest.mark.parametrize("conn", get_provider_info()["connection-types"], ids=lambda c: c["connection-type"])
def test_connection_types_point_at_real_hooks(conn):
    module_name, class_name = conn["hook-class-name"].rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # pragma: no cover - a missing hook module is a real failure
        pytest.fail(f"{conn['connection-type']}: {exc}")
    hook = getattr(module, class_name)
    assert hook.conn_type == conn["connection-type"]
    assert hook.hook_name == conn["hook-name"]
    assert hook.default_conn_name.startswith("gridaware_")
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour) == {"hidden-fields", "relabeling", "placeholders"}
    for name, field in conn["conn-fields"].items():
        assert field["label"], name
        assert "type" in field["schema"], name


def test_hook_modules_listed_match_connection_types():
    info = get_provider_info()
    listed = set(info["hooks"][0]["python-modules"])
    declared = {c["hook-class-name"].rsplit(".", 1)[0] for c in info["connection-types"]}
    assert listed == declared
