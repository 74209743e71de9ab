"""bench_decoding.py shrunk for a 2-core CPU: 8 newstest2014 sentences in batches of 4, baselines on 4.

Same pipeline and table as the H200 run; read the ratios (cache vs recompute, batched vs one sentence
at a time), not the seconds.
    OMP_NUM_THREADS=2 python bench/bench_decoding_cpu.py --out bench/out/decoding_cpu
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decoding import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", "bench/out/decoding_cpu"]
    main(["--mini", "--device", "cpu", *argv])
