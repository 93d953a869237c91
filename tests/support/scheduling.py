"""How ``make test`` shares the suite between its xdist workers.

The Airflow layers are mostly wall-clock waiting (a serial run of them keeps 0.7 of the 2 cores busy), so every
worker runs one of them at a time, and the unit, contract and docs modules fill the gaps:

- **the shared stack** (``tests/integration`` tests on the session's Airflow): one worker starts the stack and
  its waiting scenarios and runs the tests that need no wait;
- **the own stacks** (tests marked ``own_stack``, ``tests/distributed``, ``tests/packaging``): each module is a
  unit of its own (it starts its own Airflow, or builds and installs the package) and goes before any module,
  but a worker takes one only when it holds no other own stack unfinished: so they spread over the workers
  (the other workers from the start, the shared stack's once its tests are out) rather than queue on one;
- **collecting the shared stack** (tests marked ``awaits_window`` or ``restarts_shared_stack``): only to the
  worker holding the shared stack (a session fixture lives in one worker process), as soon as that worker says
  its waiting scenarios have settled (every watched run ended: collecting waits for nothing), else last: then
  it waits for the windows with nothing else left to run. Sent early, its triggerer restart (~25 s, mostly
  waiting) runs beside the other workers' modules instead of after them.

Which group a test is in follows its markers, which only the workers see: each worker writes the groups of
its collection to a file the controller named (``pytest_configure_node``), and the scheduler reads it once
collection is complete. The shared stack's worker tells the same way that its scenarios have settled
(:func:`announce_settled`: a second file, which the scheduler looks for whenever that worker asks for work).
Everything else is a unit per module, as ``--dist loadscope`` makes it.

``xdist_group`` marks with ``--dist loadgroup`` cannot say "only on that worker, and last", and do nothing on
pytest 9.2 anyway: xdist 3.8 renames node ids to carry the group, which pytest 9.2's structured node ids
ignore (pytest-dev/pytest-xdist#1386, open).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_STACK = "airflow: shared stack"
#: An own-stack unit's name: this, then its module's path.
OWN_STACK = "airflow: own stack: "
SHARED_STACK_COLLECT = "airflow: shared stack, collecting"

#: Paths (relative to the rootdir) whose every test is in the own-stacks group.
OWN_STACK_PATHS = ("tests/distributed/", "tests/packaging/")
#: ``workerinput`` key: where a worker writes the groups of its collection.
GROUPS_FILE_KEY = "gridaware_test_groups"
#: ``workerinput`` key: the file the shared stack's worker creates once its waiting scenarios have settled.
SETTLED_FILE_KEY = "gridaware_scenarios_settled"
_WORKER_FILES = pytest.StashKey[dict[str, str]]()


def group_of(item: pytest.Item) -> str | None:
    """The Airflow group a collected test belongs to, or ``None`` for a plain unit (its module)."""
    if item.nodeid.startswith(OWN_STACK_PATHS) or item.get_closest_marker("own_stack") is not None:
        return OWN_STACK + item.nodeid.split("::")[0]
    if any(item.get_closest_marker(name) is not None for name in ("awaits_window", "restarts_shared_stack")):
        return SHARED_STACK_COLLECT
    if item.nodeid.startswith("tests/integration/"):
        return SHARED_STACK
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    # On the controller, for each worker it starts: name the files the workers write (the same for every worker).
    config: pytest.Config = node.config
    if _WORKER_FILES not in config.stash:
        config.stash[_WORKER_FILES] = {}
        for key, prefix in ((GROUPS_FILE_KEY, "gridaware-test-groups-"), (SETTLED_FILE_KEY, "gridaware-settled-")):
            handle, name = tempfile.mkstemp(prefix=prefix, suffix=".json")
            os.close(handle)
            os.unlink(name)  # written by a worker when it has something to say; absent until then
            config.stash[_WORKER_FILES][key] = name
            config.add_cleanup(lambda name=name: Path(name).unlink(missing_ok=True))
    node.workerinput.update(config.stash[_WORKER_FILES])


def announce_settled(config: pytest.Config, settled: Callable[[], bool], *, interval: float = 2.0) -> None:
    """On a worker under ``make test``: create the settled file once ``settled()`` says so (a daemon thread).

    Outside xdist, or without a file named, nothing happens: the order of one process already collects last.
    """
    path = getattr(config, "workerinput", {}).get(SETTLED_FILE_KEY)
    if not path:
        return
    halt = threading.Event()
    config.add_cleanup(halt.set)

    def watch() -> None:
        while not halt.is_set():
            try:
                if settled():
                    Path(path).touch()
                    return
            except Exception:  # a scenario that cannot tell is not settled; its tests report what went wrong
                pass
            halt.wait(interval)

    threading.Thread(target=watch, name="announce settled scenarios", daemon=True).start()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # On a worker: tell the controller's scheduler the groups (every worker collects the same tests; the last
    # one to write wins, with the same content).
    path = getattr(config, "workerinput", {}).get(GROUPS_FILE_KEY)
    if not path:
        return
    groups = {item.nodeid: group for item in items if (group := group_of(item)) is not None}
    partial = Path(f"{path}.{os.getpid()}")
    partial.write_text(json.dumps(groups))
    partial.replace(path)


def is_own_stack(scope: str) -> bool:
    return scope.startswith(OWN_STACK)


class AirflowLayersScheduling(LoadScopeScheduling):
    """Load-scope scheduling with the Airflow groups above: the shared stack and the own stacks first, at most
    one own stack per worker at a time, and the collecting unit last, on the shared stack's worker only."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        config.option.loadscopereorder = False  # the order of the units is ours (see schedule())
        super().__init__(config, log)
        self._groups: dict[str, str] | None = None

    def _worker_file(self, key: str) -> Path | None:
        name = self.config.stash.get(_WORKER_FILES, {}).get(key)
        return Path(name) if name else None

    def _group_map(self) -> dict[str, str]:
        if self._groups is None:
            path = self._worker_file(GROUPS_FILE_KEY)
            try:
                self._groups = json.loads(path.read_text()) if path else {}
            except FileNotFoundError:
                self._groups = {}
        return self._groups

    def _scenarios_settled(self) -> bool:
        path = self._worker_file(SETTLED_FILE_KEY)
        return path is not None and path.exists()

    def _split_scope(self, nodeid: str) -> str:
        return self._group_map().get(nodeid) or super()._split_scope(nodeid)

    def schedule(self) -> None:
        if self.collection is not None:  # a worker replaced a crashed one: the base class tops every worker up
            super().schedule()
            return
        # As the base class does the first time, but with the units in our order, handed out by _reschedule.
        assert self.collection_is_completed
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = list(next(iter(self.registered_collections.values())))
        queue: dict[str, dict[str, bool]] = {}
        for nodeid in self.collection:
            queue.setdefault(self._split_scope(nodeid), {})[nodeid] = False
        leading = [SHARED_STACK] if SHARED_STACK in queue else []
        leading += [scope for scope in queue if is_own_stack(scope)]
        trailing = [SHARED_STACK_COLLECT] if SHARED_STACK_COLLECT in queue else []
        middle = [scope for scope in queue if scope not in leading and scope not in trailing]
        self.workqueue = OrderedDict((scope, queue[scope]) for scope in [*leading, *middle, *trailing])
        for node in self.nodes:
            self._reschedule(node)

    def _owner_of(self, scope: str) -> Any:
        return next((node for node, work in self.assigned_work.items() if scope in work), None)

    def _holds_an_own_stack(self, node: Any) -> bool:
        return any(is_own_stack(scope) and not all(work.values()) for scope, work in self.assigned_work[node].items())

    def _next_scope_for(self, node: Any, *, needed: bool) -> str | None:
        """The first queued unit this worker may take now, or ``None`` if none is (or will be) for it.

        :param needed: the worker cannot go on without more (it runs a test only once it knows the next): then
            it takes a second own stack rather than nothing.
        """
        second_own_stack = None
        holds_an_own_stack = self._holds_an_own_stack(node)
        # Only on the worker holding the shared stack (if that worker crashed, its stack is gone anyway: then
        # any), and only once its scenarios have settled or nothing else is queued: the windows open in
        # minutes, the modules run meanwhile.
        owner = self._owner_of(SHARED_STACK)
        collects = SHARED_STACK_COLLECT in self.workqueue and (owner is None or owner is node)
        if collects and self._scenarios_settled():
            return SHARED_STACK_COLLECT
        for scope in self.workqueue:
            if scope == SHARED_STACK_COLLECT:
                if collects and len(self.workqueue) == 1:
                    return scope
            elif is_own_stack(scope) and holds_an_own_stack:
                # Two Airflows of their own one after another on one worker is what made it the suite's
                # critical path: leave the next to a worker that holds none.
                second_own_stack = second_own_stack or scope
            else:
                return scope
        return second_own_stack if needed else None

    def _reschedule(self, node: Any) -> None:
        # A worker runs a test only once it knows the next one (or is told to shut down): so top it up past two
        # pending tests, not by one unit, or a worker left with one pending test would wait forever.
        while not node.shutting_down and (pending := self._pending_of(self.assigned_work[node])) <= 2:
            scope = self._next_scope_for(node, needed=pending < 2)
            if scope is None:
                if all(s == SHARED_STACK_COLLECT for s in self.workqueue):
                    node.shutdown()  # nothing queued is for this worker, and nothing more will be
                return
            work_unit = self.workqueue.pop(scope)
            self.assigned_work[node][scope] = work_unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(nodeid) for nodeid, done in work_unit.items() if not done])
