"""MkDocs hooks of the documentation site (``mkdocs.yml`` ``hooks:``).

- ``<!-- conn-fields: gridaware_x -->`` in a page becomes the table of that connection type's form, generated
  from ``get_provider_info()`` at build time, so a how-to can never drift from what the UI shows.
- Nav entries listed in ``extra.pages_expected`` (pages other branches add) are left out of the built nav
  while their file is not there yet; every other nav entry must exist (strict mode fails otherwise).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

from airflow_provider_gridaware.get_provider_info import CONNECTION_TYPES

log = logging.getLogger("mkdocs.hooks.gridaware")

#: ``<!-- conn-fields: gridaware_watttime -->`` on a line of its own.
CONN_FIELDS_MARKER = re.compile(r"^<!-- conn-fields: ([\w.-]+) -->$", re.MULTILINE)
#: The standard connection form fields, in the order the Airflow UI shows them.
STANDARD_FIELDS = ("host", "schema", "login", "password", "port", "extra")


def connection_type(conn_type: str) -> dict[str, Any]:
    """The provider-info entry of ``conn_type``; an unknown type is an error naming the known ones."""
    for entry in CONNECTION_TYPES:
        if entry["connection-type"] == conn_type:
            return entry
    known = ", ".join(sorted(e["connection-type"] for e in CONNECTION_TYPES))
    raise PluginError(f"conn-fields: unknown connection type {conn_type!r} (known: {known})")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _schema_type(schema: dict[str, Any]) -> str:
    kinds = schema.get("type", "string")
    kinds = [kinds] if isinstance(kinds, str) else [k for k in kinds if k != "null"]
    text = " or ".join(kinds)
    if schema.get("enum"):
        text += ": " + ", ".join(f"`{v}`" for v in schema["enum"])
    return text


def conn_fields_table(conn_type: str) -> str:
    """Markdown for the connection form of ``conn_type``: its standard fields, then its extra fields."""
    entry = connection_type(conn_type)
    behaviour = entry["ui-field-behaviour"]
    hidden = set(behaviour["hidden-fields"])
    lines = [
        f"Connection type `{conn_type}` ({_cell(entry['hook-name'])}), hook "
        f"`{entry['hook-class-name'].removeprefix('airflow_provider_gridaware.')}`. "
        "Generated from the provider's `get_provider_info()`.",
        "",
        "| form field | label in the UI | example |",
        "|---|---|---|",
    ]
    for name in STANDARD_FIELDS:
        if name in hidden or name == "extra":
            continue
        label = behaviour["relabeling"].get(name, name.capitalize())
        example = behaviour["placeholders"].get(name, "")
        lines.append(f"| `{name}` | {_cell(label)} | {f'`{_cell(example)}`' if example else ''} |")
    fields = entry["conn-fields"]
    if fields:
        lines += [
            "",
            "Extra fields (own inputs in the UI's form; keys of `extra` in `AIRFLOW_CONN_<ID>` JSON):",
            "",
            "| extra | label in the UI | type | default | meaning |",
            "|---|---|---|---|---|",
        ]
        for name, field in fields.items():
            schema = field.get("schema", {})
            default = schema.get("default")
            lines.append(
                f"| `{name}` | {_cell(field.get('label', name))} | {_schema_type(schema)} | "
                f"{'' if default is None else f'`{_cell(default)}`'} | {_cell(field.get('description', ''))} |"
            )
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    return CONN_FIELDS_MARKER.sub(lambda m: conn_fields_table(m.group(1)), markdown)


def _drop_missing(nav: list[Any], docs_dir: Path, expected: set[str]) -> list[Any]:
    kept: list[Any] = []
    for item in nav:
        target = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(target, list):
            kept.append({next(iter(item)): _drop_missing(target, docs_dir, expected)})
        elif isinstance(target, str) and target in expected and not (docs_dir / target).is_file():
            log.info("nav: %s is expected from another branch and not there yet; left out", target)
        else:
            kept.append(item)
    return kept


def on_config(config: Any, **kwargs: Any) -> Any:
    expected = set(config["extra"].get("pages_expected", ()))
    if expected and config["nav"]:
        config["nav"] = _drop_missing(config["nav"], Path(config["docs_dir"]), expected)
    return config
