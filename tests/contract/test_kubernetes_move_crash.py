"""A worker dying in the middle of moving a suspended Job between clusters never makes it run twice.

Two emulated clusters as in ``test_kubernetes_dispatch.py``: the Job is created in NORTH (clean) and the
released plan moves it to SOUTH. The worker "dies" right after the k-th step that changes something (a
create, delete or patch at an API server, or a write to the task state store): an exception no ``except``
clause catches, so no clean-up code runs, as with SIGKILL. A retry (a new operator, the next try number,
the same task state store) must then end with exactly one Job in all clusters, released, the one the
task waits for, and no other copy ever released. A last test kills a real worker process with SIGKILL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gridaware.dispatch import ANNOTATION_GENERATION
from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
from airflow_provider_gridaware.operators.kubernetes import STATE_KEY
from airflow_provider_gridaware.triggers.grid_window import GridWindowTrigger
from airflow_provider_gridaware.triggers.kubernetes import KubernetesJobCompletionTrigger
from tests.contract import test_kubernetes_dispatch as dispatch_tests
from tests.contract.test_kubernetes_dispatch import (
    NORTH,
    SOUTH,
    FakeStore,
    all_jobs,
    make_context,
    make_operator,
    window_event,
)
from tests.support.kube_emulator import EmulatorThread

REPO = Path(__file__).resolve().parents[2]
clusters = dispatch_tests.clusters  # the fixture: two emulated clusters and the signal connection
# A clean run with a task state store: create in NORTH, record; at the window create in SOUTH, record,
# delete in NORTH, release in SOUTH, record. Without a store only the four API calls remain.
STEPS_WITH_STORE = 7
STEPS_WITHOUT_STORE = 4


class WorkerDied(BaseException):
    """The worker vanished: a BaseException, so no ``except Exception`` clean-up runs (as with SIGKILL)."""


class Crash:
    """Counts the steps that change something and kills the worker after the ``after``-th one."""

    def __init__(self) -> None:
        self.after: int | None = None
        self.steps: list[str] = []

    def arm(self, after: int | None) -> None:
        self.after, self.steps = after, []

    def step(self, what: str) -> None:
        self.steps.append(what)
        if self.after is not None and len(self.steps) == self.after:
            raise WorkerDied(f"worker died after step {len(self.steps)}: {what}")


class CrashingStore(FakeStore):
    """The task state store; a write is a step (the worker may die just after it)."""

    def __init__(self, crash: Crash) -> None:
        super().__init__()
        self.crash = crash

    def set(self, key: str, value: Any, **kwargs: Any) -> None:
        super().set(key, value, **kwargs)
        self.crash.step(f"recorded {value.get('name')} (generation {value.get('generation')})")


@pytest.fixture
def crash(monkeypatch: pytest.MonkeyPatch) -> Crash:
    """Every create, delete and patch through the hook is a step, counted after the API server answered."""
    crash = Crash()
    for name in ("create_job_from_dict", "delete_job", "patch_job"):
        original = getattr(GridKubernetesHook, name)

        def wrapped(self: GridKubernetesHook, *args: Any, _call: Any = original, _name: str = name, **kw: Any) -> Any:
            result = _call(self, *args, **kw)
            crash.step(f"{_name} in {self.conn_id}")
            return result

        monkeypatch.setattr(GridKubernetesHook, name, wrapped)
    return crash


def attempt(store: FakeStore | None, *, try_number: int, zone: str) -> TaskDeferred:
    """One try of the task as Airflow runs it: execute, and at the window a fresh operator resumes it."""
    try:
        make_operator().execute(make_context(store, try_number=try_number))
    except TaskDeferred as deferred:
        if isinstance(deferred.trigger, KubernetesJobCompletionTrigger):
            return deferred
        assert isinstance(deferred.trigger, GridWindowTrigger)
    else:
        raise AssertionError("the task neither deferred nor failed")
    with pytest.raises(TaskDeferred) as released:
        make_operator().execute_in_window(make_context(store, try_number=try_number), window_event(zone))
    return released.value


def release_patches(clusters: dict[str, EmulatorThread]) -> list[tuple[str, str]]:
    """(zone, Job name) of every unsuspending PATCH any cluster received."""
    return [
        (zone, r.url.path.rsplit("/", 1)[-1])
        for zone, emu in clusters.items()
        for r in emu.requests()
        if str(r.method).endswith("PATCH") and r.data == {"spec": {"suspend": False}}
    ]


def assert_exactly_one_released_job(
    clusters: dict[str, EmulatorThread], store: FakeStore | None, deferred: TaskDeferred
) -> None:
    jobs = [(zone, job) for zone, found in all_jobs(clusters).items() for job in found.values()]
    assert len(jobs) == 1, [(zone, job["metadata"]["name"]) for zone, job in jobs]
    ((zone, job),) = jobs
    name = job["metadata"]["name"]
    assert job["spec"]["suspend"] is False
    assert isinstance(deferred.trigger, KubernetesJobCompletionTrigger)
    assert (deferred.trigger.request.name, deferred.trigger.request.zone) == (name, zone)
    assert set(release_patches(clusters)) == {(zone, name)}  # no other copy was released, even for a moment
    if store is not None:
        state = store.data[STATE_KEY]
        assert (state["name"], state["zone"], state["released"]) == (name, zone, True)
        assert str(state["generation"]) == job["metadata"]["annotations"][ANNOTATION_GENERATION]


def test_the_clean_run_has_the_steps_the_crash_tests_cut_between(clusters, crash):
    store = CrashingStore(crash)
    deferred = attempt(store, try_number=1, zone=SOUTH)
    assert crash.steps == [
        "create_job_from_dict in kube_north",
        crash.steps[1],
        "create_job_from_dict in kube_south",
        crash.steps[3],
        "delete_job in kube_north",
        "patch_job in kube_south",
        crash.steps[6],
    ]
    assert len(crash.steps) == STEPS_WITH_STORE
    assert_exactly_one_released_job(clusters, store, deferred)
    (job,) = clusters[SOUTH].jobs().values()
    assert job["metadata"]["annotations"][ANNOTATION_GENERATION] == "2"


CASES = [(True, k) for k in range(1, STEPS_WITH_STORE + 1)] + [(False, k) for k in range(1, STEPS_WITHOUT_STORE + 1)]


@pytest.mark.parametrize("retry_zone", [SOUTH, NORTH], ids=["retry-plan-south", "retry-plan-north"])
@pytest.mark.parametrize(
    ("with_store", "crash_after"), CASES, ids=[f"{'store' if s else 'labels'}-step{k}" for s, k in CASES]
)
def test_a_worker_dying_after_any_step_leaves_one_released_job_after_the_retry(
    clusters, crash, with_store, crash_after, retry_zone
):
    store = CrashingStore(crash) if with_store else None
    crash.arm(crash_after)
    with pytest.raises(WorkerDied):
        attempt(store, try_number=1, zone=SOUTH)
    crash.arm(None)
    # The retry's plan may choose either zone: the forecast moved on while the task waited for its retry.
    deferred = attempt(store, try_number=2, zone=retry_zone)
    assert_exactly_one_released_job(clusters, store, deferred)


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "labels"])
def test_dying_again_and_again_with_the_plan_flipping_still_ends_with_one_job(clusters, crash, with_store):
    store = CrashingStore(crash) if with_store else None
    for try_number in range(1, 9):
        crash.arm(1)  # every try dies after its first step, while the plan flips between the clusters
        try:
            attempt(store, try_number=try_number, zone=SOUTH if try_number % 2 else NORTH)
        except WorkerDied:
            assert len(set(release_patches(clusters))) <= 1  # never a second copy released
            assert sum(len(jobs) for jobs in all_jobs(clusters).values()) <= 2  # at most one stray at a time
        else:
            break
    assert try_number > 2, crash.steps  # at least two tries died
    crash.arm(None)
    deferred = attempt(store, try_number=try_number + 1, zone=NORTH)
    assert_exactly_one_released_job(clusters, store, deferred)


# A real worker process, SIGKILLed right after the API server created the copy in the new cluster (the
# original hole: create done, old copy not deleted, nothing recorded).
_KILLED_WORKER = """
import json, os, signal, sys
from pathlib import Path
from airflow.sdk.exceptions import TaskDeferred
from airflow_provider_gridaware.hooks.kubernetes import GridKubernetesHook
from tests.contract.test_kubernetes_dispatch import SOUTH, FakeStore, make_context, make_operator, window_event

