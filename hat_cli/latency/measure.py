"""PyTorch's meter: HAT's latency measurement protocol (docs/METHOD.md §4.1-4.2) on the extracted standalone
SubTransformer, one implementation of meters.Meter (the `cpu`, `cuda` and `cuda-eager` backends').

Batch 1, a dummy source [2, 7, 7, ...] of the task's length L (30 WMT, 23 IWSLT); the encoder once; the
decoder incrementally for L steps with `beam` hypotheses at once, each step including the projection to
the full vocabulary (no softmax, no beam bookkeeping). Warm-up runs, then timed repetitions of encoder
and decoder separately, each trimmed (sort, drop the fastest floor(0.1 n) and the slowest max(1,
floor(0.1 n))) to a mean and a population std (with several placements, below, the std spans them all).

A measurement times the protocol's ``instances`` placements of the model in memory (weights moved behind
a seeded random spacer each time) and pools their kept runs: on an H200 where a model happens to land
moves its time by 0.3%, more than its runs differ, so one placement per sample is a noisy draw.

Modes: ``inference`` (default) = eval mode under ``torch.inference_mode()``, what a deployed model does;
``published`` = training mode with autograd on, the way HAT's scripts timed (docs/METHOD.md §4.5), for
reproducing published numbers.
"""

from __future__ import annotations

import platform
import random
import time
from typing import Any

import torch

from hat_cli.core.errors import HatError
from hat_cli.latency.meters import MeasurementProtocol, Meter, MeterOptions, TimedShape, Timings, trimmed_values
from hat_cli.model.space import SubTransformerConfig
from hat_cli.model.transformer import DecoderCache, TransformerModel

MODES = ("inference", "published")

