"""Import rules between the package's parts, checked on the source (``ast``), so a new import cannot slip in."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_gridaware

PACKAGE_DIR = Path(airflow_provider_gridaware.__file__).parent
SIMULATOR = "airflow_provider_gridaware.simulator"
# The only modules outside simulator/ that may start the simulator: the demo (its command and its Airflow run),
# and the CLI dispatcher that names ``gridaware simulate``'s module.
MAY_USE_SIMULATOR = {PACKAGE_DIR / "commands" / "demo.py", PACKAGE_DIR / "demo" / "run.py", PACKAGE_DIR / "cli.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` imports (relative imports resolved against ``package``), and every string
    naming one of ours (``importlib.import_module("...")`` and the like)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("airflow_provider_gridaware.")
        ):
            names.add(node.value)
    return names


def _imports_of(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imported_modules(path.read_text(), package)


def _uses_simulator(name: str) -> bool:
    return name == SIMULATOR or name.startswith(SIMULATOR + ".")


def test_nothing_outside_the_simulator_imports_it():
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(n for n in _imports_of(path) if _uses_simulator(n))
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if "simulator" not in path.relative_to(PACKAGE_DIR).parts and path not in MAY_USE_SIMULATOR
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, (
        f"only simulator/, commands/demo.py, demo/run.py and cli.py may import the simulator: {offenders}"
    )


def test_the_rule_sees_every_spelling_of_an_import():
    source = (
        "from ..simulator import trace\n"
        "import airflow_provider_gridaware.simulator.grid\n"
        "importlib.import_module('airflow_provider_gridaware.simulator.app')\n"
    )
    found = {n for n in imported_modules(source, "airflow_provider_gridaware.sources") if _uses_simulator(n)}
    assert {f"{SIMULATOR}.trace", f"{SIMULATOR}.grid", f"{SIMULATOR}.app"} <= found


#: The pure core: plain typed Python, tested and benchmarked without Airflow.
PURE_PACKAGES = ("signals", "planning", "ledger", "ui")


def test_the_pure_core_imports_no_airflow():
    offenders = {
        str(path.relative_to(PACKAGE_DIR)): sorted(
            n for n in _imports_of(path) if n == "airflow" or n.startswith("airflow.")
        )
        for package in PURE_PACKAGES
        for path in sorted((PACKAGE_DIR / package).rglob("*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}
