"""The suite's own terminal summary: integration timings, the distributed run's figures, docs snippets.

A pytest plugin (``pytest_plugins`` in ``tests/conftest.py``), not a sub-directory conftest, because under
``pytest -n 4`` (``make test``) the controller process that prints the summary never collects, so it never
loads ``tests/integration/conftest.py``. What each worker measured (stack starts, teardown notes, other
layers' summary sections) travels back in xdist's ``workeroutput``; the per-test figures come with the test
reports, which reach the controller in either mode.
"""

from __future__ import annotations

from typing import Any

import pytest

_TIMINGS = pytest.StashKey[dict[str, float]]()
_NOTES = pytest.StashKey[list[str]]()
_DURATIONS = pytest.StashKey[dict[str, float]]()
_FIGURES = pytest.StashKey[dict[str, list[tuple[str, object]]]]()
_SECTIONS = pytest.StashKey[dict[str, list[str]]]()
_WORKER_OUTPUT_KEY = "gridaware_session_report"


def timings(config: pytest.Config) -> dict[str, float]:
    """Named wall-clock figures of this session (stack start, scenario set-up, ...), printed at the end."""
    return config.stash.setdefault(_TIMINGS, {})


def teardown_notes(config: pytest.Config) -> list[str]:
    """What teardown had to force (components needing a second signal or SIGKILL), printed at the end."""
    return config.stash.setdefault(_NOTES, [])


def summary_section(config: pytest.Config, title: str) -> list[str]:
    """Lines printed under ``title`` in the terminal summary; fill it by the end of the session."""
    return config.stash.setdefault(_SECTIONS, {}).setdefault(title, [])


#: The session's config, for the report hook (its arguments carry none).
_SESSION_CONFIG: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_CONFIG
    _SESSION_CONFIG = config


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" or _SESSION_CONFIG is None:
        return
    if "integration" in report.keywords:
        _SESSION_CONFIG.stash.setdefault(_DURATIONS, {})[report.nodeid] = report.duration
    if "distributed" in report.keywords and report.user_properties:
        _SESSION_CONFIG.stash.setdefault(_FIGURES, {})[report.nodeid] = list(report.user_properties)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # On an xdist worker: hand what it measured to the controller (xdist sends workeroutput after every
    # implementation of this hook has run).
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_WORKER_OUTPUT_KEY] = {
            "timings": timings(session.config),
            "notes": teardown_notes(session.config),
            "sections": session.config.stash.get(_SECTIONS, {}),
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    # On the xdist controller: a worker finished; merge what it measured.
    received = (getattr(node, "workeroutput", None) or {}).get(_WORKER_OUTPUT_KEY)
    if not received or _SESSION_CONFIG is None:
        return
    timings(_SESSION_CONFIG).update(received["timings"])
    teardown_notes(_SESSION_CONFIG).extend(received["notes"])
    for title, lines in received["sections"].items():
        summary_section(_SESSION_CONFIG, title).extend(lines)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    measured, notes = timings(config), teardown_notes(config)
    durations = config.stash.get(_DURATIONS, {})
    if measured or durations or notes:
        terminalreporter.section("gridaware integration timings")
        for name, seconds in measured.items():
            terminalreporter.write_line(f"{seconds:7.1f}s  {name}")
        for nodeid, seconds in durations.items():
            terminalreporter.write_line(f"{seconds:7.1f}s  {nodeid}")
        for note in notes:
            terminalreporter.write_line(f"teardown: {note}")
    figures = config.stash.get(_FIGURES, {})
    if figures:
        terminalreporter.section("gridaware distributed run figures")
        for nodeid, values in figures.items():
            terminalreporter.write_line(nodeid)
            for name, value in values:
                terminalreporter.write_line(f"  {name}: {value}")
    for title, lines in config.stash.get(_SECTIONS, {}).items():
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
