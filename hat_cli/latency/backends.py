"""Hardware backends as plugins: a pluggy hook, the entry-point group ``hat``, and the backend record.

This module is the public plugin API: a plugin imports ``hookimpl``, ``Backend``,
``MeasurementProtocol`` and, to bring its own measuring code, ``Meter``, ``Timings`` (and ``TimedShape``,
``MeterOptions``, ``trimmed_values``) from here and nothing else.

A backend names a piece of hardware, its measurement protocol and the meter that measures on it
(meters.py): PyTorch's (``torch_meter``), ONNX Runtime's (``onnxruntime_meter``), a remote device's
(``remote_meter``) or a plugin's own. A backend without a meter is a record of a published device;
measuring it runs PyTorch's meter here, as a proxy, with a warning.

A plugin is any module that implements ``register_hardware(register)`` with ``@hookimpl`` and is named
by an entry point in the group ``hat`` (the built-ins in ``plugins/`` register exactly like a
third-party package). ``HAT_PLUGINS=cpu,xeon`` limits which entry points load. A plugin that fails to
import or raises in its hook is recorded by name and skipped: the rest of hat keeps working.

No torch here: ``hat hw list`` must stay fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Optional

import pluggy

from hat_cli.core.errors import HatError
from hat_cli.latency.meters import MeasurementProtocol, Meter, MeterOptions, TimedShape, Timings, trimmed_values

__all__ = [
    "hookimpl", "Backend", "MeasurementProtocol", "Meter", "MeterOptions", "TimedShape", "Timings", "trimmed_values",
    "torch_meter", "onnxruntime_meter", "remote_meter", "load_hardware", "get_backend",
]

ENTRY_POINT_GROUP = "hat"
PLUGINS_ENV = "HAT_PLUGINS"

hookspec = pluggy.HookspecMarker("hat")
hookimpl = pluggy.HookimplMarker("hat")


class HardwareSpecs:
    """The hooks a hat plugin may implement."""

    @hookspec
    def register_hardware(self, register: Callable[["Backend"], None]) -> None:
        """Call ``register(Backend(...))`` once for every hardware backend the plugin provides."""


@dataclass(frozen=True)
class Backend:
    """One piece of hardware: where and how to measure, and how HAT normalised its latencies."""

    name: str
    description: str
    device: str = "cpu"  # where it measures: "cpu" or "cuda" for PyTorch's meter, any word for a plugin's own
    threads: Optional[int] = None  # CPU intra-op threads; None = PyTorch's default (what HAT did)
    precision: str = "fp32"  # fp32 | fp16 | bf16
    protocol: MeasurementProtocol = field(default_factory=MeasurementProtocol)
    lat_norm: float = 300.0  # HAT's target normalisation (ms): 200 TITAN Xp, 300 Xeon, 5000 Raspberry Pi
    # True for "the machine I am on"; False for a named published device, measured elsewhere only as a proxy.
    local: bool = True
    # task -> name of the published latency predictor (model_zoo.toml [predictors]) that `hat search --hw NAME`
    # uses when none was fitted here (read by hat_cli.resolve.predictor).
    published_predictors: dict[str, str] = field(default_factory=dict)
    default_mode: str = "inference"  # inference | published (HAT's training mode + autograd)
    source: str = ""  # filled by the plugin manager: distribution and module that registered it
    # meter(backend, options) -> Meter: the code that measures (meters.py). None: a record of a published
    # device, measured here by PyTorch's meter as a proxy.
    meter: Optional[Callable[["Backend", MeterOptions], Meter]] = field(default=None, compare=False)
    runtime: str = "pytorch"  # what the meter runs the model with, as `hat hw list` shows it
    # Why this backend cannot measure here (e.g. a missing optional package, and how to install it).
    unavailable: Optional[str] = None

    def __post_init__(self) -> None:
        # A plugin is outside input: every field is checked here, where it enters, so that a bad one is that
        # plugin's failure (named and skipped by load_hardware), not a crash of whatever command reads it.
        if not isinstance(self.name, str) or not self.name.strip():
            raise HatError(f"A hardware backend needs a name (a non-empty string), not {self.name!r}.")
        # Any device word: PyTorch's meter takes cpu and cuda, a plugin's own meter whatever it measures on.
        if not isinstance(self.device, str) or not self.device.strip():
            raise HatError(f"Hardware backend '{self.name}': device must be a non-empty word (cpu, cuda, or the plugin's own), not {self.device!r}.")
        if self.meter is not None and not callable(self.meter):
            raise HatError(f"Hardware backend '{self.name}': meter must be a factory meter(backend, options) -> Meter, not {self.meter!r}.")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise HatError(f"Hardware backend '{self.name}': precision must be fp32, fp16 or bf16, not '{self.precision}'.")
        if not isinstance(self.protocol, MeasurementProtocol):
            raise HatError(f"Hardware backend '{self.name}': protocol must be a MeasurementProtocol, not {self.protocol!r}.")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise HatError(f"Hardware backend '{self.name}': threads must be None (PyTorch's default) or at least 1, not {self.threads!r}.")
        if isinstance(self.lat_norm, bool) or not isinstance(self.lat_norm, (int, float)) or not math.isfinite(self.lat_norm) or self.lat_norm <= 0:
            raise HatError(f"Hardware backend '{self.name}': lat_norm must be a positive number of ms, not {self.lat_norm!r}.")
        if not isinstance(self.published_predictors, dict):
            raise HatError(f"Hardware backend '{self.name}': published_predictors must be a dict of task -> predictor name.")

    def foreign_device_warning(self) -> Optional[str]:
        """A sentence for the user when this named device is measured on some other machine."""
        if self.local:
            return None
        return (
            f"'{self.name}' describes {self.description}; measuring it here uses its protocol on this machine "
            f"({platform.machine()}, {self.device}), so the numbers describe this machine, not that device."
        )

    def open_meter(self, options: Optional[MeterOptions] = None) -> Meter:
        """The meter that measures for this backend (a HatError says why when it cannot here)."""
        if self.unavailable:
            raise HatError(f"Hardware '{self.name}' cannot measure here: {self.unavailable}")
        factory = self.meter or torch_meter
        try:
            meter = factory(self, options or MeterOptions())
        except HatError:
            raise
        except Exception as exc:  # a plugin's meter is outside code: its failure is a sentence, not a traceback
            raise HatError(f"Hardware '{self.name}' ({self.source or 'its plugin'}) could not open its meter: {type(exc).__name__}: {exc}") from None
        if not isinstance(meter, Meter):
            raise HatError(f"Hardware '{self.name}' ({self.source}) returned a {type(meter).__name__}, not a Meter.")
        return meter

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "device": self.device,
            "threads": self.threads,
            "precision": self.precision,
            "lat_norm": self.lat_norm,
            "local": self.local,
            "protocol": self.protocol.to_dict(),
            "published_predictors": dict(self.published_predictors),
            "runtime": self.runtime,
            "measures": "own meter" if self.meter is not None else "pytorch proxy (published device)",
            "available": self.unavailable is None,
            "unavailable": self.unavailable,
        }


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why (shown by `hat hw list`)."""

    name: str
    source: str
    error: str


