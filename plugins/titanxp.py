"""NVIDIA TITAN Xp GPU, one of HAT's published devices (docs/METHOD.md §4)."""

from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl


@hookimpl
def register_hardware(register):
    register(
        Backend(
            name="titanxp",
            description="NVIDIA TITAN Xp GPU (fp32, CUDA events), as published by HAT",
            device="cuda",
            precision="fp32",  # the latency datasets were fp32 (docs/METHOD.md §4.2)
            protocol=MeasurementProtocol(repetitions=20),
            lat_norm=200.0,
            local=False,
            published_predictors={
                "iwslt14.de-en": "iwslt14deen_gpu_titanxp",
                "wmt14.en-de": "wmt14ende_gpu_titanxp",
                "wmt14.en-fr": "wmt14enfr_gpu_titanxp",
                "wmt19.en-de": "wmt19ende_gpu_titanxp",
            },
        )
    )
