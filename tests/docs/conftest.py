"""The docs layer: the site builds strictly, every page is in the nav, every snippet runs or is checked."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    # Says how many snippets ran, and which could not (and why): a skip must stay visible.
    from tests.docs import test_snippets

    tally, skipped = test_snippets.TALLY, test_snippets.SKIPPED
    if not tally and not skipped:
        return
    terminalreporter.section("docs snippets")
    for what, count in sorted(tally.items()):
        terminalreporter.write_line(f"{count:4d} {what}")
    terminalreporter.write_line(f"{len(skipped):4d} compiled or syntax-checked only (marked snippet:skip)")
    for line in skipped:
        terminalreporter.write_line(f"       {line}")
