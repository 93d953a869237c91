"""A dispatch module imported without its extra says which extra to install, not a bare ModuleNotFoundError."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from airflow.exceptions import AirflowOptionalProviderFeatureException

from airflow_provider_gridaware.optional_providers import MissingExtraError, requires_extra

# Runs in a fresh interpreter: Airflow is imported first (its provider discovery needs the real packages),
# then the extra's modules are made unimportable as if never installed, and each of ours imported afresh.
_IMPORT_WITHOUT = """
import json, sys
import airflow
from airflow.exceptions import AirflowOptionalProviderFeatureException

blocked, modules = json.loads(sys.argv[1])

def forget(prefixes):
    for name in [m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes)]:
        del sys.modules[name]

results = {}
for module in modules:
    forget([*blocked, "airflow_provider_gridaware"])
    for name in blocked:
        sys.modules[name] = None
    try:
        __import__(module)
    except AirflowOptionalProviderFeatureException as exc:
        results[module] = {"optional_feature": True, "import_error": isinstance(exc, ImportError), "message": str(exc)}
    except BaseException as exc:
        results[module] = {"optional_feature": False, "message": f"{type(exc).__name__}: {exc}"}
    else:
        results[module] = None
print(json.dumps(results))
"""

PKG = "airflow_provider_gridaware"
CASES = {
    "kubernetes": (
        ["airflow.providers.cncf", "kubernetes", "kubernetes_asyncio"],
        {
            f"{PKG}.operators.kubernetes": "GridAwareKubernetesJobOperator",
            f"{PKG}.hooks.kubernetes": "GridKubernetesHook",
            f"{PKG}.triggers.kubernetes": "KubernetesJobCompletionTrigger",
        },
        "the official Kubernetes provider",
    ),
    "aws": (
        ["airflow.providers.amazon", "boto3", "botocore", "aiobotocore"],
        {
            f"{PKG}.operators.batch": "GridAwareBatchOperator",
            f"{PKG}.hooks.batch": "GridAwareBatchHook",
        },
        "the Amazon provider",
    ),
}


def import_without(blocked: list[str], modules: list[str]) -> dict[str, Any]:
    """Import each module in a fresh interpreter where the ``blocked`` modules are missing; what each raised."""
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT, json.dumps([blocked, modules])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("extra", sorted(CASES))
def test_missing_extra_names_the_extra_to_install(extra: str) -> None:
    blocked, features, provides = CASES[extra]
    results = import_without(blocked, list(features))
    for module, feature in features.items():
        result = results[module]
        assert result is not None, f"{module} imported although {blocked[0]} is missing: the check is void"
        assert result["optional_feature"], f"{module}: {result['message']}"
        assert result["import_error"], module
        expected = f"{feature} needs {provides}: pip install 'airflow-provider-gridaware[{extra}]'"
        assert result["message"].startswith(expected), result["message"]


def test_batch_trigger_imports_without_aws() -> None:
    # The trigger loads the AWS hook only when it runs, so it is listed in provider info without the extra.
    assert import_without(CASES["aws"][0], [f"{PKG}.triggers.batch"]) == {f"{PKG}.triggers.batch": None}


def test_other_import_errors_pass_unchanged() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, requires_extra("aws", "GridAwareBatchOperator"):
        import gridaware_no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert not isinstance(caught.value, AirflowOptionalProviderFeatureException)


def test_nested_guards_name_the_outer_feature_and_keep_the_cause() -> None:
    missing = ModuleNotFoundError("No module named 'boto3'", name="boto3")
    with pytest.raises(MissingExtraError) as caught, requires_extra("aws", "Outer"), requires_extra("aws", "Inner"):
        raise missing
    assert str(caught.value).startswith("Outer needs the Amazon provider")
    assert caught.value.name == "boto3"
    assert caught.value.__cause__ is missing