@dataclass
class HardwareRegistry:
    backends: dict[str, Backend]
    failures: list[PluginFailure]

    def get(self, name: str) -> Backend:
        if name not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none"
            broken = f" (plugins that failed to load: {', '.join(f.name for f in self.failures)})" if self.failures else ""
            raise HatError(f"Unknown hardware '{name}'; known hardware: {known}{broken}.")
        return self.backends[name]


def _wanted_plugins() -> Optional[set[str]]:
    value = os.environ.get(PLUGINS_ENV)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _distribution_label(entry_point) -> str:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return entry_point.value
    return f"{dist.metadata['Name']} {dist.version} ({entry_point.value})"


def load_hardware(extra_plugins: tuple[Any, ...] = ()) -> HardwareRegistry:
    """Load every plugin of the entry-point group ``hat`` (limited by $HAT_PLUGINS) plus ``extra_plugins``
    (modules or objects with hook implementations, e.g. from tests) and collect their backends."""
    manager = pluggy.PluginManager("hat")
    manager.add_hookspecs(HardwareSpecs)
    failures: list[PluginFailure] = []
    sources: dict[str, str] = {}  # plugin name in the manager -> source label
    wanted = _wanted_plugins()
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if wanted is not None and entry_point.name not in wanted:
            continue
        label = _distribution_label(entry_point)
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except (Exception, SystemExit) as exc:  # a broken plugin must never take the CLI down, sys.exit() included
            failures.append(PluginFailure(entry_point.name, label, _failure(exc)))
            continue
        sources[entry_point.name] = label
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", type(plugin).__name__)
        manager.register(plugin, name=name)
        sources[name] = name

    backends: dict[str, Backend] = {}
    # Call each implementation on its own so one that raises is reported without losing the others.
    for impl in manager.hook.register_hardware.get_hookimpls():  # registration order: first name wins
        plugin_name = impl.plugin_name
        label = sources.get(plugin_name, plugin_name)
        found: list[Backend] = []

        def register(backend: Backend, _found=found) -> None:
            if not isinstance(backend, Backend):
                raise TypeError(f"register() takes a hat_cli.latency.backends.Backend, got {type(backend).__name__}")
            _found.append(backend)

        try:
            impl.function(register=register)
        except (Exception, SystemExit) as exc:
            failures.append(PluginFailure(plugin_name, label, _failure(exc)))
            continue
        for backend in found:
            if backend.name in backends:
                failures.append(PluginFailure(plugin_name, label, f"hardware name '{backend.name}' is already registered by {backends[backend.name].source}"))
                continue
            backends[backend.name] = _with_source(backend, label)
    return HardwareRegistry(backends, failures)


def _failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _with_source(backend: Backend, source: str) -> Backend:
    return dataclasses.replace(backend, source=source)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a HatError naming the known ones otherwise."""
    return load_hardware().get(name)


# ======================================================================================= the built-in meters
# Factories a plugin names in Backend(meter=...). Each imports its runtime lazily, when something measures:
# a plugin module that names one stays free of torch and onnxruntime (`hat hw list` is fast).
def torch_meter(backend: Backend, options: MeterOptions) -> Meter:
    """PyTorch on this machine: eager on the CPU or a CUDA GPU, CUDA graphs where the protocol asks."""
    # Lazily: torch.
    from hat_cli.latency.measure import TorchMeter

    return TorchMeter(backend, options)


def onnxruntime_meter(backend: Backend, options: MeterOptions) -> Meter:
    """Each architecture exported to ONNX and timed in ONNX Runtime's CPU execution provider."""
    # Lazily: torch and onnxruntime.
    from hat_cli.latency.ort import OnnxRuntimeMeter

    return OnnxRuntimeMeter(backend, options)


def remote_meter(backend: Backend, options: MeterOptions) -> Meter:
    """A device running `hat latency-server`, over HTTP."""
    # Lazily: only a remote measurement needs the HTTP client.
    from hat_cli.latency.remote import RemoteMeter

    return RemoteMeter(backend, options)
