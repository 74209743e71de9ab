"""`remote`: a device running `hat latency-server` (a Raspberry Pi, a phone-class board, a GPU box),
reached over HTTP: `--hw remote --remote http://HOST:PORT --backend NAME` (URL also from $HAT_REMOTE,
token from $HAT_LATENCY_TOKEN). Only architectures and the timed shape travel."""

from hat_cli.latency.backends import Backend, hookimpl, remote_meter


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="remote",
            description="a device running `hat latency-server`, measured with its --backend (its protocol, its runtime)",
            device="remote",
            meter=remote_meter,
            runtime="http",
            lat_norm=300.0,
            local=True,  # the measurements are the device's own, not a proxy
        )
    )
