"""The `remote` backend's meter: sends each architecture to a `hat latency-server` and returns its runs.

Only the architecture, the task's timed shape and the protocol travel. A server that stops answering
ends the measurement with one sentence naming its URL; the latency CSV already holds every row measured
before, so rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from http.client import HTTPException
from typing import Any

from hat_cli.core.errors import HatError
from hat_cli.latency.meters import MeasurementProtocol, Meter, MeterOptions, TimedShape, Timings
from hat_cli.model.space import SubTransformerConfig

REMOTE_ENV = "HAT_REMOTE"
TOKEN_ENV = "HAT_LATENCY_TOKEN"  # the shared secret, on the workstation and the device (server.py)
TIMEOUT_ENV = "HAT_REMOTE_TIMEOUT"  # seconds one measurement may take on a slow device


class RemoteMeter(Meter):
    def __init__(self, backend: "Backend", options: MeterOptions):
        url = options.remote or os.environ.get(REMOTE_ENV)
        if not url:
            raise HatError(f"--hw remote needs the latency server's URL: --remote http://HOST:PORT (or ${REMOTE_ENV}).")
        if not url.startswith(("http://", "https://")):
            raise HatError(f"--remote must be an http:// or https:// URL, not '{url}'.")
        self.url = url.rstrip("/")
        self.token = os.environ.get(TOKEN_ENV, "")
        if not self.token:
            raise HatError(f"Set {TOKEN_ENV} to the latency server's token to measure on {self.url}.")
        self.remote_backend = options.remote_backend or "cpu"
        self.mode = options.mode
        self.threads = options.threads  # asks the device's meter for this many threads (--threads)
        self.timeout = float(os.environ.get(TIMEOUT_ENV, "1800"))
        self.last_device_seconds = 0.0
        answer = self._post("/v1/describe", self._which(), timeout=120, first=True)
        self._description = answer["describe"]
        self.preferred_protocol = MeasurementProtocol.from_dict(answer["protocol"])

    def describe(self) -> dict[str, str]:
        host = self.url.split("://", 1)[1]
        return {**self._description, "hardware": f"remote-{self.remote_backend}",
                "device": f"{self._description.get('device', '?')} at {host}"}

    def measure(self, config: SubTransformerConfig, shape: TimedShape, protocol: MeasurementProtocol) -> Timings:
        body = {**self._which(), "arch": config.to_dict(), "shape": shape.to_dict(), "protocol": protocol.to_dict()}
        answer = self._post("/v1/measure", body, timeout=self.timeout)
        # How long the device itself measured (seconds): what a round trip costs on top is the overhead.
        self.last_device_seconds = float(answer.get("finished", 0.0)) - float(answer.get("started", 0.0))
        try:
            return Timings(tuple(map(float, answer["timings"]["encoder_ms"])), tuple(map(float, answer["timings"]["decoder_ms"])))
        except (KeyError, TypeError, ValueError):
            raise HatError(f"The latency server at {self.url} answered something that is not a measurement.") from None

    def _which(self) -> dict[str, Any]:
        """Which meter of the server: its backend, mode and threads."""
        return {"backend": self.remote_backend, "mode": self.mode, "threads": self.threads}

    def _post(self, path: str, body: dict[str, Any], timeout: float, first: bool = False) -> dict[str, Any]:
        data = json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise HatError(f"The latency server at {self.url} refused the request: {_error_of(exc)}") from None
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if first:
                raise HatError(f"The latency server at {self.url} does not answer ({reason}); start `hat latency-server` "
                               f"there, or check the URL.") from None
            raise HatError(
                f"The latency server at {self.url} stopped answering ({reason}); start it again and rerun the same "
                f"command to continue where it stopped."
            ) from None


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except Exception:
        return f"HTTP {exc.code} {exc.reason}"
