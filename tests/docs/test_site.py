"""The documentation site: it builds strictly, every page is in the nav, generated parts are there."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from airflow_provider_gridaware.get_provider_info import CONNECTION_TYPES
from tests.docs.snippets import DOCS, REPO

MKDOCS_YML = REPO / "mkdocs.yml"


def _load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gridaware_mkdocs_hooks", REPO / "tools" / "mkdocs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def _config() -> dict[str, Any]:
    # mkdocs.yml is plain YAML (no !ENV or !!python tags), so the safe loader reads it.
    return yaml.safe_load(MKDOCS_YML.read_text())


def nav_pages(nav: list[Any]) -> list[str]:
    """Every page path in a MkDocs nav, depth first."""
    found: list[str] = []
    for item in nav:
        target = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(target, list):
            found += nav_pages(target)
        elif not re.match(r"^[a-z]+://", target):
            found.append(target)
    return found


def doc_pages() -> set[str]:
    return {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}


def test_every_page_is_in_the_nav() -> None:
    missing = sorted(doc_pages() - set(nav_pages(_config()["nav"])))
    assert not missing, (
        f"pages under docs/ that the site's nav does not list: {missing}. Add one line per page under `nav:` "
        "in mkdocs.yml (in the section where a reader would look for it)"
    )


def test_every_nav_entry_is_a_page_or_expected_from_another_branch() -> None:
    config = _config()
    expected = set(config["extra"]["pages_expected"])
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), (
        f"pages listed twice in the nav: {sorted({p for p in listed if listed.count(p) > 1})}"
    )
    absent = sorted(set(listed) - doc_pages() - expected)
    assert not absent, f"nav entries with no page under docs/: {absent}"


def test_expected_pages_are_left_out_of_the_built_nav_only_while_absent() -> None:
    nav = [{"Ops": ["here.md", "later.md"]}, "index.md", {"Later": "later.md"}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "is_file", lambda self: self.name != "later.md")
        assert hooks._drop_missing(nav, Path("docs"), {"later.md"}) == [{"Ops": ["here.md"]}, "index.md"]
        assert hooks._drop_missing(nav, Path("docs"), set()) == nav


def test_connection_fields_tables_come_from_provider_info() -> None:
    table = hooks.conn_fields_table("gridaware_watttime")
    assert "| `signal_type` | Signal type | string | `co2_moer` | WattTime signal_type |" in table
    assert "| `host` | Base URL | `https://api.watttime.org` |" in table
    assert "`login`" in table and "`schema`" not in table  # hidden fields are not listed
    with pytest.raises(Exception, match="unknown connection type 'gridaware_nope'"):
        hooks.conn_fields_table("gridaware_nope")


def test_every_connection_type_has_one_how_to_with_its_generated_fields() -> None:
    marked: dict[str, list[str]] = {}
    for page in DOCS.rglob("*.md"):
        for conn_type in hooks.CONN_FIELDS_MARKER.findall(page.read_text()):
            marked.setdefault(conn_type, []).append(page.relative_to(DOCS).as_posix())
    types = {t["connection-type"] for t in CONNECTION_TYPES}
    assert set(marked) == types, (
        f"without a how-to: {sorted(types - set(marked))}; unknown: {sorted(set(marked) - types)}"
    )
    assert all(len(p) == 1 for p in marked.values()), {t: p for t, p in marked.items() if len(p) > 1}


def test_sphinx_roles_become_inline_code() -> None:
    spec = importlib.util.spec_from_file_location("griffe_sphinx_roles", REPO / "tools" / "griffe_sphinx_roles.py")
    assert spec and spec.loader
    roles = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roles)
    text = "with :class:`~airflow_provider_gridaware.triggers.grid_window.GridWindowTrigger` and :meth:`get_latest`"
    assert roles.plain_roles(text) == "with `GridWindowTrigger` and `get_latest`"
    assert roles.plain_roles(":py:func:`a.b`") == "`a.b`"


def test_benchmark_figures_are_those_of_their_pages() -> None:
    # docs/benchmarks.md quotes figures measured and explained elsewhere: a re-measured page must not leave it stale.
    summary = (DOCS / "benchmarks.md").read_text()
    elsewhere = "\n".join(p.read_text() for p in DOCS.rglob("*.md") if p.name != "benchmarks.md")
    figures = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", summary))
    assert figures, "no figures found in docs/benchmarks.md"
    stale = sorted(f for f in figures if not re.search(rf"(?<![\w.]){re.escape(f)}(?![\w.])", elsewhere))
    assert not stale, f"docs/benchmarks.md quotes figures no other page has (re-measured since?): {stale}"


def test_readme_links_resolve() -> None:
    # README links into docs/ (GitHub renders them) must survive moves of pages.
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    assert local, "no relative links found in README.md"
    broken = [t for t in local if not (REPO / t).exists()]
    assert not broken, f"README.md links to missing files: {broken}"


def test_site_builds_strictly(tmp_path: Path) -> None:
    """``make docs``: warnings (a broken internal link or anchor, a docstring out of step with its signature,
    a nav entry without a page) fail the build."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-5000:]}"
    # Generated parts are in the built pages: connection form tables and the reference from docstrings.
    ukci = (site / "sources" / "ukci" / "index.html").read_text()
    assert "https://api.carbonintensity.org.uk" in ukci and "Generated from the provider" in ukci
    sensor = (site / "reference" / "sensor" / "index.html").read_text()
    assert "end_from_trigger" in sensor and "GridWindowSensor" in sensor
    operators = (site / "reference" / "operators" / "index.html").read_text()
    assert "GridAwareKubernetesJobOperator" in operators and "checkpoint_path" in operators
    reference = [(site / "reference" / page / "index.html").read_text() for page in ("sensor", "trigger", "operators")]
    assert not [page for page in reference if ":class:`" in page], "a Sphinx role shows as raw text"
