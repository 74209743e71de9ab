"""An example hardware plugin for hat, installable on its own (`pip install -e examples/hat-hw-example`).

It registers `cpu1`: this machine's CPU restricted to one thread, the way a phone-class or embedded CPU
is usually benchmarked. Copy this package to add your own device.
"""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="cpu1",
            description="this machine's CPU with one thread (fp32), from the hat-hw-example plugin",
            device="cpu",
            threads=1,
            precision="fp32",
            protocol=MeasurementProtocol(warmup=3, repetitions=10),
            lat_norm=300.0,
            local=True,
        )
    )
