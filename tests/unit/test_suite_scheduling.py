"""``make test``'s scheduler (tests/support/scheduling.py), driven by simulated xdist workers.

A simulated worker behaves as xdist's does: it runs a test only once it knows the next one or has been told to
shut down. So a schedule that leaves a worker with one pending test and nothing coming deadlocks here, as it
would stall CI until its time limit.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.scheduling import (
    _WORKER_FILES,
    GROUPS_FILE_KEY,
    OWN_STACK,
    SETTLED_FILE_KEY,
    SHARED_STACK,
    SHARED_STACK_COLLECT,
    AirflowLayersScheduling,
    is_own_stack,
)


class Worker:
    def __init__(self, name: str, collection: list[str], groups: dict[str, str]) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.collection = collection
        self.groups = groups
        self.queue: list[int] = []
        self.ran: list[str] = []
        #: When each test in ``ran`` ran, counted over all workers.
        self.steps: list[int] = []
        self.shutdown_sent = False
        #: The most own-stack modules this worker ever had queued at once (two: one ran after the other).
        self.most_own_stacks_queued = 0
        #: Plain modules it was sent while it held no own stack and one was still queued.
        self.passed_over_own_stacks: list[str] = []
        self.scheduler: Any = None

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_sent

    def _own_stacks_queued(self) -> set[str]:
        return {group for i in self.queue if is_own_stack(group := self.groups.get(self.collection[i], ""))}

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutdown_sent, "work sent after shutdown"
        sent = self.groups.get(self.collection[indices[0]], "")
        if not sent and not self._own_stacks_queued() and any(map(is_own_stack, self.scheduler.workqueue)):
            self.passed_over_own_stacks.append(self.collection[indices[0]])
        self.queue.extend(indices)
        self.most_own_stacks_queued = max(self.most_own_stacks_queued, len(self._own_stacks_queued()))

    def shutdown(self) -> None:
        self.shutdown_sent = True

    def can_run(self) -> bool:
        return len(self.queue) > 1 or (len(self.queue) == 1 and self.shutdown_sent)


def run(
    collection: list[str],
    groups: dict[str, str],
    tmp_path: Path,
    seed: int = 0,
    workers: int = 2,
    *,
    settle_after: str | None = None,
) -> dict[str, Worker]:
    """The workers, each with the tests it ran in order; fails on a deadlock.

    :param settle_after: the shared stack's worker announces its scenarios settled once this test has run.
    """
    path, settled = tmp_path / "groups.json", tmp_path / "settled"
    path.write_text(json.dumps(groups))
    settled.unlink(missing_ok=True)
    stash = pytest.Stash()
    stash[_WORKER_FILES] = {GROUPS_FILE_KEY: str(path), SETTLED_FILE_KEY: str(settled)}
    config: Any = SimpleNamespace(
        option=SimpleNamespace(loadscopereorder=True), stash=stash, getvalue=lambda name: [f"{workers}*popen"]
    )
    scheduler = AirflowLayersScheduling(config)
    nodes = [Worker(f"gw{i}", collection, groups) for i in range(workers)]
    for worker in nodes:
        worker.scheduler = scheduler
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    rng = random.Random(seed)  # which runnable worker finishes its test first
    while True:
        runnable = [w for w in nodes if w.can_run()]
        if not runnable:
            break
        worker = rng.choice(runnable)
        index = worker.queue.pop(0)
        worker.ran.append(collection[index])
        worker.steps.append(sum(len(w.ran) for w in nodes))
        if collection[index] == settle_after:
            settled.touch()
        scheduler.mark_test_complete(worker, index)
    stuck = {w.gateway.id: [collection[i] for i in w.queue] for w in nodes if w.queue}
    assert not stuck, f"deadlock: tests pending on a worker that never runs them: {stuck}"
    assert not scheduler.workqueue, f"never handed out: {list(scheduler.workqueue)}"
    assert sorted(t for w in nodes for t in w.ran) == sorted(collection)  # each exactly once
    return {w.gateway.id: w for w in nodes}


def suite(
    shared: int = 4, collect: int = 2, own: int = 3, modules: int = 6, own_modules: int = 1
) -> tuple[list[str], dict[str, str]]:
    """A collection in the order the conftests sort it, and its groups as the workers write them.

    :param own: tests in each of the ``own_modules`` own-stack modules.
    """
    groups: dict[str, str] = {}
    collection: list[str] = []
    for i in range(shared):
        collection.append(f"tests/integration/test_shared.py::test_{i}")
        groups[collection[-1]] = SHARED_STACK
    for m in range(modules):
        collection += [f"tests/unit/test_m{m}.py::test_{i}" for i in range(1 + m % 3)]
    for i in range(collect):
        collection.append(f"tests/integration/test_shared.py::test_collect_{i}")
        groups[collection[-1]] = SHARED_STACK_COLLECT
    for m in range(own_modules if own else 0):
        module = f"tests/integration/test_own{m}.py"
        for i in range(own):
            collection.append(f"{module}::test_{i}")
            groups[collection[-1]] = OWN_STACK + module
    return collection, groups


def own_stack_modules(tests: list[str], groups: dict[str, str]) -> list[str]:
    """The own-stack modules in the order a worker started them."""
    return list(dict.fromkeys(groups[t] for t in tests if is_own_stack(groups.get(t, ""))))


@pytest.mark.parametrize("seed", range(5))
def test_the_collecting_tests_run_last_on_the_shared_stacks_worker(tmp_path: Path, seed: int) -> None:
    collection, groups = suite()
    ran = {name: worker.ran for name, worker in run(collection, groups, tmp_path, seed).items()}
    [shared_worker] = [name for name, tests in ran.items() if "tests/integration/test_shared.py::test_0" in tests]
    [own_worker] = [name for name in ran if name != shared_worker]
    assert all(t in ran[shared_worker] for t, g in groups.items() if g in (SHARED_STACK, SHARED_STACK_COLLECT))
    assert ran[own_worker][:3] == [t for t, g in groups.items() if is_own_stack(g)]  # first, in order
    collecting = [i for i, t in enumerate(ran[shared_worker]) if groups.get(t) == SHARED_STACK_COLLECT]
    assert collecting == list(range(len(ran[shared_worker]) - 2, len(ran[shared_worker])))  # last, in order
    assert any(t.startswith("tests/unit/") for t in ran[shared_worker])  # it ran modules while waiting


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_once_its_scenarios_have_settled_the_shared_stacks_worker_collects_before_the_modules_left(
    tmp_path: Path, seed: int, workers: int
) -> None:
    collection, groups = suite(modules=30)
    signal = "tests/unit/test_m2.py::test_0"
    nodes = run(collection, groups, tmp_path, seed, workers, settle_after=signal)
    [shared] = [w for w in nodes.values() if "tests/integration/test_shared.py::test_0" in w.ran]
    assert all(t in shared.ran for t, g in groups.items() if g in (SHARED_STACK, SHARED_STACK_COLLECT))
    step = {t: at for w in nodes.values() for t, at in zip(w.ran, w.steps, strict=True)}
    collecting = sorted(step[t] for t, g in groups.items() if g == SHARED_STACK_COLLECT)
    assert collecting[0] > step[signal]  # not before the worker said so
    # No longer last: modules still ran after the collecting began, on the other workers or after it.
    assert any(at > collecting[0] for t, at in step.items() if t.startswith("tests/unit/"))


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_own_stacks_spread_over_the_workers_rather_than_queue_on_one(tmp_path: Path, seed: int, workers: int) -> None:
    collection, groups = suite(own=1, own_modules=4, modules=12)
    nodes = run(collection, groups, tmp_path, seed, workers)
    # While modules are left to fill in, no worker ever had a second own stack queued behind its first ...
    assert all(worker.most_own_stacks_queued == 1 for worker in nodes.values() if own_stack_modules(worker.ran, groups))
    # ... nor took a module while it held none and one was queued (the shared stack's worker included) ...
    assert all(not worker.passed_over_own_stacks for worker in nodes.values())
    # ... and every worker but the shared stack's starts with one.
    starts = [worker.ran[0] for worker in nodes.values()]
    assert sum(is_own_stack(groups.get(test, "")) for test in starts) == workers - 1


def test_with_nothing_else_left_a_worker_takes_the_next_own_stack_rather_than_wait(tmp_path: Path) -> None:
    collection, groups = suite(shared=0, collect=0, own=1, own_modules=3, modules=0)
    nodes = run(collection, groups, tmp_path)
    assert sorted(len(own_stack_modules(w.ran, groups)) for w in nodes.values()) == [1, 2]


@pytest.mark.parametrize(
    "shape",
    [
        {"shared": 1, "collect": 1, "own": 0, "modules": 0},
        {"shared": 1, "collect": 0, "own": 1, "modules": 3},
        {"shared": 0, "collect": 1, "own": 0, "modules": 2},  # -k selecting one collecting test
        {"shared": 0, "collect": 0, "own": 1, "modules": 0},
        {"shared": 0, "collect": 0, "own": 0, "modules": 1},
        {"shared": 2, "collect": 3, "own": 2, "modules": 0},
        {"shared": 1, "collect": 1, "own": 1, "modules": 1},
        {"shared": 1, "collect": 1, "own": 1, "modules": 0, "own_modules": 3},
        {"shared": 0, "collect": 2, "own": 2, "modules": 1, "own_modules": 2},
    ],
)
@pytest.mark.parametrize("workers", [2, 3])
def test_no_selection_leaves_a_worker_waiting_forever(tmp_path: Path, shape: dict[str, int], workers: int) -> None:
    collection, groups = suite(**shape)
    for seed in range(3):
        run(collection, groups, tmp_path, seed, workers)


def test_without_the_workers_groups_every_module_is_a_unit(tmp_path: Path) -> None:
    collection, _ = suite()
    ran = run(collection, {}, tmp_path)
    assert sum(len(worker.ran) for worker in ran.values()) == len(collection)
