"""`--hw cpu` end to end: 300 measured samples, fit, 100 fresh samples, repeatability (see bench_latency_common).

    python bench/bench_latency_cpu.py --out /tmp/bench_latency_cpu            # IWSLT shape, 20 timed runs
    python bench/bench_latency_cpu.py --task wmt14.en-de --out DIR             # WMT (slower: vocab 32768)
    python bench/bench_latency_cpu.py --train 30 --fresh 10 --repeat 5 --retest 5 --repetitions 5 --out DIR   # smoke

Resumable: measured rows live in OUT/train.csv and OUT/fresh.csv; run the same command again to continue.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_latency_common import parse, run  # noqa: E402

if __name__ == "__main__":
    run(parse("cpu", "iwslt14.de-en"))
