"""The `onnxruntime` backend's meter: HAT's protocol on the ONNX export of each architecture, run by ONNX
Runtime's CPU execution provider.

Per architecture: a compact SubTransformer with seeded random weights (latency does not depend on them)
is exported to a temporary directory (export/onnx.py) and loaded in two sessions. The encoder graph runs
once per timed run on HAT's dummy sentence (batch 1); its outputs are expanded to ``beam`` rows outside the
timing, and a timed decoder run is ``length`` incremental steps of all rows, each with the output
projection, the cache fed back from step to step. Warm-up, repetitions, trimming and placements as for
PyTorch: one placement is one pair of freshly created sessions.

One difference from PyTorch's meter: the encoder graph also projects the encoder output into every decoder
layer's encoder-attention keys and values (what a deployed decoder caches), which HAT's protocol counts in
the decoder's first step; the total is the same work.
"""

from __future__ import annotations

import platform
import tempfile
import time

import numpy as np

import torch

from hat_cli.core.errors import HatError
from hat_cli.export.onnx import export_onnx
from hat_cli.export.runtime import OnnxTranslator, load_onnxruntime
from hat_cli.latency.meters import MeasurementProtocol, Meter, MeterOptions, TimedShape, Timings, trimmed_values
from hat_cli.model.space import SubTransformerConfig
from hat_cli.model.transformer import TransformerModel


class OnnxRuntimeMeter(Meter):
    def __init__(self, backend: "Backend", options: MeterOptions):
        self.ort = load_onnxruntime()
        self.backend = backend
        self.threads = options.threads or backend.threads
        self.seed = options.seed
        if (options.mode or "inference") != "inference":
            raise HatError("The onnxruntime backend measures exported (inference) graphs only; drop --mode published.")

    def describe(self) -> dict[str, str]:
        threads = str(self.threads) if self.threads else "default"
        return {"device": f"cpu {platform.machine()} onnxruntime CPUExecutionProvider {threads} threads",
                "precision": "fp32", "mode": "inference", "threads": threads, "runtime": f"onnxruntime {self.ort.__version__}"}

    def measure(self, config: SubTransformerConfig, shape: TimedShape, protocol: MeasurementProtocol) -> Timings:
        torch.manual_seed(self.seed)
        model = TransformerModel.subtransformer(config, shape.super_shape, shape.src_vocab, shape.tgt_vocab, shape.share_all_embeddings)
        encoder_kept: list[float] = []
        decoder_kept: list[float] = []
        with tempfile.TemporaryDirectory(prefix="hat-ort-") as tmp:
            export_onnx(model, config, tmp)
            del model
            for _ in range(protocol.instances):
                graphs = OnnxTranslator(tmp, self.threads)  # a fresh pair of sessions: one placement
                enc_times, dec_times = _time_protocol(graphs, shape.length, protocol)
                encoder_kept += trimmed_values(enc_times, protocol.trim_fraction)
                decoder_kept += trimmed_values(dec_times, protocol.trim_fraction)
                del graphs
        return Timings(tuple(encoder_kept), tuple(decoder_kept))


def _time_protocol(graphs: OnnxTranslator, length: int, p: MeasurementProtocol) -> tuple[list[float], list[float]]:
    src = np.array([[p.eos] + [p.source_token] * (length - 1)], dtype=np.int64)
    prev = np.array([[p.source_token] * (length - 1) + [p.eos]] * p.beam, dtype=np.int64)
    feed_src = {"src_tokens": src}
    encoder, decoder, names = graphs.encoder, graphs.decoder, graphs.decoder_inputs
    for _ in range(p.warmup):
        encoder.run(None, feed_src)
    encoder_times = []
    for _ in range(p.repetitions):
        started = time.perf_counter()
        enc = encoder.run(None, feed_src)
        encoder_times.append((time.perf_counter() - started) * 1000.0)
    # What the beams attend to: the sentence's encoder outputs, one copy per hypothesis (untimed, as in PyTorch).
    beam_enc = [np.repeat(t, p.beam, axis=0) for t in enc]
    empty = graphs.empty_past(p.beam)

    def decode_all() -> None:
        past = empty
        for step in range(length):
            outputs = decoder.run(None, dict(zip(names, [prev[:, step : step + 1], *beam_enc, *past])))
            past = outputs[1:]

    for _ in range(p.warmup):
        decode_all()
    decoder_times = []
    for _ in range(p.repetitions):
        started = time.perf_counter()
        decode_all()
        decoder_times.append((time.perf_counter() - started) * 1000.0)
    return encoder_times, decoder_times
