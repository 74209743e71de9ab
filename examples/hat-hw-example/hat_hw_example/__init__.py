"""An example hardware plugin for hat, installable on its own (`pip install -e examples/hat-hw-example`).

It registers `cpu1`: this machine's CPU restricted to one thread, the way a phone-class or embedded CPU is
usually benchmarked, measured by *its own* meter below: the plugin decides how the model runs and how it
is timed, hat only hands it the architecture, the timed shape and the protocol. Copy this package to add
your own device: replace ``SingleThreadMeter.measure`` with a call into your runtime (TFLite, a vendor SDK,
a board over a serial line) and keep the return value, the encoder and decoder runs you kept.
"""

from __future__ import annotations

import platform
import time

from hat_cli.latency.backends import Backend, MeasurementProtocol, Meter, Timings, hookimpl, trimmed_values


class SingleThreadMeter(Meter):
    """HAT's protocol in eager PyTorch on one thread, timed with the process's CPU clock.

    CPU time rather than wall time: on a shared machine a single-threaded model's CPU time is what the
    same work costs on an idle core, while its wall time also counts the other processes it waited for.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def describe(self) -> dict[str, str]:
        import torch

        return {"device": f"cpu {platform.machine()} 1 thread (CPU time)", "precision": "fp32", "mode": "inference",
                "threads": "1", "runtime": f"torch {torch.__version__} (hat-hw-example)"}

    def measure(self, config, shape, protocol) -> Timings:
        import torch

        from hat_cli.model.transformer import DecoderCache, TransformerModel  # the public model API; torch only when measuring

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(self.seed)
            model = TransformerModel.subtransformer(
                config, shape.super_shape, shape.src_vocab, shape.tgt_vocab, shape.share_all_embeddings).eval()
            n = shape.length
            src = torch.tensor([[protocol.eos] + [protocol.source_token] * (n - 1)])
            prev = torch.tensor([[protocol.source_token] * (n - 1) + [protocol.eos]] * protocol.beam)
            rows = torch.zeros(protocol.beam, dtype=torch.long)

            def encoder():
                return model.encode(src, config)

            def decoder():
                beams, cache = encoder_out.reorder(rows), DecoderCache()
                for step in range(1, n + 1):
                    model.decode(prev[:, :step], beams, config, cache=cache)

            with torch.inference_mode():
                encoder_out = encoder()
                encoder_runs = _cpu_times(encoder, protocol.warmup, protocol.repetitions)
                decoder_runs = _cpu_times(decoder, protocol.warmup, protocol.repetitions)
        finally:
            torch.set_num_threads(before)
        return Timings(tuple(trimmed_values(encoder_runs, protocol.trim_fraction)),
                       tuple(trimmed_values(decoder_runs, protocol.trim_fraction)))


def _cpu_times(run, warmup: int, repetitions: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repetitions):
        started = time.process_time_ns()
        run()
        times.append((time.process_time_ns() - started) / 1e6)
    return times


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="cpu1",
            description="this machine's CPU with one thread (fp32, CPU time), from the hat-hw-example plugin",
            device="cpu",
            threads=1,
            precision="fp32",
            protocol=MeasurementProtocol(warmup=3, repetitions=10),
            lat_norm=300.0,
            local=True,
            meter=lambda backend, options: SingleThreadMeter(seed=options.seed),
            runtime="pytorch (own meter)",
        )
    )
