"""The measuring interface every hardware backend implements: a ``Meter`` times one architecture.

A backend (backends.py) carries a meter factory; every measuring command (`collect-latency`,
`profile --hw`, `search --verify`, and `demo` through them) opens the backend's meter and calls it the same
way, so a plugin can measure with its own runtime, on its own device, or on another machine:

    class MyMeter(Meter):
        def measure(self, config, shape, protocol) -> Timings: ...   # encoder and decoder, kept runs in ms
        def describe(self) -> dict[str, str]: ...                      # device, runtime, threads, ...

    register(Backend(name="mine", description="...", meter=lambda backend, options: MyMeter(...)))

(all of these names are importable from ``hat_cli.latency.backends``, the plugin API).

``config`` is the SubTransformer to time; ``shape`` what else decides its latency (the task's dummy
sentence length, the vocabulary sizes of the timed output projection, embedding sharing, the
SuperTransformer shape positions are computed at); ``protocol`` how to time it (HAT's: batch 1, ``beam``
hypotheses, the dummy sentence, the encoder once, the decoder step by step with the output projection,
``warmup`` untimed runs, ``repetitions`` timed runs of each, trimmed). A meter returns the runs it kept
after trimming; :class:`LatencyMeter` (below) averages them, and is what every command measures through.
No torch here: `hat hw list` must stay fast.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from hat_cli.core.errors import HatError
from hat_cli.model.space import SubTransformerConfig, SuperShape
from hat_cli.tasks import Task


@dataclass(frozen=True)
class MeasurementProtocol:
    """How one architecture is timed (docs/METHOD.md §4.1-4.2)."""

    beam: int = 5  # hypotheses decoded at once (HAT's --beam default, not the test beam 4)
    warmup: int = 5  # untimed encoder runs and untimed full-length decoder runs
    repetitions: int = 20  # timed runs of the encoder and of the decoder, separately
    trim_fraction: float = 0.1  # drop floor(f*n) fastest and max(1, floor(f*n)) slowest (trimmed_values, below)
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
        # Checked here, not only by the CLI: a plugin's protocol or LatencyMeter's overrides reach the meter too.
        if self.repetitions < 1 or self.instances < 1 or self.warmup < 0:
            raise HatError(f"A measurement protocol needs repetitions >= 1, instances >= 1 and warmup >= 0; got "
                           f"{self.repetitions}, {self.instances} and {self.warmup}.")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementProtocol:
        """A protocol sent over the wire (a latency server's request); unknown settings are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HatError(f"Unknown measurement protocol setting(s): {', '.join(unknown)}.")
        try:
            return cls(**data)
        except TypeError as exc:
            raise HatError(f"The measurement protocol is malformed ({exc}).") from None


@dataclass(frozen=True)
class TimedShape:
    """Everything besides the architecture that decides what is timed (and all that travels to a remote
    device with it: latency does not depend on the weights)."""

    task: str
    length: int  # HAT's dummy sentence: 30 WMT, 23 IWSLT
    src_vocab: int
    tgt_vocab: int
    share_all_embeddings: bool
    super_shape: SuperShape
    space: str = ""  # the built-in search space the architectures come from (checked by a latency server)

    @classmethod
    def of_task(cls, task: Task, super_shape: SuperShape, space: str = "") -> "TimedShape":
        src, tgt = task.timed_vocab_sizes
        return cls(task.name, task.dummy_length, src, tgt, task.share_all_embeddings, super_shape, space)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TimedShape":
        try:
            values = dict(data)
            values["super_shape"] = SuperShape(**values["super_shape"])
            shape = cls(**values)
        except (KeyError, TypeError, ValueError) as exc:
            raise HatError(f"The timed shape is malformed ({exc}).") from None
        if not (0 < shape.length <= 1024 and 0 < shape.src_vocab <= 1_000_000 and 0 < shape.tgt_vocab <= 1_000_000):
            raise HatError("The timed shape is out of range (length 1-1024, vocabularies up to 1,000,000).")
        return shape


@dataclass(frozen=True)
class Timings:
    """What a meter measured for one architecture: the encoder and decoder runs it kept, in ms (for
    several placements of the model, all of them pooled)."""

    encoder_ms: tuple[float, ...]
    decoder_ms: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.encoder_ms or not self.decoder_ms:
            raise HatError("A meter returned no encoder or no decoder runs.")
        if not all(math.isfinite(v) and v >= 0 for v in self.encoder_ms + self.decoder_ms):
            raise HatError("A meter returned a negative or non-finite time.")

    def summary(self) -> "LatencyMeasurement":
        return LatencyMeasurement(statistics.fmean(self.encoder_ms), statistics.fmean(self.decoder_ms),
                                  _pstdev(self.encoder_ms), _pstdev(self.decoder_ms))

    def to_dict(self) -> dict[str, list[float]]:
        return {"encoder_ms": list(self.encoder_ms), "decoder_ms": list(self.decoder_ms)}


@dataclass(frozen=True)
class LatencyMeasurement:
    """Encoder and decoder latency of one architecture, in ms (trimmed means and stds)."""

    encoder_ms: float
    decoder_ms: float
    encoder_std_ms: float
    decoder_std_ms: float

    @property
    def total_ms(self) -> float:
        return self.encoder_ms + self.decoder_ms

    def to_dict(self) -> dict[str, float]:
        return {"encoder": self.encoder_ms, "decoder": self.decoder_ms, "total": self.total_ms}


def trimmed_values(values: list[float], fraction: float = 0.1) -> list[float]:
    """HAT's latency_dataset trimming: drop floor(f n) lowest and max(1, floor(f n)) highest values."""
    if not values:
        raise HatError("No latency values to average.")
    ordered = sorted(values)
    cut = int(math.floor(fraction * len(ordered)))
    kept = ordered[cut : len(ordered) - max(1, cut)]
    return kept or [statistics.median(ordered)]  # fewer than 2 runs: nothing survives HAT's rule, keep the median


def _pstdev(values) -> float:
    return statistics.pstdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class MeterOptions:
    """Settings of one measuring run that are not the backend's: chosen on the command line."""

    mode: Optional[str] = None  # inference | published (PyTorch meters); None = the backend's default
    device_index: int = 0
    seed: int = 0
    threads: Optional[int] = None  # intra-op threads on a CPU; None = the backend's setting
    remote: Optional[str] = None  # URL of a `hat latency-server` (the remote backend)
    remote_backend: Optional[str] = None  # the backend the server measures with
    extra: dict[str, str] = field(default_factory=dict)  # for third-party meters


class Meter(ABC):
    """Times architectures with one runtime on one device. Implementations: ``measure.TorchMeter`` (PyTorch
    eager and CUDA graphs), ``ort.OnnxRuntimeMeter``, ``remote.RemoteMeter``, and any plugin's own
    (examples/hat-hw-example)."""

    #: the protocol this meter's device prefers (e.g. a latency server's backend); None = the backend's
    preferred_protocol: Optional[MeasurementProtocol] = None

    @abstractmethod
    def measure(self, config: SubTransformerConfig, shape: TimedShape, protocol: MeasurementProtocol) -> Timings:
        """Time ``config`` with ``protocol``: encoder and decoder separately, the runs kept after trimming."""

    @abstractmethod
    def describe(self) -> dict[str, str]:
        """What a latency CSV records about this meter: ``device`` (a description), ``precision``, ``mode``,
        ``threads`` and ``runtime`` (name and version); ``hardware`` optionally overrides the backend name."""

    def close(self) -> None:
        """Release what the meter holds (sessions, connections)."""


class LatencyMeter:
    """Times architectures of one task with one backend: opens the backend's meter (any runtime, any device)
    and turns the runs it kept into trimmed means. Every measuring command goes through here."""

    def __init__(
        self,
        backend: "Backend",
        task: Task,
        super_shape: SuperShape,
        mode: Optional[str] = None,
        options: Optional[MeterOptions] = None,
        overrides: Optional[dict[str, Any]] = None,
        space: str = "",
    ):
        options = options or MeterOptions()
        if mode:  # a shorthand for options.mode
            options = replace(options, mode=mode)
        self.backend = backend
        self.task = task
        self.super_shape = super_shape
        self.shape = TimedShape.of_task(task, super_shape, space or task.latency_space)
        self.meter = backend.open_meter(options)
        base = self.meter.preferred_protocol or backend.protocol
        changes = {k: v for k, v in (overrides or {}).items() if v is not None}
        try:  # a protocol that cannot measure is refused; the meter just opened is closed, not leaked
            self.protocol: MeasurementProtocol = replace(base, **changes) if changes else base
        except BaseException:
            self.meter.close()
            raise
        self._description = self.meter.describe()
        self.mode = self._description.get("mode", options.mode or backend.default_mode)

    def measure(self, config: SubTransformerConfig, model: Any = None) -> LatencyMeasurement:
        """Encoder and decoder latency of ``config`` in ms (trimmed means over the kept runs)."""
        return self.timings(config, model).summary()

    def timings(self, config: SubTransformerConfig, model: Any = None) -> Timings:
        extra = {} if model is None else {"model": model}  # a prebuilt model: PyTorch's meter only (tests, benches)
        try:
            timings = self.meter.measure(config, self.shape, self.protocol, **extra)
        except HatError:
            raise
        except Exception as exc:  # a plugin's meter is outside code: its failure is a sentence, not a traceback
            if type(exc).__module__.startswith("torch") or isinstance(exc, (MemoryError, KeyboardInterrupt)):
                raise  # PyTorch's own errors (out of memory, CUDA) keep their traceback for HAT_DEBUG
            raise HatError(f"Hardware '{self.backend.name}' failed to measure: {type(exc).__name__}: {exc}") from None
        if not isinstance(timings, Timings):
            raise HatError(f"Hardware '{self.backend.name}' measured a {type(timings).__name__}, not Timings.")
        return timings

    def describe_device(self) -> str:
        return self._description.get("device", self.backend.name)

    @property
    def hardware(self) -> str:
        """The name latency CSVs record: the backend's, or what its meter says (a remote device)."""
        return self._description.get("hardware") or self.backend.name

    def csv_metadata(self) -> dict[str, str]:
        """The measurement columns of a latency CSV row that describe this meter (dataset.METADATA_COLUMNS
        without the per-row timestamp, sample index, reference flag and seed)."""
        d = self._description
        return {
            "hardware": self.hardware, "device": self.describe_device(), "precision": d.get("precision", self.backend.precision),
            "mode": self.mode, "threads": str(d.get("threads", "")), "repetitions": str(self.protocol.repetitions),
            "instances": str(self.protocol.instances),
            # The column keeps its HAT-era name; it holds the runtime that measured (torch, onnxruntime, ...).
            "torch_version": d.get("runtime", ""), "task": self.task.name,
        }

    def build(self, config: SubTransformerConfig):
        """PyTorch's meter only: the random model it would time (tests and benches reuse it)."""
        return self.meter.build(config, self.shape)

    def close(self) -> None:
        self.meter.close()
