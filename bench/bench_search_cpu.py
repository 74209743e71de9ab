"""The WMT search benchmark shrunk for a 2-core CPU: a 6 x 2 search on 16 newstest2013 sentences.

Same pipeline and table as bench_search_wmt.py (vocabulary 32768, space0 shape, fp32 on CPU); only the
sizes are small, so the ratios (ours vs the HAT-like scorer) are what to read, not the seconds.
    OMP_NUM_THREADS=2 python bench/bench_search_cpu.py --out bench/out/search_cpu
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search_wmt import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", "bench/out/search_cpu"]
    main(["--mini", "--device", "cpu", *argv])
