"""Intel Xeon E5-2640 CPU, one of HAT's published devices (docs/METHOD.md §4)."""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="xeon",
            description="Intel Xeon E5-2640 CPU (fp32, PyTorch's default threads), as published by HAT",
            device="cpu",
            precision="fp32",
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=300.0,
            local=False,
            published_predictors={
                "wmt14.en-de": "wmt14ende_cpu_xeon",
                "wmt14.en-fr": "wmt14enfr_cpu_xeon",
            },
        )
    )
