"""The docs layer: the site builds strictly, every page is in the nav, every snippet runs or is checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.session_report import summary_section


@pytest.fixture(scope="session", autouse=True)
def _snippets_summary(pytestconfig: pytest.Config) -> Iterator[None]:
    # Says in the terminal summary how many snippets ran, and which could not (and why): a skip must stay
    # visible. Filled at the session's end, on whichever process (or xdist worker) ran the docs layer.
    yield
    from tests.docs import test_snippets

    tally, skipped = test_snippets.TALLY, test_snippets.SKIPPED
    if not tally and not skipped:
        return
    lines = summary_section(pytestconfig, "docs snippets")
    lines.extend(f"{count:4d} {what}" for what, count in sorted(tally.items()))
    lines.append(f"{len(skipped):4d} compiled or syntax-checked only (marked snippet:skip)")
    lines.extend(f"       {line}" for line in skipped)
