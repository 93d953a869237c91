"""A Kubernetes API for tests: kmock's emulator made strict enough to trust, plus an optional Job runner.

:class:`GridKubeEmulator` (a ``kmock.KubernetesEmulator``) adds what a real API server does and kmock
does not:

- **validation** on Job creation, answered with a real-looking ``422 Invalid`` Status (missing container
  image or name, invalid object name or label value, wrong restart policy);
- **server defaults**: uid, creationTimestamp, resourceVersion (bumped on each change), ``spec.suspend``;
- **RFC 7386 merge patches** (``null`` deletes a key) and a ``400`` for a JSON-patch content type with
  an object body (what the python client sends unless told ``merge-patch``);
- **label selectors** on list: equality terms (``k=v``, ``k==v``, ``k!=v``), so the server-side path of
  our selection is tested too (kmock alone ignores ``labelSelector``);
- **server-side timing** (:class:`ServerTiming`): how long the emulator spent on each kind of request, its
  busy time and its process CPU time, at ``GET /_emulator/timing`` (``DELETE`` resets it), so a benchmark
  can tell the emulator's share of a pass from the client's.

:class:`JobRunner` plays kubelet and Job controller: when a Job is unsuspended it runs the first
container's ``command + args`` as a local subprocess with the container's env (the image is ignored),
writes the Job's status (startTime, active, Complete/Failed conditions, succeeded/failed,
completionTime), and on suspend sends SIGTERM, then SIGKILL after ``terminationGracePeriodSeconds``.

In-process use: :class:`EmulatorThread` (own event loop in a thread). As a process, for a real Airflow:
``python -m tests.support.kube_emulator --port 0 --ready-file F [--run-jobs --workdir D]`` writes its URL
to ``F`` once it listens and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import attrs
from aiohttp import web
from kmock import KubernetesEmulator, Server, resource
from kmock._internal import enums
from kmock._internal.k8s import KubernetesError, KubernetesObjectNotFoundError, KubernetesScaffold

T = TypeVar("T")
JOBS = resource("batch/v1/jobs")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
#: The emulator's own endpoint (never recorded, never a Kubernetes path).
TIMING_PATH = "/_emulator/timing"
#: The request being matched to a reaction (each aiohttp request runs in its own task, so its own context).
_MATCHING: contextvars.ContextVar[Any] = contextvars.ContextVar("kube_emulator_matching", default=None)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def selector_matches(labels: Mapping[str, str], selector: str) -> bool:
    """Equality-based label selector (``k=v``, ``k==v``, ``k!=v``); other terms are refused."""
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        else:
            raise KubernetesError(status=400, reason="BadRequest", message=f"unsupported selector term {term!r}")
    return True


def invalid_job(job: Mapping[str, Any]) -> list[dict[str, str]]:
    """Causes a real API server would give for this Job (empty: valid)."""
    causes: list[dict[str, str]] = []

    def cause(path: str, message: str, reason: str = "FieldValueInvalid") -> None:
        causes.append({"reason": reason, "message": message, "field": path})

    meta = job.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
    elif len(name) > 63 or not _DNS_LABEL.match(name):
        cause("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label of at most 63 characters')
    for key, value in (meta.get("labels") or {}).items():
        if len(str(value)) > 63 or not _LABEL_VALUE.match(str(value)):
            cause(f"metadata.labels[{key}]", f'Invalid value: "{value}": a valid label must be 63 characters or less')
    pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        cause("spec.template.spec.containers", "Required value", "FieldValueRequired")
    for i, container in enumerate(containers):
        if not container.get("name"):
            cause(f"spec.template.spec.containers[{i}].name", "Required value", "FieldValueRequired")
        if not container.get("image"):
            cause(f"spec.template.spec.containers[{i}].image", "Required value", "FieldValueRequired")
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        cause(
            "spec.template.spec.restartPolicy",
            f'Unsupported value: "{pod.get("restartPolicy")}"',
            "FieldValueNotSupported",
        )
    return causes


def request_kind(method: str, path: str) -> str:
    """What a request does, from its method and path: ``list``, ``get``, ``create``, ``patch``, ``delete``, ``other``.

    Only resource paths count (``/api/v1/...`` and ``/apis/<group>/<version>/...``); the collection is the
    last plural segment (``.../jobs``), an object is a name after it (``.../jobs/<name>[/status]``).
    """
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return "other"
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    named = len(rest) >= 2
    method = method.upper()
    if method == "GET":
        return "get" if named else "list" if rest else "other"
    return {"POST": "create", "PATCH": "patch", "PUT": "patch", "DELETE": "delete"}.get(method, "other")


@dataclass
class ServerTiming:
    """Where the emulator's time went since the last reset, on its own clock (one event loop, so requests
    in hand at once overlap: ``busy_seconds`` counts that time once, the per-kind sums count it per request).

    :param kinds: per request kind, ``count`` and ``seconds`` (from the request read to the response built).
    :param busy_seconds: wall time with at least one request in hand.
    :param first_at: wall clock (``time.time()``) of the first request per kind, for comparing with a client.
    :param last_at: wall clock when the last request per kind was answered.
    """

    kinds: dict[str, dict[str, float]] = field(default_factory=dict)
    busy_seconds: float = 0.0
    first_at: dict[str, float] = field(default_factory=dict)
    last_at: dict[str, float] = field(default_factory=dict)
    _in_hand: int = 0
    _busy_since: float = 0.0
    _cpu_at_reset: float = field(default_factory=time.process_time)

    def reset(self) -> None:
        """Start counting afresh (requests in hand now count from now)."""
        self.kinds, self.first_at, self.last_at = {}, {}, {}
        self.busy_seconds = 0.0
        self._busy_since = time.perf_counter()
        self._cpu_at_reset = time.process_time()

    def began(self, kind: str) -> float:
        began = time.perf_counter()
        if self._in_hand == 0:
            self._busy_since = began
        self._in_hand += 1
        self.first_at.setdefault(kind, time.time())
        return began

    def ended(self, kind: str, began: float) -> None:
        ended = time.perf_counter()
        self._in_hand -= 1
        if self._in_hand == 0:
            self.busy_seconds += ended - self._busy_since
        entry = self.kinds.setdefault(kind, {"count": 0, "seconds": 0.0})
        entry["count"] += 1
        entry["seconds"] += ended - began
        self.last_at[kind] = time.time()

    def report(self) -> dict[str, Any]:
        return {
            "kinds": {k: {"count": int(v["count"]), "seconds": round(v["seconds"], 6)} for k, v in self.kinds.items()},
            "busy_seconds": round(self.busy_seconds, 6),
            "cpu_seconds": round(time.process_time() - self._cpu_at_reset, 6),
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


@attrs.define(kw_only=True)
class GridKubeEmulator(KubernetesEmulator):
    """kmock's emulator with validation, server defaults, merge patches and equality label selectors."""

    #: Actions (``create``, ``update``, ``delete``, ``list``, ``fetch``) answered ``403 Forbidden``, state untouched.
    forbid: set[str] = attrs.field(factory=set)
    #: ``False``: ignore ``labelSelector`` like plain kmock (to test the client-side filter alone).
    honour_selectors: bool = True
    _versions: int = attrs.field(default=0, init=False)
    timing: ServerTiming = attrs.field(factory=ServerTiming, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Declared, so listing Jobs before any exists answers an empty list rather than 404.
        self.resources[JOBS] = {"kind": "Job", "singular": "job", "namespaced": True, "subresources": ["status"]}

    async def __call__(self, raw_request: web.BaseRequest) -> web.StreamResponse:
        if raw_request.path == TIMING_PATH:
            if raw_request.method == "DELETE":
                self.timing.reset()
            return web.json_response(self.timing.report())
        kind = request_kind(raw_request.method, raw_request.path)
        began = self.timing.began(kind)
        try:
            return await super().__call__(raw_request)
        finally:
            self.timing.ended(kind, began)

    def next_version(self) -> str:
        self._versions += 1
        return str(self._versions)

    def __iter__(self) -> Iterator[Any]:
        # kmock decides whether a reaction serves a request by walking *every request served so far* through
        # the reaction's filters and looking for this one: each request costs more than the last (a pass of
        # 100 patches went from 1 s to over 40 s as the emulator lived). Only this request's own fields
        # decide for the filters used here (no slices or streams), so while matching the root yields it alone.
        current = _MATCHING.get()
        if current is not None:
            yield current
            return
        yield from super().__iter__()

    async def _handle(self, request: Any) -> Any:
        token = _MATCHING.set(request)
        try:
            return await self._handle_matched(request)
        finally:
            _MATCHING.reset(token)

    async def _handle_matched(self, request: Any) -> Any:
        if request.action is not None and request.action.value.lower() in self.forbid:
            raise KubernetesError(
                status=403, reason="Forbidden", message=f"{request.action.value.lower()} is forbidden here"
            )
        if request.resource == JOBS and request.action == enums.action.CREATE:
            self._prepare_create(request)
        if request.resource is not None and request.action == enums.action.UPDATE and request.name is not None:
            await self._apply_merge_patch(request)
            # Rendering only: the state change is done (kmock's own update is a plain recursive dict merge).
            return await KubernetesScaffold._handle(self, request)
        return await super()._handle(request)

    def _prepare_create(self, request: Any) -> None:
        job = request.data if isinstance(request.data, dict) else {}
        causes = invalid_job(job)
        if causes:
            name = (job.get("metadata") or {}).get("name") or ""
            summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
            raise KubernetesError(
                status=422,
                reason="Invalid",
                message=f'Job.batch "{name}" is invalid: [{summary}]',
                details={"name": name, "group": "batch", "kind": "Job", "causes": causes},
            )
        meta = job.setdefault("metadata", {})
        meta.setdefault("namespace", request.namespace or "default")
        meta.update({"uid": str(uuid.uuid4()), "creationTimestamp": _now(), "generation": 1})
        meta["resourceVersion"] = self.next_version()
        job.setdefault("spec", {}).setdefault("suspend", False)
        job.setdefault("status", {})

    async def _apply_merge_patch(self, request: Any) -> None:
        content_type = str(request.headers.get("Content-Type", ""))
        if "json-patch" in content_type and not isinstance(request.data, list):
            raise KubernetesError(
                status=400,
                reason="BadRequest",
                message="json: cannot unmarshal object into Go value of type jsonpatch.Patch",
            )
        if not isinstance(request.data, dict):
            raise KubernetesError(
                status=415, reason="UnsupportedMediaType", message=f"unsupported patch {content_type}"
            )
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                raise KubernetesObjectNotFoundError()
            obj = self.objects[key]
            merged = merge_patch(obj.raw, request.data)
            merged.setdefault("metadata", {})["resourceVersion"] = self.next_version()
            obj.create(merged)  # a new version in the object's history
            await self._buses[request.resource].put({"type": "MODIFIED", "object": obj.raw})

    async def _serve_list(self, request: Any) -> Any:
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector and self.honour_selectors:
            listed["items"] = [
                item
                for item in listed["items"]
                if selector_matches((item.get("metadata") or {}).get("labels") or {}, selector)
            ]
        return listed

    async def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into a Job (as the Job controller would), with a watch event."""
        key = (JOBS, namespace, name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                return
            obj = self.objects[key]
            merged = merge_patch(obj.raw, {"status": dict(status)})
            merged["metadata"]["resourceVersion"] = self.next_version()
            obj.create(merged)
            await self._buses[JOBS].put({"type": "MODIFIED", "object": obj.raw})

    def jobs(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Live Jobs by (namespace, name); call on the emulator's loop (see :meth:`EmulatorThread.jobs`)."""
        return {(ns, name): obj.raw for (res, ns, name), obj in self.objects.items() if res == JOBS and not obj.deleted}

    def recorded(self) -> list[Any]:
        """Every request served so far (kmock's record)."""
        return list(self._requests)


# -- the Job runner (kubelet + Job controller) -------------------------------------------------------------
@dataclass
class _Run:
    uid: str
    proc: asyncio.subprocess.Process
    waiter: asyncio.Task[int]
    grace: float
    term_at: float | None = None


@dataclass
class JobRunner:
    """Runs unsuspended Jobs as local subprocesses and writes their status back."""

    emulator: GridKubeEmulator
    workdir: Path
    interval: float = 0.2
    runs: dict[tuple[str, str], _Run] = field(default_factory=dict)

    async def run(self) -> None:
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self.interval)
        finally:
            for run in self.runs.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        async with self.emulator._lock:
            jobs = self.emulator.jobs()
        for key, run in list(self.runs.items()):
            job = jobs.get(key)
            if job is None or job["metadata"].get("uid") != run.uid:  # deleted: its pods go too
                self._signal(run, signal.SIGKILL)
                del self.runs[key]
        for key, job in jobs.items():
            conditions = {c.get("type") for c in (job.get("status") or {}).get("conditions") or []}
            if conditions & {"Complete", "Failed"}:
                continue
            suspended = bool((job.get("spec") or {}).get("suspend"))
            run = self.runs.get(key)
            if run is None:
                if not suspended:
                    await self._start(key, job)
                continue
            if run.waiter.done():
                del self.runs[key]
                await self._finished(key, run.waiter.result(), suspended)
            elif suspended and run.term_at is None:
                self._signal(run, signal.SIGTERM)  # what deleting the pod on suspend does
                run.term_at = loop.time()
            elif run.term_at is not None and loop.time() - run.term_at > run.grace:
                self._signal(run, signal.SIGKILL)

    @staticmethod
    def _signal(run: _Run, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, sig)

    async def _start(self, key: tuple[str, str], job: dict[str, Any]) -> None:
        pod = job["spec"]["template"]["spec"]
        container = pod["containers"][0]
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        env = dict(os.environ)
        env.update({e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e})
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{key[0]}_{key[1]}.log").open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"cannot start {argv}: {exc}\n".encode())
            log.close()
            await self._write(
                key, {"active": 0, "failed": 1, "conditions": [_condition("Failed", "StartError", str(exc))]}
            )
            return
        finally:
            log.close()
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        self.runs[key] = _Run(job["metadata"]["uid"], proc, asyncio.ensure_future(proc.wait()), grace)
        # Kubernetes sets startTime when a Job starts and resets it when a suspended Job resumes.
        await self._write(key, {"startTime": _now(), "active": 1, "conditions": []})

    async def _finished(self, key: tuple[str, str], code: int, suspended: bool) -> None:
        if suspended:
            await self._write(
                key, {"active": 0, "conditions": [_condition("Suspended", "JobSuspended", "Job suspended")]}
            )
        elif code == 0:
            await self._write(
                key,
                {
                    "active": 0,
                    "succeeded": 1,
                    "completionTime": _now(),
                    "conditions": [
                        _condition(
                            "SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"
                        ),
                        _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                    ],
                },
            )
        else:
            message = f"Job has reached the specified backoff limit (container exited with {code})"
            await self._write(
                key, {"active": 0, "failed": 1, "conditions": [_condition("Failed", "BackoffLimitExceeded", message)]}
            )

    async def _write(self, key: tuple[str, str], status: Mapping[str, Any]) -> None:
        await self.emulator.write_status(key[0], key[1], status)


