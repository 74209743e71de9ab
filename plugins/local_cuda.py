"""`cuda` and `cuda-eager`: the first CUDA GPU of the machine hat runs on.

`cuda` replays the encoder and the decoder as CUDA graphs (how a latency-critical GPU deployment runs
batch-1 decoding), queued back to back so that the host's launch delay is not timed, in four placements
of the model in memory (stable to 0.3% on an H200); `cuda-eager` launches every kernel from Python, as
HAT's scripts did, so its numbers include launch overhead and the host's jitter.
"""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl, torch_meter


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="cuda",
            description="this machine's first CUDA GPU (fp32, CUDA graphs, CUDA events, 4 placements pooled)",
            device="cuda",
            precision="fp32",
            # Four placements of 10 replays each: on an H200 where a model lands in memory moves its time
            # more than the replays of one placement differ (bench/RESULTS.md, issue 4).
            protocol=MeasurementProtocol(repetitions=10, cuda_graphs=True, instances=4),
            lat_norm=200.0,
            local=True,
            meter=torch_meter,  # PyTorch's meter, an ordinary implementation of the Meter interface
        )
    )
    register(
        Backend(
            name="cuda-eager",
            description="this machine's first CUDA GPU (fp32, eager kernel launches, CUDA events)",
            device="cuda",
            precision="fp32",
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=200.0,
            local=True,
            meter=torch_meter,  # PyTorch's meter, an ordinary implementation of the Meter interface
        )
    )
