"""A real openleadr VTN on loopback, in a subprocess driven by JSON lines on its stdin.

``python -m tests.support.openadr_vtn --vtn-id VTN [--cert C --key K --ca CA --ven-fingerprint FP]`` prints
``{"port": N}`` once listening (port 0 = a free port), then answers one JSON line per command:

- ``{"cmd": "add_event", "ven_id", "event_id", "signal": "SIMPLE"|"PRICE"|"LOAD_CONTROL", "values": [...],
  "start_in_s", "step_s", "response_required", "test_event", "priority"}`` -> ``{"queued_at": <unix time>}``;
- ``{"cmd": "modify_event", "ven_id", "event_id", "values": [...]}``: new payloads, modification number + 1;
- ``{"cmd": "cancel_event", "ven_id", "event_id"}``: openleadr's ``cancel_event`` (status cancelled, mod + 1);
- ``{"cmd": "remove_event", "ven_id", "event_id"}``: drop it from the VTN's queue (benchmarks keep it short);
- ``{"cmd": "responses"}`` -> every ``oadrCreatedEvent`` answer received: ``[[ven_id, event_id, mod, opt]]``;
- ``{"cmd": "registrations"}`` -> ``{ven_name: [ven_id, registration_id]}``;
- ``{"cmd": "tamper", "on": true}``: alter a value in every signed answer *after* signing;
- ``{"cmd": "quit"}``.

With ``--cert/--key`` the VTN signs every message; with ``--ca`` too it serves HTTPS and requires client
certificates from that CA, and a VEN registers only with the certificate ``--ven-fingerprint`` names.
The controlling test starts and stops it by PID (:class:`VtnProcess`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PATH_PREFIX = "/OpenADR2/Simple/2.0b"


class VtnProcess:
    """The VTN subprocess: ``start()``, ``command(...)``, ``stop()`` (by its PID), or a context manager."""

    def __init__(self, vtn_id: str = "GRID_VTN", *, tls: dict[str, str] | None = None, poll_s: float = 1.0) -> None:
        self.vtn_id = vtn_id
        self.tls = tls or {}
        self.poll_s = poll_s
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._lock = threading.Lock()  # one command at a time on the pipe (benchmarks call from two threads)

    @property
    def url(self) -> str:
        scheme = "https" if "ca" in self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{PATH_PREFIX}"

    def start(self) -> VtnProcess:
        args = [
            sys.executable,
            "-m",
            "tests.support.openadr_vtn",
            "--vtn-id",
            self.vtn_id,
            "--poll-s",
            str(self.poll_s),
        ]
        for key, value in self.tls.items():
            args += [f"--{key.replace('_', '-')}", value]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.stop()
            raise RuntimeError("the openleadr VTN exited before it listened")
        self.port = int(json.loads(line)["port"])
        return self

    def command(self, cmd: str, **fields: Any) -> Any:
        assert self.process is not None and self.process.stdin and self.process.stdout
        with self._lock:
            self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.process.stdin.flush()
            answer = json.loads(self.process.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"VTN command {cmd}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> VtnProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- inside the subprocess -----------------------------------------------------------------------------------
def _intervals(values: list[float], start: datetime, step: timedelta) -> list[Any]:
    from openleadr import objects

    return [
        objects.Interval(dtstart=start + i * step, duration=step, signal_payload=float(v), uid=i)
        for i, v in enumerate(values)
    ]


def _signal(kind: str, values: list[float], start: datetime, step: timedelta) -> Any:
    from openleadr import objects

    intervals = _intervals(values, start, step)
    if kind == "PRICE":
        signal = objects.EventSignal(
            intervals=intervals, signal_name="ELECTRICITY_PRICE", signal_type="price", signal_id=f"sig-{kind}"
        )
        # openleadr renders <oadr:currency> from a Measurement named "currency" (as in the captured fixtures).
        signal.measurement = objects.Measurement(
            name="currency", description="currencyPerKWh", unit="EUR", scale="none"
        )
        return signal
    if kind == "LOAD_CONTROL":
        return objects.EventSignal(
            intervals=intervals, signal_name="LOAD_CONTROL", signal_type="x-loadControlCapacity", signal_id="sig-lc"
        )
    return objects.EventSignal(intervals=intervals, signal_name="SIMPLE", signal_type="level", signal_id="sig-simple")


async def _serve(args: argparse.Namespace) -> None:
    from aiohttp import web
    from openleadr import OpenADRServer, hooks, objects, utils

    responses: list[list[Any]] = []
    registrations: dict[str, list[str]] = {}
    state = {"tamper": False}

    async def on_handle(message_type: str, payload: dict[str, Any]) -> None:
        if message_type == "oadrCreatedEvent":
            for answer in payload.get("event_responses", []):
                responses.append(
                    [payload["ven_id"], answer["event_id"], answer["modification_number"], answer["opt_type"]]
                )

    hooks.register("before_handle", on_handle)

    def on_create_party_registration(payload: dict[str, Any]) -> Any:
        if args.ven_fingerprint and payload.get("fingerprint") != args.ven_fingerprint:
            return False
        name = payload["ven_name"]
        ids = registrations.setdefault(name, [f"ven-{name}", f"reg-{name}"])
        return ids[0], ids[1]

    def ven_lookup(ven_id: str) -> dict[str, Any]:
        for name, (vid, rid) in registrations.items():
            if vid == ven_id:
                return {"ven_id": vid, "ven_name": name, "fingerprint": args.ven_fingerprint, "registration_id": rid}
        return {}

    server = OpenADRServer(
        vtn_id=args.vtn_id,
        cert=args.cert,
        key=args.key,
        http_cert=args.cert if args.ca else None,
        http_key=args.key if args.ca else None,
        http_ca_file=args.ca,
        ven_lookup=ven_lookup,
        show_fingerprint=False,
        requested_poll_freq=timedelta(seconds=args.poll_s),
        http_path_prefix=PATH_PREFIX,
    )
    server.add_handler("on_create_party_registration", on_create_party_registration)

    @web.middleware
    async def tamper(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if state["tamper"] and isinstance(response, web.Response) and response.text and "Signature" in response.text:
            # Change a value inside the signed object, after signing: the XML stays schema-valid.
            response.text = re.sub(
                r"<ei:vtnID>[^<]*</ei:vtnID>", f"<ei:vtnID>{args.vtn_id}-X</ei:vtnID>", response.text, count=1
            )
        return response

    server.app.middlewares.append(tamper)
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, host="127.0.0.1", port=0, ssl_context=server.ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"port": port}), flush=True)

    def find(ven_id: str, event_id: str) -> Any:
        event = utils.find_by(server.events.get(ven_id, []), "event_descriptor.event_id", event_id)
        if event is None:
            raise KeyError(f"no event {event_id} for {ven_id}")
        return event

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        request = json.loads(line)
        cmd = request.pop("cmd")
        try:
            if cmd == "quit":
                print(json.dumps({"result": None}), flush=True)
                break
            if cmd == "add_event":
                start = datetime.now(timezone.utc) + timedelta(seconds=request.get("start_in_s", 600))
                step = timedelta(seconds=request.get("step_s", 900))
                event = objects.Event(
                    event_descriptor=objects.EventDescriptor(
                        event_id=request["event_id"],
                        modification_number=0,
                        market_context=request.get("program", "http://vtn.local/programs/dr"),
                        event_status="far",
                        created_date_time=datetime.now(timezone.utc),
                        test_event=request.get("test_event", False),
                        priority=request.get("priority", 1),
                    ),
                    event_signals=[_signal(request.get("signal", "SIMPLE"), request["values"], start, step)],
                    targets=request.get("targets") or [{"ven_id": request["ven_id"]}],
                    response_required=request.get("response_required", "always"),
                )
                server.add_raw_event(ven_id=request["ven_id"], event=event, callback=None)
                result: Any = {"queued_at": time.time()}
            elif cmd == "modify_event":
                event = find(request["ven_id"], request["event_id"])
                for interval, value in zip(event.event_signals[0].intervals, request["values"], strict=True):
                    interval.signal_payload = float(value)
                utils.increment_event_modification_number(event)
                server.events_updated[request["ven_id"]] = True
                result = {"modification_number": event.event_descriptor.modification_number}
            elif cmd == "cancel_event":
                server.cancel_event(request["ven_id"], request["event_id"])
                result = None
            elif cmd == "remove_event":
                utils.pop_by(server.events.get(request["ven_id"], []), "event_descriptor.event_id", request["event_id"])
                result = None
            elif cmd == "responses":
                result = responses
            elif cmd == "registrations":
                result = registrations
            elif cmd == "tamper":
                state["tamper"] = bool(request["on"])
                result = None
            else:
                raise ValueError(f"unknown command {cmd}")
            print(json.dumps({"result": result}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vtn-id", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--ca")
    parser.add_argument("--ven-fingerprint")
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