def _condition(kind: str, reason: str, message: str) -> dict[str, str]:
    now = _now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


# -- running it --------------------------------------------------------------------------------------------
def kube_config(url: str, *, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig (for a ``kubernetes`` connection's ``kube_config`` extra) pointing at ``url``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [
            {"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": namespace}}
        ],
        "current-context": "emulator",
    }


class EmulatorThread:
    """A :class:`GridKubeEmulator` on a loopback port, served from a thread with its own event loop.

    :param run_jobs: also run unsuspended Jobs (:class:`JobRunner`) in ``workdir``.
    """

    def __init__(self, *, run_jobs: bool = False, workdir: Path | None = None) -> None:
        self.run_jobs = run_jobs
        self.workdir = workdir or Path.cwd()
        self.url = ""
        self.emulator: GridKubeEmulator | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the Kubernetes emulator did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.emulator = GridKubeEmulator()
        async with self.emulator, Server(self.emulator, host="127.0.0.1", port=0) as server:
            self.url = f"http://127.0.0.1:{server.port}"
            runner = asyncio.ensure_future(JobRunner(self.emulator, self.workdir).run()) if self.run_jobs else None
            self._ready.set()
            await self._stop.wait()
            if runner is not None:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner

    def call(self, fn: Callable[[GridKubeEmulator], T]) -> T:
        """Run ``fn(emulator)`` on the emulator's loop (safe against concurrent requests)."""
        assert self.emulator is not None
        emulator = self.emulator

        async def run() -> T:
            return fn(emulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def jobs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.call(lambda e: e.jobs())

    def requests(self) -> list[Any]:
        return self.call(lambda e: e.recorded())

    def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        assert self.emulator is not None
        asyncio.run_coroutine_threadsafe(self.emulator.write_status(namespace, name, status), self._loop).result(30)


async def _serve_forever(port: int, ready_file: Path, run_jobs: bool, workdir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    emulator = GridKubeEmulator()
    async with emulator, Server(emulator, host="127.0.0.1", port=port) as server:
        runner = asyncio.ensure_future(JobRunner(emulator, workdir).run()) if run_jobs else None
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(f"http://127.0.0.1:{server.port}\n")
        tmp.replace(ready_file)  # readers never see a half-written URL
        await stop.wait()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, required=True, help="the URL is written here once listening")
    parser.add_argument("--run-jobs", action="store_true", help="run unsuspended Jobs as local subprocesses")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where Jobs run and log")
    args = parser.parse_args(argv)
    asyncio.run(_serve_forever(args.port, args.ready_file, args.run_jobs, args.workdir))
    return 0


def dump(objects: Mapping[Any, Any]) -> str:
    return json.dumps(objects, indent=1, default=str)


if __name__ == "__main__":
    sys.exit(main())
