"""`hat latency-server`: measure architectures sent over HTTP, on the device the server runs on.

A workstation's `remote` backend (remote.py) posts an architecture, the task's timed shape and the
protocol; the server measures with one of its own backends (PyTorch, ONNX Runtime, a plugin's meter) and
answers the kept runs. Only those travel: latency does not depend on weights.

Guards, because a latency server runs code on its device for whoever reaches it: every request needs the
shared token (``HAT_LATENCY_TOKEN``, compared in constant time); bodies over ``MAX_BODY`` bytes are refused
unread; an architecture must belong to the built-in search space it names, and the shape must be the one
this hat computes for that task and space (nothing else gets built); protocols are bounded. One measurement
runs at a time (a lock): two at once would time each other.

Endpoints (JSON): ``GET /v1/info`` (backends), ``POST /v1/describe`` (open a backend's meter, say what it
is), ``POST /v1/measure``.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from hat_cli import __version__
from hat_cli.core.errors import HatError
from hat_cli.latency.meters import MeasurementProtocol, Meter, MeterOptions, TimedShape
from hat_cli.latency.remote import TOKEN_ENV
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.tasks import find_task

MAX_BODY = 64 * 1024  # an architecture and a shape are well under 2 KiB
LIMITS = {"repetitions": 10_000, "warmup": 1_000, "instances": 64, "beam": 64}
MEASURING_BACKENDS_EXCLUDED = ("remote",)  # a server does not forward to another server


def require_token() -> str:
    token = os.environ.get(TOKEN_ENV, "")
    if len(token) < 8:
        raise HatError(f"Set {TOKEN_ENV} to a shared secret of at least 8 characters (the same on the workstation) before starting the server.")
    return token


@dataclass
class LatencyService:
    """The server's state: its backends, the meters opened so far, and the one-at-a-time lock."""

    backends: dict[str, Any]  # name -> hat_cli.hardware.Backend
    token: str
    log: Callable[[str], None] = lambda message: None
    lock: threading.Lock = field(default_factory=threading.Lock)
    meters: dict[tuple, Meter] = field(default_factory=dict)
    measured: int = 0

    def authorised(self, header: Optional[str]) -> bool:
        expected = f"Bearer {self.token}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def info(self) -> dict[str, Any]:
        return {"hat": __version__, "backends": {
            name: {"description": b.description, "runtime": b.runtime, "device": b.device, "protocol": b.protocol.to_dict(),
                   "available": b.unavailable is None, "unavailable": b.unavailable}
            for name, b in sorted(self.backends.items()) if name not in MEASURING_BACKENDS_EXCLUDED}}

    def _backend(self, name: Any):
        if not isinstance(name, str) or name not in self.backends or name in MEASURING_BACKENDS_EXCLUDED:
            known = ", ".join(n for n in sorted(self.backends) if n not in MEASURING_BACKENDS_EXCLUDED)
            raise HatError(f"This server has no backend '{name}'; it has: {known}.")
        return self.backends[name]

    def _meter(self, body: dict[str, Any]) -> Meter:
        backend = self._backend(body.get("backend"))
        mode, threads = body.get("mode"), body.get("threads")
        if mode is not None and not isinstance(mode, str):
            raise HatError("'mode' must be a string.")
        if threads is not None and not (isinstance(threads, int) and 1 <= threads <= 256):
            raise HatError("'threads' must be a whole number from 1 to 256.")
        key = (backend.name, mode, threads)
        if key not in self.meters:
            self.meters[key] = backend.open_meter(MeterOptions(mode=mode, threads=threads))
        return self.meters[key]

    def describe(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            meter = self._meter(body)
            backend = self._backend(body.get("backend"))
            protocol = (meter.preferred_protocol or backend.protocol).to_dict()
            return {"describe": meter.describe(), "protocol": protocol}

    def measure(self, body: dict[str, Any]) -> dict[str, Any]:
        for key in ("backend", "arch", "shape", "protocol"):
            if key not in body:
                raise HatError(f"The request lacks '{key}'.")
        shape = TimedShape.from_dict(body["shape"])
        try:
            space = SearchSpace.builtin(shape.space)
        except HatError:
            raise HatError(f"Unknown search space '{shape.space}'; this server measures architectures of its built-in spaces.") from None
        if shape != TimedShape.of_task(find_task(shape.task), space.shape, space.name):
            raise HatError(f"The timed shape is not the one of task {shape.task} in space {space.name}.")
        if not isinstance(body["arch"], dict):
            raise HatError("'arch' must be a mapping of the SubTransformer's fields.")
        config = SubTransformerConfig.from_dict(body["arch"])
        config.validate(space)
        if not isinstance(body["protocol"], dict):
            raise HatError("'protocol' must be a mapping.")
        protocol = MeasurementProtocol.from_dict(body["protocol"])
        for name, limit in LIMITS.items():
            if getattr(protocol, name) > limit:
                raise HatError(f"protocol {name} {getattr(protocol, name)} is over this server's limit of {limit}.")
        with self.lock:  # one measurement at a time
            meter = self._meter(body)
            started = time.time()
            timings = meter.measure(config, shape, protocol)
            finished = time.time()
            self.measured += 1
        self.log(f"measured #{self.measured} with {body['backend']}: {timings.summary().total_ms:.2f} ms ({finished - started:.1f} s)")
        return {"timings": timings.to_dict(), "started": started, "finished": finished}

    def close(self) -> None:
        for meter in self.meters.values():
            meter.close()


def _handler(service: LatencyService):
    class Handler(BaseHTTPRequestHandler):
        server_version = "hat-latency-server"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # requests are logged by the service, not line by line
            pass

        def _reply(self, status: int, document: dict[str, Any]) -> None:
            data = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _refuse(self, status: int, message: str) -> None:
            self.close_connection = True
            self._reply(status, {"error": message})

        def _guard(self) -> bool:
            if not service.authorised(self.headers.get("Authorization")):
                self._refuse(HTTPStatus.UNAUTHORIZED, f"a valid token is required (the server's {TOKEN_ENV}).")
                return False
            return True

        def do_GET(self):
            if not self._guard():
                return
            if self.path == "/v1/info":
                self._reply(HTTPStatus.OK, service.info())
            else:
                self._refuse(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}.")

        def do_POST(self):
            if not self._guard():
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required.")
                return
            if length > MAX_BODY or length < 0:
                self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length} bytes; the limit is {MAX_BODY}.")
                return
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError) as exc:
                self._refuse(HTTPStatus.BAD_REQUEST, f"the body is not a JSON object ({exc}).")
                return
            routes = {"/v1/measure": service.measure, "/v1/describe": service.describe}
            if self.path not in routes:
                self._refuse(HTTPStatus.NOT_FOUND, f"no such endpoint {self.path}.")
                return
            try:
                self._reply(HTTPStatus.OK, routes[self.path](body))
            except HatError as exc:
                self._refuse(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))

    return Handler


def make_server(host: str, port: int, service: LatencyService) -> ThreadingHTTPServer:
    try:
        server = ThreadingHTTPServer((host, port), _handler(service))
    except OSError as exc:
        raise HatError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    server.daemon_threads = True
    return server
