"""Raspberry Pi 4 (ARM Cortex-A72), one of HAT's published devices (docs/METHOD.md §4)."""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="raspberrypi",
            description="Raspberry Pi 4 (ARM Cortex-A72 CPU, fp32), as published by HAT",
            device="cpu",
            precision="fp32",
            # HAT's Raspberry Pi CSVs carry non-zero stds, so they were made with more than the config's
            # 2 timed runs (docs/METHOD.md §4.2); 20 runs as for the other devices.
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=5000.0,
            local=False,
            published_predictors={
                "wmt14.en-de": "wmt14ende_cpu_raspberrypi",
                "wmt14.en-fr": "wmt14enfr_cpu_raspberrypi",
            },
        )
    )
