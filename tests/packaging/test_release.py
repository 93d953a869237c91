"""The release as a user gets it: ``python -m build`` makes an sdist and a wheel that install and work.

Built once per session (the wheel from the sdist, as ``python -m build`` does: a file missing from the
sdist breaks the wheel). Each artifact is installed into a clean virtualenv made by ``uv`` (from its local
cache: seconds) with ``apache-airflow==3.3.2`` under the project's ``constraints.txt``; the wheel with the
``[kubernetes,aws]`` extras. Then ``uv pip check`` must be clean and a smoke test runs in that virtualenv:
``airflow providers list`` shows the provider, ``airflow providers hooks`` lists its connection types, a DagBag over
the example DAGs (the sdist's copy) has no import errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
UV = VENV_BIN / "uv"
CONSTRAINTS = REPO / "constraints.txt"
AIRFLOW = "apache-airflow==3.3.2"
CONNECTION_TYPES = {
    "gridaware_watttime",
    "gridaware_electricitymaps",
    "gridaware_ukci",
    "gridaware_entsoe",
    "gridaware_rest",
    "gridaware_replay",
}
#: Example DAGs that need the ``kubernetes`` or ``aws`` extra.
NEEDS_EXTRAS = {"example_kubernetes_training.py", "example_batch_dispatch.py"}
#: Files the installed package cannot work without that are not Python modules.
PACKAGE_DATA = (
    "airflow_provider_gridaware/data/gb_national_actual_2023-05-26_2023-06-25.csv",
    "airflow_provider_gridaware/data/README.md",
    "airflow_provider_gridaware/store/migrations/env.py",
    "airflow_provider_gridaware/store/migrations/script.py.mako",
)

SMOKE = r"""
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import DagBag

dagbag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "dags": sorted(dagbag.dag_ids),
    "import_errors": {str(k): str(v)[-2000:] for k, v in dagbag.import_errors.items()},
    "package_file": __import__("airflow_provider_gridaware").__file__,
}))
"""


def _run(argv: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path = REPO, timeout: float = 600) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``python -m build`` into a temporary folder: ``{"sdist": ..., "wheel": ...}``."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, REPO])
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    unpacked = out / "unpacked"
    with tarfile.open(sdists[0]) as sdist:
        sdist.extractall(unpacked, filter="data")
    (example_dags,) = unpacked.glob("*/example_dags")
    return {"sdist": sdists[0], "wheel": wheels[0], "example_dags": example_dags}


def test_the_wheel_carries_the_package_data_licence_and_entry_points(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for path in PACKAGE_DATA:
        assert path in names, f"{path} is not in the wheel"
    assert any(n.startswith("airflow_provider_gridaware/store/migrations/versions/") for n in names)
    assert any(n.endswith("/licenses/LICENSE") for n in names) and any(n.endswith("/licenses/NOTICE") for n in names)
    assert "[apache_airflow_provider]" in entry_points and "get_provider_info" in entry_points
    assert "gridaware = airflow_provider_gridaware.cli:main" in entry_points
    assert "Provides-Extra: kubernetes" in metadata and "Provides-Extra: aws" in metadata


def test_the_sdist_carries_what_users_and_packagers_need(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for path in (*PACKAGE_DATA, "LICENSE", "NOTICE", "CHANGELOG.md", "README.md", "constraints.txt"):
        assert path in names, f"{path} is not in the sdist"
    assert any(n.startswith("example_dags/example_") for n in names)
    assert not any(n.startswith((".venv/", "tests/")) for n in names)


@pytest.fixture(scope="module", params=["wheel", "sdist"])
def installed(
    request: pytest.FixtureRequest, dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A clean virtualenv with Airflow 3.3.2 and the artifact (the wheel with ``[kubernetes,aws]``)."""
    kind = str(request.param)
    venv = tmp_path_factory.mktemp(f"venv-{kind}")
    _run([UV, "venv", "--quiet", "--python", sys.executable, venv])
    artifact = dist[kind]
    target = f"airflow-provider-gridaware[kubernetes,aws] @ {artifact.as_uri()}" if kind == "wheel" else str(artifact)
    _run(
        [
            UV,
            "pip",
            "install",
            "--quiet",
            "--python",
            venv / "bin" / "python",
            "--constraint",
            CONSTRAINTS,
            AIRFLOW,
            target,
        ]
    )
    yield kind, venv


def test_installs_cleanly_and_passes_the_smoke_test(
    installed: tuple[str, Path], dist: dict[str, Path], tmp_path: Path
) -> None:
    kind, venv = installed
    python = venv / "bin" / "python"
    _run([UV, "pip", "check", "--python", python])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow_home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    providers = json.loads(
        _run([venv / "bin" / "airflow", "providers", "list", "--output", "json"], env=env, cwd=tmp_path)
    )
    assert "airflow-provider-gridaware" in {p["package_name"] for p in providers}
    hooks = json.loads(
        _run([venv / "bin" / "airflow", "providers", "hooks", "--output", "json"], env=env, cwd=tmp_path)
    )
    listed = {h["connection_type"] for h in hooks if h.get("package_name") == "airflow-provider-gridaware"}
    assert listed >= CONNECTION_TYPES, f"connection types listed: {sorted(listed)}"
    if kind == "wheel":
        names = set(_run([UV, "pip", "freeze", "--python", python]).lower().split())
        assert any(n.startswith("apache-airflow-providers-cncf-kubernetes==") for n in names)
        assert any(n.startswith("apache-airflow-providers-amazon==") for n in names)
    report = json.loads(
        _run([python, "-c", SMOKE, dist["example_dags"]], env=env, cwd=tmp_path).strip().splitlines()[-1]
    )
    assert report["package_file"].startswith(str(venv)), "the smoke test imported the checkout, not the install"
    errors = {Path(path).name: error for path, error in report["import_errors"].items()}
    if kind == "wheel":
        assert not errors, errors
    else:
        # Without the extras, only the dispatch examples fail, and they say which extra to install.
        assert set(errors) <= NEEDS_EXTRAS, errors
        for name, error in errors.items():
            assert "pip install 'airflow-provider-gridaware[" in error, f"{name}: {error}"
    assert {"example_gridaware_task", "example_grid_window_sensor"} <= set(report["dags"]), report["dags"]
