"""The sandbox HTTP server: routes, limit accounting, fault injection and the /_sandbox admin API.

Speaks HTTP/1.1 with keep-alive, like the real API behind a load balancer, with Nagle disabled (without
it every loopback request stalls about 40 ms).
"""

from __future__ import annotations

import io
import json
import logging
import socket
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pipeline.sandbox import audience_import, data_deletion, nurture_unsubscribe, partnerships
from pipeline.sandbox.arrival import StampedSocketReader
from pipeline.sandbox.faults import Fault, FaultPlan
from pipeline.sandbox.routes import Call, Reply, Route
from pipeline.sandbox.state import Credentials, FamilyLimits, SandboxState
from pipeline.sandbox.submitted import attempt_key, echo_refused_input

log = logging.getLogger(__name__)

HANDLER_MODULES = [audience_import, data_deletion, nurture_unsubscribe, partnerships]
ROUTES: list[Route] = [r for module in HANDLER_MODULES for r in module.ROUTES]
DEFAULT_LIMITS: dict[str, FamilyLimits] = {k: v for module in HANDLER_MODULES for k, v in module.FAMILY_LIMITS.items()}
EXTENSIONS = {k: v for module in HANDLER_MODULES for k, v in module.EXTENSIONS.items()}


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, faults: FaultPlan):
        super().__init__(address, _Handler)
        self.state = state
        self.faults = faults


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: SandboxHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self._reader = StampedSocketReader(self.connection)  # arrivals as the kernel saw them (arrival.py)
        self.rfile = io.BufferedReader(self._reader, self.rbufsize if self.rbufsize > 0 else io.DEFAULT_BUFFER_SIZE)

    def handle_one_request(self) -> None:
        self._reader.expect_request()
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        arrived = self._reader.arrival()  # its first bytes, not its body: a 6 MB body takes a while longer
        parts = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if parts.path.startswith("/_sandbox/"):
            self._send(self._admin(method, parts.path, body))
            return
        for candidate in ROUTES:
            match = candidate.pattern.match(parts.path)
            if candidate.method == method and match:
                call = Call(method, parts.path, match.groupdict(), dict(parse_qsl(parts.query)),
                            {k.lower(): v for k, v in self.headers.items()}, body, self.server.state)
                self._serve(candidate, call, arrived)
                return
        self._send(Reply(404, {"error": f"no route for {method} {parts.path}"}))

    def _serve(self, candidate: Route, call: Call, arrived: float) -> None:
        state, family = self.server.state, candidate.family
        principal = candidate.principal(call) if candidate.principal else None
        violation = state.enter(family, arrived, principal)
        left = False
        shape = candidate.shape or (lambda reply: reply)

        def leave() -> None:
            # Exactly once per request, before the client can see an answer (or a reset) and start the next.
            nonlocal left
            if not left:
                left = True
                state.leave(family, principal)

        # Which batch or subject this attempt carried: tests join attempts to manifest lines by it.
        attempt = {"family": family, "method": call.method, "arrived": arrived, **attempt_key(call)}
        try:
            if violation:
                state.record_attempt({**attempt, "status": 429, "fault": "limit"})
                self._send(shape(Reply(429, {"error": "Too Many Requests", "detail": violation}, {"Retry-After": "1"})),
                           before_send=leave)
                return
            fault = self.server.faults.next_fault(family, call.method)
            latency = self.server.faults.latency(family)
            if latency:
                time.sleep(latency)
            if fault and fault.kind in ("status", "reset_before"):
                state.record_attempt({**attempt, "status": fault.status, "fault": fault.kind})
                if fault.kind == "reset_before":
                    leave()
                    self._reset()
                    return
                self._send(shape(_fault_reply(fault, call)), before_send=leave)
                return
            reply = candidate.handler(call)
            if reply.status == 400:
                reply = Reply(reply.status, echo_refused_input(reply.body, call), reply.headers, reply.acted)
            state.record_attempt({**attempt, "status": reply.status, "fault": fault.kind if fault else None})
            if fault and fault.kind == "slow":
                time.sleep(fault.delay_seconds)
            if fault and fault.kind == "reset_after":
                leave()
                self._reset()
                return
            if fault and fault.kind == "malformed":
                reply = Reply(reply.status, "{not json", {"Content-Type": "application/json"})
            if fault and fault.kind == "error_after":  # acted, then a gateway lost the answer: only its X- headers stay
                kept = {name: value for name, value in reply.headers.items() if name.lower().startswith("x-")}
                reply = shape(Reply(fault.status or 504, {"error": "Gateway Timeout"}, kept))
            self._send(shape(reply), before_send=leave)
        except Exception:
            log.exception("sandbox handler failed")
            leave()
            self._send(Reply(500, {"error": "sandbox handler failed"}))

    def _admin(self, method: str, path: str, body: bytes) -> Reply:
        state, faults = self.server.state, self.server.faults
        if path == "/_sandbox/health":
            return Reply(200, {"ok": True})
        if path == "/_sandbox/state" and method == "GET":
            return Reply(200, state.snapshot())
        if path == "/_sandbox/reset" and method == "POST":
            state.reset()
            faults.clear()
            return Reply(200, {"ok": True})
        if path == "/_sandbox/faults" and method == "POST":
            try:
                faults.configure(json.loads(body or b"{}"))
            except (ValueError, KeyError, TypeError) as exc:
                return Reply(400, {"error": str(exc)})
            return Reply(200, {"ok": True})
        if path == "/_sandbox/clock" and method == "POST":
            options = json.loads(body or b"{}")
            state.advance(float(options.get("advance_days", 0)) * 86_400 + float(options.get("advance_seconds", 0)))
            return Reply(200, {"clock": state.now()})
        if path == "/_sandbox/config" and method == "POST":
            for family, options in json.loads(body or b"{}").items():
                if family == "minute_seconds":  # how long a per-minute limit's minute lasts (tests shorten it)
                    state.minute_seconds = float(options)
                    continue
                if family not in state.extensions:
                    return Reply(400, {"error": f"no configurable family {family!r}"})
                state.extensions[family].configure(options)
            return Reply(200, {"ok": True})
        if path == "/_sandbox/limits" and method == "POST":
            for family, values in json.loads(body or b"{}").items():
                state.limits[family] = FamilyLimits.parse(values)
            return Reply(200, {"ok": True})
        return Reply(404, {"error": f"no admin route {method} {path}"})

    def _send(self, reply: Reply, before_send=None) -> None:
        if isinstance(reply.body, (dict, list)):
            payload, content_type = json.dumps(reply.body).encode(), "application/json"
        else:
            payload, content_type = str(reply.body or "").encode(), "text/plain; charset=utf-8"
        if before_send:
            # Leave the in-flight count before the client can see the answer and start its next request.
            before_send()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.pop("Content-Type", content_type))
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset, no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


def _fault_reply(fault: Fault, call: Call) -> Reply:
    headers = {}
    if fault.retry_after == "date":
        headers["Retry-After"] = formatdate(time.time() + 1, usegmt=True)
    elif fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    status = fault.status or 503
    body = {"error": {"code": status, "error": "INJECTED_FAULT", "message": "injected by the sandbox"}}
    return Reply(status, echo_refused_input(body, call) if status == 400 else body, headers)


class Sandbox:
    """A sandbox in a background thread: `with Sandbox() as sandbox: sandbox.url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, credentials: Credentials | None = None,
                 limits: dict[str, FamilyLimits] | None = None, keep_identifiers: bool = True, minute_seconds: float = 60.0):
        self.state = SandboxState(limits or DEFAULT_LIMITS, credentials or Credentials(), keep_identifiers, EXTENSIONS,
                                  minute_seconds)
        self.faults = FaultPlan()
        self.server = SandboxHTTPServer((host, port), self.state, self.faults)
        self._thread = threading.Thread(target=self.server.serve_forever, name="sandbox", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Sandbox:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
