"""Every code snippet of the docs runs, or is checked against the real tool it calls (see ``snippets.py``).

- python: executed in a fresh namespace (top-level ``await`` allowed; a few names the docs use without
  defining them come from :func:`prelude`) with the connections pointed at a local grid simulator (and
  ``vtn_main`` at the OpenADR 3 VTN of ``tests/support``); a ``<!-- snippet:skip REASON -->`` one is only
  compiled.
- bash: every command is checked against the real parser of its tool (``gridaware``, ``airflow``, ``pip``,
  ``make`` targets, ``pytest`` paths, ``python -m`` modules, benchmark scripts and their flags); one marked
  ``<!-- snippet:run -->`` is executed as well.
- yaml, json, toml: parsed; dockerfile: its instructions checked.

``http://127.0.0.1:8099`` (the simulator's documented address) becomes the test simulator's URL. The summary
at the end of the session says how many ran (``tests/docs/conftest.py``).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import functools
import importlib.util
import inspect
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from airflow_provider_gridaware.get_provider_info import CONNECTION_TYPES
from tests.docs.snippets import REPO, Snippet, all_snippets, page_snippets, shell_commands
from tests.support.openadr3_vtn import OpenADR3VTN

DOC_SIMULATOR = "http://127.0.0.1:8099"
VENV_BIN = Path(sys.executable).parent
SNIPPETS = all_snippets()
#: What ran and what was checked, for the session summary (tests/docs/conftest.py).
TALLY: Counter[str] = Counter()
SKIPPED: list[str] = []


def _of(lang: str, marker: str | None = None) -> list[Any]:
    return [pytest.param(s, id=s.id) for s in SNIPPETS if s.lang == lang and (marker is None or s.marker == marker)]


# -- the environment snippets run in -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulator_url() -> Iterator[str]:
    from airflow_provider_gridaware.simulator import start_simulator

    with start_simulator() as sim:
        yield sim.url


def page_connections(simulator_url: str) -> dict[str, str]:
    """The quick start's ``AIRFLOW_CONN_SIM_*`` connections, and the ``gridaware_*_default`` ids the docs use,
    all pointed at the test simulator."""
    (connections,) = [s for s in page_snippets(REPO / "docs" / "quickstart.md") if s.marker == "quickstart:connections"]
    env: dict[str, str] = {}
    for argv in shell_commands(connections.code):
        name, _, value = argv[1].partition("=")
        env[name] = value.replace(DOC_SIMULATOR, simulator_url)
    for source in ("UKCI", "WATTTIME", "ELECTRICITYMAPS", "ENTSOE", "REST", "REPLAY"):
        env[f"AIRFLOW_CONN_GRIDAWARE_{source}_DEFAULT"] = env[f"AIRFLOW_CONN_SIM_{source}"]
    return env


@pytest.fixture(scope="module")
def openadr3_vtn() -> Iterator[OpenADR3VTN]:
    """The OpenADR 3 VTN the docs' ``vtn_main`` connection names, with one event in its ``dr-peak`` program."""
    with OpenADR3VTN() as vtn:
        vtn.add_event(vtn.add_program("dr-peak"), start=datetime.now(timezone.utc) + timedelta(hours=1))
        yield vtn