path, die_after = Path(sys.argv[1]), sys.argv[2]

class FileStore(FakeStore):
    def set(self, key, value, **kw):
        super().set(key, value)
        path.write_text(json.dumps(self.data))

store = FileStore()
try:
    make_operator().execute(make_context(store))
except TaskDeferred:
    pass
original = getattr(GridKubernetesHook, die_after)

def then_die(self, *args, **kwargs):
    original(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

setattr(GridKubernetesHook, die_after, then_die)
make_operator().execute_in_window(make_context(store), window_event(SOUTH))
"""


@pytest.mark.parametrize("die_after", ["create_job_from_dict", "delete_job"])
def test_a_sigkilled_worker_mid_move_leaves_one_released_job_after_the_retry(clusters, tmp_path, die_after):
    state_file = tmp_path / "task_state.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WORKER, str(state_file), die_after],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr[-3000:]
    left = {zone: [j["spec"]["suspend"] for j in jobs.values()] for zone, jobs in all_jobs(clusters).items()}
    if die_after == "create_job_from_dict":
        assert left == {NORTH: [True], SOUTH: [True]}  # the copy exists, unrecorded: the hole this closes
    store = FakeStore()
    store.data = json.loads(state_file.read_text())
    deferred = attempt(store, try_number=2, zone=SOUTH)
    assert_exactly_one_released_job(clusters, store, deferred)
