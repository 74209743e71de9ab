"""Benchmarks of `hat_cli.data` (CPU): each number is compared with a baseline measured in the same run.

- learn BPE: our subword-nmt-identical learner vs subword-nmt's own ``learn_bpe`` (same codes, checked)
- token batching: ``token_batches`` on WMT'14-sized length arrays (4.5M sentence pairs)
- collate: padded batches per second from real binarized data
- binarize: lines per second vs. plain ``Dictionary.encode_line`` in a loop
- prepare Multi30k end to end (`hat data --task multi30k.de-en --from-dir ...`)

    python bench/bench_data.py --out bench-out/data [--merges 3000] [--skip-reference]
Prints a compact table and writes results.json to --out.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def multi30k_tok_lines() -> list[str]:
    lines = []
    for lang in ("de", "en"):
        path = SHARED / "multi30k" / "tok" / f"train.lc.norm.tok.{lang}.gz"
        lines += gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    return lines


def bench_bpe(merges: int, reference: bool) -> dict:
    from hat_cli.data.bpe import codes_text, count_words, learn_bpe

    lines = multi30k_tok_lines()
    ours_s, merges_ours = timed(learn_bpe, count_words(lines), merges)
    row = {"name": f"learn BPE multi30k ({merges} merges)", "ours_s": round(ours_s, 2)}
    if reference:
        os.environ.setdefault("TQDM_DISABLE", "1")
        from subword_nmt.learn_bpe import learn_bpe as subword_nmt_learn

        out = io.StringIO()
        ref_s, _ = timed(subword_nmt_learn, io.StringIO("\n".join(lines) + "\n"), out, merges)
        row.update(baseline="subword-nmt learn_bpe", baseline_s=round(ref_s, 2), speedup=round(ref_s / ours_s, 1),
                   identical=out.getvalue() == codes_text(merges_ours))
    return row


def bench_batching() -> dict:
    from hat_cli.data.batching import token_batches

    rng = np.random.default_rng(0)
    n = 4_500_000
    src = rng.integers(2, 120, n)
    tgt = np.clip(src + rng.integers(-10, 10, n), 2, 250)
    ours_s, batches = timed(token_batches, src, tgt, 4096, True, 1, 1)
    # Baseline: the cost of just sorting the lengths (a lower bound for any bucketing).
    base_s, _ = timed(lambda: np.argsort(np.maximum(src, tgt), kind="stable"))
    return {"name": "token_batches 4.5M pairs, 4096 tokens", "ours_s": round(ours_s, 2), "baseline": "argsort only",
            "baseline_s": round(base_s, 2), "ratio": round(ours_s / base_s, 1), "batches": len(batches)}


def bench_binarize_and_collate(tmp: Path) -> list[dict]:
    from hat_cli.data.batching import collate, load_split, token_batches
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.prepare import Stages, binarize

    iwslt = SHARED / "iwslt14-de-en"
    rows = []
    for lang in ("de", "en"):
        d = Dictionary.load(iwslt / "data-bin" / f"dict.{lang}.txt")
        d.save(tmp / f"dict.{lang}.txt")
        lines = (iwslt / f"valid.{lang}").read_text(encoding="utf-8").splitlines()
        ours_s, _ = timed(binarize, lines, d, tmp / f"valid.de-en.{lang}", Stages().stage("x", None))
        base_s, _ = timed(lambda: [d.encode_line(line) for line in lines])
        rows.append({"name": f"binarize IWSLT valid.{lang} ({len(lines)} lines)", "ours_s": round(ours_s, 3),
                     "baseline": "encode_line loop", "baseline_s": round(base_s, 3), "ratio": round(ours_s / base_s, 2)})
    import torch  # noqa: F401  (imported before timing: collate's first call would otherwise pay for it)

    data = load_split(tmp, "valid", "de", "en")
    batches = token_batches(data.src_sizes, data.tgt_sizes, 4096, shuffle=True, seed=1, epoch=1)
    ours_s, _ = timed(lambda: [collate(data, b) for b in batches])
    base_s, _ = timed(lambda: [[data.src[int(i)] for i in b] + [data.tgt[int(i)] for i in b] for b in batches])
    rows.append({"name": f"collate {len(batches)} batches (4096 tokens)", "ours_s": round(ours_s, 3),
                 "baseline": "reading the arrays only", "baseline_s": round(base_s, 3), "ratio": round(ours_s / base_s, 2)})
    return rows


def bench_multi30k(tmp: Path) -> dict:
    from hat_cli.data.prepare import prepare_task

    cpu0 = time.process_time()
    wall_s, summary = timed(prepare_task, "multi30k.de-en", data_dir=tmp / "m30k", from_dir=SHARED / "multi30k" / "raw")
    return {"name": "prepare multi30k.de-en end to end", "ours_s": round(wall_s, 2),
            "main_process_cpu_s": round(time.process_time() - cpu0, 2), "stages": summary["timings"],
            "cpus": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--merges", type=int, default=3000)
    parser.add_argument("--skip-reference", action="store_true", help="do not run subword-nmt (slow)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_bpe(args.merges, not args.skip_reference))
        rows.append(bench_batching())
        rows += bench_binarize_and_collate(Path(tmp))
        rows.append(bench_multi30k(Path(tmp)))
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'benchmark':48} {'ours s':>8} {'baseline s':>11} {'ratio':>7}  baseline")
    for r in rows:
        ratio = r.get("speedup", r.get("ratio", ""))
        print(f"{r['name']:48} {r['ours_s']:>8} {r.get('baseline_s', ''):>11} {ratio!s:>7}  {r.get('baseline', '')}")
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
