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
    _GROUPS_FILE,
    OWN_STACKS,
    SHARED_STACK,
    SHARED_STACK_COLLECT,
    AirflowLayersScheduling,
)


class Worker:
    def __init__(self, name: str, collection: list[str]) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.collection = collection
        self.queue: list[int] = []
        self.ran: list[str] = []
        self.shutdown_sent = False

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_sent

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutdown_sent, "work sent after shutdown"
        self.queue.extend(indices)

    def shutdown(self) -> None:
        self.shutdown_sent = True

    def can_run(self) -> bool:
        return len(self.queue) > 1 or (len(self.queue) == 1 and self.shutdown_sent)


def run(collection: list[str], groups: dict[str, str], tmp_path: Path, seed: int = 0) -> dict[str, list[str]]:
    """Every test's worker, in the order each ran; fails on a deadlock."""
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups))
    stash = pytest.Stash()
    stash[_GROUPS_FILE] = str(path)
    config: Any = SimpleNamespace(
        option=SimpleNamespace(loadscopereorder=True), stash=stash, getvalue=lambda name: ["2*popen"]
    )
    scheduler = AirflowLayersScheduling(config)
    workers = [Worker("gw0", collection), Worker("gw1", collection)]
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, collection)
    scheduler.schedule()
    rng = random.Random(seed)  # which runnable worker finishes its test first
    while True:
        runnable = [w for w in workers if w.can_run()]
        if not runnable:
            break
        worker = rng.choice(runnable)
        index = worker.queue.pop(0)
        worker.ran.append(collection[index])
        scheduler.mark_test_complete(worker, index)
    stuck = {w.gateway.id: [collection[i] for i in w.queue] for w in workers if w.queue}
    assert not stuck, f"deadlock: tests pending on a worker that never runs them: {stuck}"
    assert not scheduler.workqueue, f"never handed out: {list(scheduler.workqueue)}"
    assert sorted(t for w in workers for t in w.ran) == sorted(collection)  # each exactly once
    return {w.gateway.id: w.ran for w in workers}


def suite(shared: int = 4, collect: int = 2, own: int = 3, modules: int = 6) -> tuple[list[str], dict[str, str]]:
    """A collection in the order the conftests sort it, and its groups as the workers write them."""
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
    for i in range(own):
        collection.append(f"tests/integration/test_own.py::test_{i}")
        groups[collection[-1]] = OWN_STACKS
    return collection, groups


@pytest.mark.parametrize("seed", range(5))
def test_the_collecting_tests_run_last_on_the_shared_stacks_worker(tmp_path: Path, seed: int) -> None:
    collection, groups = suite()
    ran = run(collection, groups, tmp_path, seed)
    [shared_worker] = [name for name, tests in ran.items() if "tests/integration/test_shared.py::test_0" in tests]
    [own_worker] = [name for name in ran if name != shared_worker]
    assert all(t in ran[shared_worker] for t, g in groups.items() if g in (SHARED_STACK, SHARED_STACK_COLLECT))
    assert ran[own_worker][:3] == [t for t, g in groups.items() if g == OWN_STACKS]  # first, in order
    collecting = [i for i, t in enumerate(ran[shared_worker]) if groups.get(t) == SHARED_STACK_COLLECT]
    assert collecting == list(range(len(ran[shared_worker]) - 2, len(ran[shared_worker])))  # last, in order
    assert any(t.startswith("tests/unit/") for t in ran[shared_worker])  # it ran modules while waiting


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
    ],
)
def test_no_selection_leaves_a_worker_waiting_forever(tmp_path: Path, shape: dict[str, int]) -> None:
    collection, groups = suite(**shape)
    for seed in range(3):
        run(collection, groups, tmp_path, seed)


def test_without_the_workers_groups_every_module_is_a_unit(tmp_path: Path) -> None:
    collection, _ = suite()
    ran = run(collection, {}, tmp_path)
    assert sum(len(tests) for tests in ran.values()) == len(collection)
