"""The emulated Kubernetes API server's own accounting: its timing endpoint and its cost per request.

Benchmarks split a pass into the emulator's share and the client's from this endpoint, so what it counts is
pinned here; and serving a request must not walk the requests served before (kmock's matching did, which
made a long-lived emulator slower with every request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.kube_emulator import TIMING_PATH, EmulatorThread, request_kind

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "ml", "labels": {"team": "ml"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "x"}]}}},
    }


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emulator:
        yield emulator


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/apis/batch/v1/jobs", "list"),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs", "list"),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs/a", "get"),
        ("GET", "/apis/batch/v1/namespaces/ml/jobs/a/status", "get"),
        ("GET", "/api/v1/pods", "list"),
        ("POST", "/apis/batch/v1/namespaces/ml/jobs", "create"),
        ("PATCH", "/apis/batch/v1/namespaces/ml/jobs/a", "patch"),
        ("DELETE", "/apis/batch/v1/namespaces/ml/jobs/a", "delete"),
        ("GET", "/apis/batch/v1", "other"),
        ("GET", "/version", "other"),
    ],
)
def test_request_kinds(method: str, path: str, kind: str) -> None:
    assert request_kind(method, path) == kind


def test_the_timing_endpoint_counts_each_kind_and_resets(emu: EmulatorThread) -> None:
    with httpx.Client(base_url=emu.url, timeout=30) as client:
        for name in ("a", "b", "c"):
            client.post("/apis/batch/v1/namespaces/ml/jobs", json=job(name)).raise_for_status()
        for name in ("a", "b"):
            client.patch(
                f"/apis/batch/v1/namespaces/ml/jobs/{name}", json={"spec": {"suspend": True}}, headers=MERGE_PATCH
            ).raise_for_status()
        client.get("/apis/batch/v1/namespaces/ml/jobs").raise_for_status()

        timing = client.get(TIMING_PATH).json()
        assert {k: v["count"] for k, v in timing["kinds"].items()} == {"create": 3, "patch": 2, "list": 1}
        assert all(v["seconds"] > 0 for v in timing["kinds"].values())
        # Requests one after another: the busy time is their sum (nothing overlapped).
        assert timing["busy_seconds"] == pytest.approx(sum(v["seconds"] for v in timing["kinds"].values()), abs=1e-3)
        assert timing["cpu_seconds"] >= 0
        assert timing["first_at"]["patch"] <= timing["last_at"]["patch"] <= timing["first_at"]["list"]

        client.delete(TIMING_PATH).raise_for_status()
        reset = client.get(TIMING_PATH).json()
        assert reset["kinds"] == {} and reset["busy_seconds"] == 0

    # The endpoint is the emulator's own: never recorded as a Kubernetes request.
    assert len(emu.requests()) == 6


class _NoWalk(list):  # type: ignore[type-arg]
    def __iter__(self) -> Iterator[Any]:
        raise AssertionError("the served requests were walked to serve one more")


def test_serving_a_request_does_not_walk_the_requests_served_before(emu: EmulatorThread) -> None:
    with httpx.Client(base_url=emu.url, timeout=30) as client:
        for i in range(20):
            client.post("/apis/batch/v1/namespaces/ml/jobs", json=job(f"j{i}")).raise_for_status()

        def guard(e: Any) -> None:
            e._requests = _NoWalk(e._requests)

        emu.call(guard)
        patched = client.patch(
            "/apis/batch/v1/namespaces/ml/jobs/j3", json={"spec": {"suspend": True}}, headers=MERGE_PATCH
        )
        listed = client.get("/apis/batch/v1/namespaces/ml/jobs")
        missing = client.get("/apis/batch/v1/namespaces/ml/jobs/nope")
        emu.call(lambda e: setattr(e, "_requests", list.copy(e._requests)))

    assert patched.status_code == 200 and patched.json()["spec"]["suspend"] is True
    assert listed.status_code == 200 and len(listed.json()["items"]) == 20
    assert missing.status_code == 404
    # The history is still whole for the tests that read it.
    assert [str(r.method).rsplit(".", 1)[-1].upper() for r in emu.requests()][-3:] == ["PATCH", "GET", "GET"]
    assert len(emu.requests()) == 23