@pytest.fixture
def doc_env(
    simulator_url: str, openadr3_vtn: OpenADR3VTN, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    vtn_main = {
        "conn_type": "gridaware_openadr3",
        "host": openadr3_vtn.url,
        "login": openadr3_vtn.client_id,
        "password": openadr3_vtn.client_secret,
        "extra": {"programs": "dr-peak", "client_name": "fleet-eu-west", "zones": "DE"},
    }
    env = {
        **page_connections(simulator_url),
        "AIRFLOW_CONN_VTN_MAIN": json.dumps(vtn_main),
        "GRIDAWARE_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return env


def prelude() -> dict[str, Any]:
    """Names the docs use without defining them (as doctest's globs): real objects, so the code runs for real.

    ``series`` is a real forecast from the bundled GB trace (replay hook); the times are around now.
    """
    from airflow.sdk import dag, task

    from airflow_provider_gridaware.hooks.batch import BatchQueue
    from airflow_provider_gridaware.hooks.replay import GridReplayHook
    from airflow_provider_gridaware.signals import SignalKind

    now = datetime.now(timezone.utc)
    series = GridReplayHook("gridaware_replay_default").get_forecast("GB")

    def train_one_step(state: dict[str, int]) -> None:
        state["step"] += 1

    return {
        "__name__": "docs_snippet",
        "datetime": datetime,
        "timedelta": timedelta,
        "timezone": timezone,
        "dag": dag,
        "task": task,
        "SignalKind": SignalKind,
        "now": now,
        "series": series,
        "many_series": [series],
        "t0": now - timedelta(days=1),
        "t1": now,
        "start": now - timedelta(days=1),
        "end": now,
        "QUEUES": [BatchQueue(zone="GB", job_queue="gpu-training", region_name="eu-west-2")],
        "relay_token": "a-bearer-token",
        "total_steps": 3,
        "train_one_step": train_one_step,
    }


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    # A snippet may install a SIGTERM handler (the checkpoint contract): the test process keeps its own.
    kept = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


# -- python --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("snippet", _of("python"))
def test_python_snippet_runs(snippet: Snippet, doc_env: dict[str, str], simulator_url: str) -> None:
    source = snippet.code.replace(DOC_SIMULATOR, simulator_url)
    code = compile(source, snippet.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if snippet.skip_reason:
        SKIPPED.append(f"{snippet.id}: {snippet.skip_reason}")
        pytest.skip(f"compiled only: {snippet.skip_reason}")
    namespace = prelude()
    with _signal_handlers_kept():
        result = eval(code, namespace)  # exec, but returns the coroutine when the snippet awaits at top level
        if inspect.iscoroutine(result):
            asyncio.run(result)
    TALLY["python executed"] += 1


# -- bash ----------------------------------------------------------------------------------------------------
@functools.cache
def _gridaware_parser() -> Any:
    from airflow_provider_gridaware.cli import build_parser

    return build_parser()


@functools.cache
def _airflow_parser() -> Any:
    from airflow.cli.cli_parser import get_parser

    return get_parser()


@functools.cache
def _script_help(script: str) -> str:
    done = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{script} --help failed:\n{done.stderr[-2000:]}"
    return done.stdout


def _parse(parser: Any, args: list[str], what: str) -> None:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(args)
    except SystemExit as exc:
        if exc.code:
            raise AssertionError(f"{what}: {errors.getvalue().strip()}") from None


_CONNECTION_TYPES = {t["connection-type"] for t in CONNECTION_TYPES}
_PYTHONS = {"python", "python3", ".venv/bin/python", "$(BIN)/python"}


def check_command(argv: list[str]) -> str:
    """Check one command against its tool; returns what kind of check it got (``checked`` or ``not checked``)."""
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):  # VAR=value before a command
        argv = argv[1:]
    if not argv:
        return "checked"
    what = " ".join(argv)
    tool = argv[0]
    if tool == "export":
        for assignment in argv[1:]:
            name, _, value = assignment.partition("=")
            if name.startswith("AIRFLOW_CONN_") and value.lstrip().startswith("{"):
                spec = json.loads(value)
                if str(spec.get("conn_type", "")).startswith("gridaware_"):
                    assert spec["conn_type"] in _CONNECTION_TYPES, f"{name}: unknown type {spec['conn_type']}"
        return "checked"
    if tool == "gridaware":
        _parse(_gridaware_parser(), argv[1:], what)
        return "checked"
    if tool == "airflow":
        _parse(_airflow_parser(), argv[1:], what)
        return "checked"
    if tool == "pip":
        from pip._internal.commands import create_command

        _parse(create_command(argv[1]).parser, argv[2:], what)
        return "checked"
    if tool == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
        assert set(argv[1:]) <= targets, f"{what}: no such make target ({sorted(set(argv[1:]) - targets)})"
        return "checked"
    if tool in _PYTHONS or tool == "pytest":
        args = argv[1:] if tool in _PYTHONS else ["-m", "pytest", *argv[1:]]
        if args[:2] == ["-m", "pytest"]:
            for path in (a.split("::")[0] for a in args[2:] if not a.startswith("-")):
                assert (REPO / path).exists(), f"{what}: {path} does not exist"
            return "checked"
        if args[0] == "-m":
            assert importlib.util.find_spec(args[1]) is not None, f"{what}: no module {args[1]}"
            return "checked"
        script = args[0]
        assert (REPO / script).is_file(), f"{what}: {script} does not exist"
        flags = [a.split("=")[0] for a in args[1:] if a.startswith("--")]
        if flags:
            # --help of a script without argparse would run it: such a script takes no options at all.
            assert "argparse" in (REPO / script).read_text(), f"{what}: {script} takes no options"
            shown = _script_help(script)
            missing = [flag for flag in flags if flag not in shown]
            assert not missing, f"{what}: {script} has no option {missing}"
        return "checked"
    return f"not checked ({tool})"


@pytest.mark.parametrize("snippet", _of("bash"))
def test_bash_snippet_commands_are_valid(snippet: Snippet) -> None:
    syntax = subprocess.run(["bash", "-n"], input=snippet.code, capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, f"{snippet.id}: not valid bash: {syntax.stderr}"
    if snippet.skip_reason:
        SKIPPED.append(f"{snippet.id}: {snippet.skip_reason}")
        pytest.skip(f"bash syntax checked only: {snippet.skip_reason}")
    for argv in shell_commands(snippet.code):
        TALLY[f"bash commands {check_command(argv)}"] += 1


@pytest.mark.parametrize("snippet", _of("bash", "snippet:run"))
def test_bash_snippet_runs(snippet: Snippet, doc_env: dict[str, str], simulator_url: str, tmp_path: Path) -> None:
    env = {**os.environ, **doc_env, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", snippet.code.replace(DOC_SIMULATOR, simulator_url)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"{snippet.id} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    TALLY["bash executed"] += 1


# -- yaml, json, toml, dockerfile ----------------------------------------------------------------------------------------------------
_DOCKERFILE_INSTRUCTIONS = set(
    [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ]
)


def dockerfile_instructions(text: str) -> list[str]:
    """The instructions of a Dockerfile (continuations joined); an unknown one is an error."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    words = [line.split()[0].upper() for line in lines]
    unknown = [w for w in words if w not in _DOCKERFILE_INSTRUCTIONS]
    assert not unknown and words and words[0] in {"FROM", "ARG"}, f"not a Dockerfile: {unknown or words[:1]}"
    return words


_PARSERS = {"yaml": yaml.safe_load, "json": json.loads, "toml": tomllib.loads, "dockerfile": dockerfile_instructions}


@pytest.mark.parametrize("snippet", [p for lang in _PARSERS for p in _of(lang)])
def test_data_snippet_parses(snippet: Snippet) -> None:
    _PARSERS[snippet.lang](snippet.code)
    TALLY[f"{snippet.lang} parsed"] += 1


def test_every_snippet_has_a_known_language() -> None:
    # A fence in another language would be silently neither run nor checked: mark it `text` if it is no code.
    known = {"python", "bash", "yaml", "json", "toml", "dockerfile", "text"}
    unknown = [f"{s.id} ({s.lang})" for s in SNIPPETS if s.lang not in known]
    assert not unknown, f"fences in a language this test neither runs nor checks: {unknown}"
    assert not [s.id for s in SNIPPETS if s.marker == "snippet:run" and s.lang != "bash"], "snippet:run is for bash"
