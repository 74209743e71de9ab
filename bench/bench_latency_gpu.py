"""`--hw cuda` end to end on one GPU (the H200): 300 samples, fit, 100 fresh, repeatability.

    python bench/bench_latency_gpu.py --out /tmp/bench_latency_gpu                      # WMT'14 En-De shape
    python bench/bench_latency_gpu.py --task iwslt14.de-en --hat-mlp --out DIR

Resumable: measured rows live in OUT/train.csv and OUT/fresh.csv; run the same command again to continue.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_latency_common import parse, run  # noqa: E402

if __name__ == "__main__":
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_latency_gpu.py needs a CUDA GPU")
    run(parse("cuda", "wmt14.en-de"))
