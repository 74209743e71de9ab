"""`onnxruntime`: this machine's CPU, each architecture exported to ONNX and run by ONNX Runtime's CPU
execution provider, timed with HAT's protocol. Needs the extra `pip install 'hat-cli[onnx]'`; without it the
backend is still listed and says how to install it."""

import importlib.util

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl, onnxruntime_meter


@hookimpl
def register_hardware(register):
    # find_spec looks for the packages without importing them, so `hat hw list` stays fast.
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    register(
        Backend(
            name="onnxruntime",
            description="this machine's CPU through ONNX Runtime (CPU execution provider, fp32, ORT's default threads)",
            device="cpu",
            precision="fp32",
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=300.0,
            local=True,
            meter=onnxruntime_meter,
            runtime="onnxruntime",
            unavailable=(f"{' and '.join(missing)} not installed; install with `pip install 'hat-cli[onnx]'`" if missing else None),
        )
    )
