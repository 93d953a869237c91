"""Provider registration: the metadata Airflow reads must match its own schema and our classes."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

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
    # Signal and event hooks have connection types; the dispatch hooks use the Kubernetes and AWS ones.
    listed = {
        module
        for entry in info["hooks"]
        if entry["integration-name"] in ("Grid signals", "Grid events")
        for module in entry["python-modules"]
    }
    declared = {c["hook-class-name"].rsplit(".", 1)[0] for c in info["connection-types"]}
    assert listed == declared


def _conn_field_names_and_defaults() -> list[tuple[str, str, Any]]:
    """Every (connection type, field name, default) the connection form shows."""
    return [
        (conn["connection-type"], name, field["schema"].get("default"))
        for conn in get_provider_info()["connection-types"]
        for name, field in conn["conn-fields"].items()
    ]


@pytest.mark.parametrize(("conn_type", "name", "default"), _conn_field_names_and_defaults())
def test_no_conn_field_is_masked_by_airflow(conn_type: str, name: str, default: Any) -> None:
    # Airflow masks the value of any field whose name holds a sensitive word ('api_key', 'token', ...) in
    # the connection form (hook_meta) and in a saved connection's extras: the form would pre-fill '***'.
    from airflow._shared.secrets_masker import _secrets_masker, redact, should_hide_value_for_key

    assert _secrets_masker().sensitive_variables_fields, "Airflow's masker is not configured: the check is void"
    assert not should_hide_value_for_key(name), f"{conn_type}: field {name!r} would be masked"
    assert redact(default, name) == default, f"{conn_type}: the default of {name!r} would be masked"


def test_hook_meta_shows_our_defaults_unmasked():
    """What the UI's connection form receives (``GET /ui/connections/hook_meta``) keeps every default."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    ours = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    seen = 0
    for meta in HookMetaService.hook_meta_data():
        if meta.connection_type not in ours:
            continue
        for name, field in ours[meta.connection_type]["conn-fields"].items():
            assert meta.extra_fields is not None
            assert meta.extra_fields[name]["value"] == field["schema"].get("default"), (meta.connection_type, name)
            seen += 1
    assert seen == len(_conn_field_names_and_defaults())


def test_description_claims_only_what_is_registered():
    info = get_provider_info()
    description = info["description"].lower()
    # Demand response (grid events, OpenADR) is planned, not built: no module registers it yet.
    assert "demand response" not in description
    assert "demand-response" not in description
    registered = " ".join(i["integration-name"] for i in info["integrations"]).lower()
    for feature in ("kubernetes", "aws batch"):
        assert feature in registered and feature in description
    assert info["sensors"] and "sensor" in description
    assert info["task-decorators"] and "decorator" in description
