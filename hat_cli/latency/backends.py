"""Hardware backends as plugins: a pluggy hook, the entry-point group ``hat``, and the backend record.

This module is the public plugin API: a plugin imports ``hookimpl``, ``Backend`` and
``MeasurementProtocol`` from here and nothing else.

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
class MeasurementProtocol:
    """How one architecture is timed (docs/METHOD.md §4.1-4.2)."""

    beam: int = 5  # hypotheses decoded at once (HAT's --beam default, not the test beam 4)
    warmup: int = 5  # untimed encoder runs and untimed full-length decoder runs
    repetitions: int = 20  # timed runs of the encoder and of the decoder, separately
    trim_fraction: float = 0.1  # drop floor(f*n) fastest and max(1, floor(f*n)) slowest (measure.py)
    source_token: int = 7  # source [2, 7, 7, ...]; decoder prefix [7]*(L-1) + [2]
    eos: int = 2
    # CUDA only: capture the encoder and the whole incremental decode as CUDA graphs and time their
    # replays. Batch-1 eager decoding on a fast GPU is bound by Python kernel launches, whose speed
    # wanders with host load (we saw 27% spread on an H200); graph replays time the GPU work itself.
    cuda_graphs: bool = False
    # Model instances per measurement, each with its weights (and, with CUDA graphs, its activations) at
    # another place in memory; their kept runs are pooled. On an H200 one architecture's single-placement
    # measurements spread by 0.02-0.03 ms (about 0.3%), more than its runs within one placement, and a
    # collection's history fixes where each lands: a predictor fitted on one placement per sample learns
    # those accidents as if they were architecture.
    instances: int = 1

    def __post_init__(self) -> None:
        # Checked here, not only by the CLI: a plugin's protocol or with_protocol() reaches the meter too.
        if self.repetitions < 1 or self.instances < 1 or self.warmup < 0:
            raise HatError(f"A measurement protocol needs repetitions >= 1, instances >= 1 and warmup >= 0; got "
                           f"{self.repetitions}, {self.instances} and {self.warmup}.")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Backend:
    """One piece of hardware: where and how to measure, and how HAT normalised its latencies."""

    name: str
    description: str
    device: str = "cpu"  # "cpu" or "cuda" (torch device type)
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

    def __post_init__(self) -> None:
        # A plugin is outside input: every field is checked here, where it enters, so that a bad one is that
        # plugin's failure (named and skipped by load_hardware), not a crash of whatever command reads it.
        if not isinstance(self.name, str) or not self.name.strip():
            raise HatError(f"A hardware backend needs a name (a non-empty string), not {self.name!r}.")
        if self.device not in ("cpu", "cuda"):
            raise HatError(f"Hardware backend '{self.name}': device must be 'cpu' or 'cuda', not '{self.device}'.")
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

    def with_protocol(self, **changes: Any) -> "Backend":
        """This backend with some protocol settings replaced (None leaves a setting as it is)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, protocol=dataclasses.replace(self.protocol, **changes)) if changes else self

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
