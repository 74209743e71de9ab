"""`cpu`: the CPU of the machine hat runs on, with PyTorch's default intra-op threads."""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl, torch_meter


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="cpu",
            description="this machine's CPU (fp32, PyTorch's default threads)",
            device="cpu",
            precision="fp32",
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=300.0,
            local=True,
            meter=torch_meter,  # PyTorch's meter, an ordinary implementation of the Meter interface
        )
    )