class TorchMeter(Meter):
    """PyTorch's meter: eager on the CPU or a CUDA GPU, or CUDA graphs where the protocol asks for them."""

    def __init__(self, backend: "Backend", options: MeterOptions):
        self.backend = backend
        self.mode = options.mode or backend.default_mode
        if self.mode not in MODES:
            raise HatError(f"Measurement mode '{self.mode}' is unknown; use one of: {', '.join(MODES)}.")
        device_index, seed = options.device_index, options.seed
        if backend.device not in ("cpu", "cuda"):
            raise HatError(f"Hardware '{backend.name}' measures on '{backend.device}', which PyTorch's meter cannot; its plugin must bring a meter.")
        self.protocol: MeasurementProtocol = backend.protocol  # the one of the current measurement
        self.length = 0
        if backend.device == "cuda":
            if not torch.cuda.is_available():
                raise HatError(f"Hardware '{backend.name}' measures on a CUDA GPU, but this machine has none; use --hw cpu.")
            self.device = torch.device("cuda", device_index)
        else:
            self.device = torch.device("cpu")
        threads = options.threads or backend.threads
        if threads is not None and backend.device == "cpu":
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[backend.precision]
        self.seed = seed
        self._placements = 0  # random draws so far: each spacer or pad size comes from its own seeded Random

    # ------------------------------------------------------------------------------------- metadata
    def describe(self) -> dict[str, str]:
        return {"device": self.describe_device(), "precision": self.backend.precision, "mode": self.mode,
                "threads": str(self.threads), "runtime": torch.__version__}

    def describe_device(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{self.device.index} {torch.cuda.get_device_name(self.device)}"
        return f"cpu {platform.machine()} {self.threads} threads"

    # ------------------------------------------------------------------------------------- measuring
    def build(self, config: SubTransformerConfig, shape: TimedShape):
        """A compact random SubTransformer of ``config`` on the backend's device and precision."""
        torch.manual_seed(self.seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(self.seed)
        # Initialise on the device itself: on the host, a WMT-sized model took over a second to
        # initialise, longer than its measurement.
        with self.device:
            model = TransformerModel.subtransformer(
                config, shape.super_shape, shape.src_vocab, shape.tgt_vocab, shape.share_all_embeddings
            )
        model = model.to(device=self.device, dtype=self.dtype)
        model.train(self.mode == "published")  # HAT timed in training mode (dropout on)
        return model

    def _context(self):
        if self.mode == "published":
            return torch.enable_grad()  # HAT built autograd graphs while timing
        return torch.inference_mode()

    def _timer(self):
        if self.device.type == "cuda":
            return _CudaTimer(torch, self.device)
        return _WallTimer()

    def measure(self, config: SubTransformerConfig, shape: TimedShape, protocol: MeasurementProtocol, model: Any = None) -> Timings:
        """Encoder and decoder runs of ``config`` (docs/METHOD.md §4.2) kept after trimming, in ms, pooled over the
        protocol's instances. ``model``: a prebuilt one (tests and benches), else a random one is built."""
        p = self.protocol = protocol
        self.length = length = shape.length
        model = model if model is not None else self.build(config, shape)
        src = torch.tensor([[p.eos] + [p.source_token] * (length - 1)], device=self.device)
        prev = torch.tensor([[p.source_token] * (length - 1) + [p.eos]] * p.beam, device=self.device)
        beam_index = torch.zeros(p.beam, dtype=torch.long, device=self.device)
        encoder_kept: list[float] = []
        decoder_kept: list[float] = []
        for instance in range(p.instances):
            spacer = self._move_weights(model)  # every placement, the first too: not where history left it
            if self.uses_cuda_graphs:
                encoder_times, decoder_times = self._time_graphs(config, model, src, prev, beam_index, warm=instance == 0)
            else:
                encoder_times, decoder_times = self._time_eager(config, model, src, prev, beam_index)
            encoder_kept += trimmed_values(encoder_times, p.trim_fraction)
            decoder_kept += trimmed_values(decoder_times, p.trim_fraction)
            del spacer
        if self.uses_cuda_graphs:
            # Each placement's graphs had a private memory pool; dead pools stay reserved until this, and
            # over a long collection they would crowd out anything else on the GPU.
            torch.cuda.empty_cache()
        return Timings(tuple(encoder_kept), tuple(decoder_kept))

    def _move_weights(self, model):
        """Give the model's weights new addresses, behind a spacer of seeded random size, so that the next
        instance's timing does not inherit where the previous one happened to land. Returns the spacer,
        which must live until that instance has been timed."""
        self._placements += 1
        rng = random.Random(f"hat-placement:{self.seed}:{self._placements}")
        # One spacer per allocator pool: PyTorch's CUDA allocator serves tensors under 1 MiB from 2 MiB
        # segments of its own and larger ones from a second pool.
        spacer = [torch.empty(rng.randrange(1, 2048) * 512, dtype=torch.uint8, device=self.device),
                  torch.empty(rng.randrange(2048, 65536) * 512, dtype=torch.uint8, device=self.device)]
        with torch.no_grad():
            for tensor in list(model.parameters()) + list(model.buffers()):
                tensor.data = tensor.data.clone()
        return spacer

    def _time_eager(self, config, model, src, prev, beam_index) -> tuple[list[float], list[float]]:
        p = self.protocol
        timer = self._timer()
        with self._context():
            for _ in range(p.warmup):
                model.encode(src, config)
            encoder_times = self._time(lambda: model.encode(src, config), p.repetitions)
            enc = model.encode(src, config)  # what the decoder runs attend to
            for _ in range(p.warmup):  # untimed full-length (non-incremental) decoder runs, as HAT did
                model.decode(prev, enc.reorder(beam_index), config)
            decoder_times = []
            for _ in range(p.repetitions):
                beam_enc = enc.reorder(beam_index)  # fresh per run: enc-attn keys are computed inside the timing
                timer.start()
                _decode_steps(model, prev, beam_enc, config, self.length)
                decoder_times.append(timer.stop())
        return encoder_times, decoder_times

    def _time(self, run, repetitions: int) -> list[float]:
        """Milliseconds of ``repetitions`` calls of ``run``, each timed on its own."""
        timer, times = self._timer(), []
        for _ in range(repetitions):
            timer.start()
            run()
            times.append(timer.stop())
        return times

    def _time_queued(self, replay, repetitions: int) -> list[float]:
        """Milliseconds of ``repetitions`` graph replays queued back to back, an event between each and one
        host sync at the end. A replay started from an idle GPU also times how late the host's launch
        arrives (10-20 us that wander with host load, as much as the error we are after); queued, each
        replay starts when the one before it ends, so the events time the GPU's work alone."""
        events = [torch.cuda.Event(enable_timing=True) for _ in range(repetitions + 1)]
        replay()  # already running when the first event is recorded
        events[0].record()
        for event in events[1:]:
            replay()
            event.record()
        torch.cuda.synchronize(self.device)
        return [float(a.elapsed_time(b)) for a, b in zip(events, events[1:])]

    @property
    def uses_cuda_graphs(self) -> bool:
        # Graphs replay a fixed computation: only for inference mode (published mode keeps dropout on).
        return self.protocol.cuda_graphs and self.device.type == "cuda" and self.mode == "inference"

    def _time_graphs(self, config, model, src, prev, beam_index, warm: bool) -> tuple[list[float], list[float]]:
        """The same encoder run and L-step incremental decode, captured (once per placement) as two CUDA
        graphs and timed replay by replay. Kernels and shapes are exactly those of the eager protocol; what is
        left out is Python's launch overhead, which on a fast GPU dominates and wanders with host load.
        ``warm``: run the eager warm-up first (needed once per model, not per placement)."""
        p = self.protocol

        def encoder():
            return model.encode(src, config)

        def decoder(beam_enc):  # a fresh cache per run: enc-attn keys are computed inside the graph
            return _decode_steps(model, prev, beam_enc, config, self.length)

        self._placements += 1
        activation_offset = random.Random(f"hat-activations:{self.seed}:{self._placements}").randrange(0, 4096) * 512
        with torch.inference_mode():
            if warm:  # capture needs warmed-up kernels and lazily built tables, made on a side stream
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(2):  # nothing eager is timed: the replays below have their own warm-up
                        decoder(encoder().reorder(beam_index))
                torch.cuda.current_stream(self.device).wait_stream(side)
            try:
                encoder_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(encoder_graph):
                    # Shifts the activations allocated after it in the graph's own pool: under 1 MiB, those
                    # sharing its first 2 MiB block; larger, it takes a block of its own and shifts nothing.
                    pad = torch.empty(activation_offset + 512, dtype=torch.uint8, device=self.device)
                    static_enc = encoder()
                beam_enc = static_enc.reorder(beam_index)
                decoder_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(decoder_graph, pool=encoder_graph.pool()):
                    decoder(beam_enc)
            except RuntimeError as exc:  # e.g. an op that syncs with the host, which a graph cannot hold
                raise HatError(
                    f"Hardware '{self.backend.name}' times CUDA graphs, but capturing this model failed "
                    f"({str(exc).splitlines()[0]}); measure it with a backend without CUDA graphs, such as cuda-eager."
                ) from None
            for _ in range(p.warmup):
                encoder_graph.replay()
                decoder_graph.replay()
            encoder_times = self._time_queued(encoder_graph.replay, p.repetitions)
            decoder_times = self._time_queued(decoder_graph.replay, p.repetitions)
        del encoder_graph, decoder_graph, pad
        return encoder_times, decoder_times


def _decode_steps(model, prev, beam_enc, config, length: int):
    """HAT's timed decoder: ``length`` incremental steps of all beams, each with the vocabulary projection."""
    cache, logits = DecoderCache(), None
    for step in range(1, length + 1):
        logits = model.decode(prev[:, :step], beam_enc, config, cache=cache)
    return logits


class _WallTimer:
    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return (time.perf_counter() - self._t0) * 1000.0


class _CudaTimer:
    def __init__(self, torch, device):
        self._torch = torch
        self._begin = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)
        self._device = device

    def start(self) -> None:
        self._begin.record()

    def stop(self) -> float:
        self._end.record()
        self._torch.cuda.synchronize(self._device)
        return float(self._begin.elapsed_time(self._end))

