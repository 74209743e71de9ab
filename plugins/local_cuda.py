"""`cuda`: the first CUDA GPU of the machine hat runs on."""

from hat_cli.hardware import Backend, MeasurementProtocol, hookimpl


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="cuda",
            description="this machine's first CUDA GPU (fp32, CUDA events)",
            device="cuda",
            precision="fp32",
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=200.0,
            local=True,
        )
    )
