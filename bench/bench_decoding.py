"""Benchmark `hat test`'s batched beam search at WMT scale (run on one H200 by the lead).

Data: newstest2014 En->De (3003 sentences) from ../shared/data/wmt-newstest, Moses-tokenized (sacremoses)
and BPE'd with ../shared/data/wmt16-en-de-bpe32k/bpe.32000 (subword-nmt), binarized with a joint
dictionary padded to 32768 entries (the recipe's vocabulary size, so the output projection costs what
it really costs). Model: the largest `space0` SubTransformer (compact, shared 32768 embeddings) with
random weights unless --model DIR gives a trained one. A random model almost never emits EOS, so its
output length is capped at ``--max-len-a * src_len + --max-len-b`` (default 1.0 * src + 5, roughly the
length of a real translation; a trained model uses HAT's 0 * src + 200 and stops by itself).

Measured in the same run (translation only; loading, scoring excluded; CUDA synchronised):
- ours: batched beam 4 / lenpen 0.6 over the incremental cache, 128 sentences per batch (HAT's setting),
  fp32 and bf16 weights, plus bf16 with a large token budget per batch;
- baselines: the same search recomputing the whole prefix every step (no cache), and the cached search
  one sentence at a time (the per-sentence loop the batched code replaces), on a subset;
- agreement: identical best hypotheses between cached and recomputed search (fp32), and bf16 vs fp32.
With --profile, a torch.profiler table of one batch goes to --out/profile.txt.

    python bench/bench_decoding.py --out bench/out/decoding
Prints a compact table and writes results.json to --out.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (results.json, profile.txt, cached data)")
    p.add_argument("--model", default=None, help="a trained model directory (default: a random space0 SubTransformer)")
    p.add_argument("--arch", choices=("largest", "smallest"), default="largest", help="which random space0 SubTransformer")
    p.add_argument("--device", default=None, help="default: cuda if available")
    p.add_argument("--sentences", type=int, default=None, help="translate only the first N sentences")
    p.add_argument("--baseline-sentences", type=int, default=256, help="sentences for the slow baselines")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--lenpen", type=float, default=0.6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--big-max-tokens", type=int, default=16384, help="token budget of the large-batch bf16 run")
    p.add_argument("--max-len-a", type=float, default=None)
    p.add_argument("--max-len-b", type=int, default=None)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mini", action="store_true", help="CPU-sized run (few sentences, small baselines)")
    args = p.parse_args(argv)
    if args.mini:
        args.sentences = args.sentences or 8
        args.baseline_sentences = min(args.baseline_sentences, 4)
        args.batch_size = min(args.batch_size, 4)
        args.big_max_tokens = min(args.big_max_tokens, 512)
        args.arch = "smallest"
    return args


def prepare_newstest2014(work: Path):
    """Binarized newstest2014 en->de in fairseq layout under work/data (cached between runs)."""
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.indexed import write_indexed

    data_dir = work / "data"
    if (data_dir / "test.en-de.de.idx").exists():
        return data_dir
    from sacremoses import MosesTokenizer
    from subword_nmt.apply_bpe import BPE

    with open(SHARED / "wmt16-en-de-bpe32k" / "bpe.32000", encoding="utf-8") as handle:
        bpe = BPE(handle)
    bped = {}
    for lang in ("en", "de"):
        raw = gzip.decompress((SHARED / "wmt-newstest" / "en-de" / f"newstest2014.{lang}.gz").read_bytes()).decode("utf-8").splitlines()
        tok = MosesTokenizer(lang=lang)
        bped[lang] = [bpe.process_line(tok.tokenize(line, return_str=True, escape=True, aggressive_dash_splits=True)) for line in raw]
    dictionary = Dictionary.build(bped["en"] + bped["de"], padding_factor=1)
    filler = 0
    while len(dictionary) < 32768:
        dictionary.add_symbol(f"madeupword{filler:04d}", 0)
        filler += 1
    data_dir.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        dictionary.save(data_dir / f"dict.{lang}.txt")
        write_indexed(data_dir / f"test.en-de.{lang}", [dictionary.encode_line(line) for line in bped[lang]], len(dictionary))
    return data_dir


class Head:
    """The first n sentences of a ParallelData (same dictionaries)."""

    def __init__(self, data, n):
        import copy

        self.view = copy.copy(data)
        self.view.src, self.view.tgt = _HeadSet(data.src, n), _HeadSet(data.tgt, n)


class _HeadSet:
    def __init__(self, ds, n):
        self.ds, self.sizes = ds, ds.sizes[:n]

    def __len__(self):
        return len(self.sizes)

    def __getitem__(self, i):
        return self.ds[i]

    def padded(self, indices, pad: int, left: bool = False):
        return self.ds.padded(indices, pad, left=left)  # the first n sentences: indices are the dataset's own


def main(argv=None):
    args = parse_args(argv)
    import torch

    from hat_cli.data.batching import collate, load_split
    from hat_cli.model.decoding import SearchSettings, search
    from hat_cli.evaluation.translate import sentence_batches, translate
    from hat_cli.model.transformer import TransformerModel, extract_subtransformer
    from hat_cli.model.space import SearchSpace

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (as HAT tested)
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    data = load_split(prepare_newstest2014(out), "test", "en", "de")
    if args.sentences:
        data = Head(data, args.sentences).view
    if args.model:
        from hat_cli.model.directory import load_model

        model, _ = load_model(args.model)
        trained = True
    else:
        torch.manual_seed(args.seed)
        space = SearchSpace.builtin("space0")
        super_model = TransformerModel.supertransformer(space.shape, len(data.src_dict), len(data.tgt_dict), True)
        arch = space.largest(arbitrary=-1) if args.arch == "largest" else space.smallest(arbitrary=-1)
        model = extract_subtransformer(super_model, arch)
        del super_model
        trained = False
    a = args.max_len_a if args.max_len_a is not None else (0.0 if trained else 1.0)
    b = args.max_len_b if args.max_len_b is not None else (200 if trained else 5)
    settings = SearchSettings(beam=args.beam, lenpen=args.lenpen, max_len_a=a, max_len_b=b)
    params = sum(p.numel() for p in model.parameters())
    src_tokens = int(sum(data.src_sizes))

    def run(label, dtype, batches, subset=data, incremental=True, per_sentence=False):
        m = model.to(device=device, dtype=dtype).eval()
        # warm-up on one batch (kernels, allocator)
        search(m, collate(subset, batches[0]).src_tokens.to(device), None, settings)
        sync()
        started = time.perf_counter()
        if per_sentence:
            import numpy as np

            single = [np.array([i]) for b in batches for i in b]
            hyps, generated = translate(m, subset, single, None, settings, device)
        elif incremental:
            hyps, generated = translate(m, subset, batches, None, settings, device)
        else:
            hyps, generated = _translate_without_cache(m, subset, batches, settings, device)
        sync()
        seconds = time.perf_counter() - started
        n = len(subset)
        row = {
            "run": label,
            "sentences": n,
            "seconds": round(seconds, 3),
            "sentences_per_s": round(n / seconds, 1),
            "tokens_per_s": round(generated / seconds, 1),
            "generated_tokens": generated,
        }
        print(f"{label:44s} {n:5d} sent {seconds:8.2f}s {n / seconds:9.1f} sent/s {generated / seconds:10.0f} tok/s", flush=True)
        return row, hyps

    rows = []
    full_batches = sentence_batches(data, args.batch_size, None)
    row_fp32, hyps_fp32 = run(f"ours fp32, batch {args.batch_size}", torch.float32, full_batches)
    rows.append(row_fp32)
    half = torch.bfloat16 if cuda else torch.float32  # bf16 matmuls on a CPU say nothing about a GPU
    tag = "bf16" if cuda else "fp32"
    row_bf16, hyps_bf16 = run(f"ours {tag}, batch {args.batch_size}", half, full_batches)
    rows.append(row_bf16)
    big = sentence_batches(data, None, args.big_max_tokens)
    row_big, _ = run(f"ours {tag}, max-tokens {args.big_max_tokens}", half, big)
    rows.append(row_big)

    sub = Head(data, min(args.baseline_sentences, len(data))).view
    sub_batches = sentence_batches(sub, args.batch_size, None)
    row_sub, hyps_sub = run(f"ours fp32, batch {args.batch_size} (subset)", torch.float32, sub_batches, subset=sub)
    row_nocache, hyps_nocache = run("baseline: no cache, fp32 (subset)", torch.float32, sub_batches, subset=sub, incremental=False)
    row_single, _ = run("baseline: one sentence at a time, fp32 (subset)", torch.float32, sub_batches, subset=sub, per_sentence=True)
    rows += [row_sub, row_nocache, row_single]

    same_cache = sum(x == y for x, y in zip(hyps_sub, hyps_nocache)) / len(hyps_sub)
    same_bf16 = sum(x == y for x, y in zip(hyps_fp32, hyps_bf16)) / len(hyps_fp32)
    summary = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "model": args.model or f"random {args.arch} space0 SubTransformer (compact)",
        "parameters": params,
        "vocabulary": len(data.tgt_dict),
        "source_tokens": src_tokens,
        "settings": {"beam": args.beam, "lenpen": args.lenpen, "max_len_a": a, "max_len_b": b},
        "rows": rows,
        "speedup_vs_no_cache": round(row_nocache["seconds"] / row_sub["seconds"], 2),
        "speedup_vs_per_sentence": round(row_single["seconds"] / row_sub["seconds"], 2),
        f"speedup_{tag}_vs_fp32": round(row_fp32["seconds"] / row_bf16["seconds"], 2),
        f"speedup_big_batches_{tag}_vs_fp32_batch": round(row_fp32["seconds"] / row_big["seconds"], 2),
        "identical_best_hypotheses_cache_vs_recompute_fp32": round(same_cache, 4),
        f"identical_best_hypotheses_{tag}_vs_fp32": round(same_bf16, 4),
    }
    print()
    print(f"device {summary['device']}; {params / 1e6:.1f}M parameters, vocabulary {summary['vocabulary']}; "
          f"beam {args.beam}, lenpen {args.lenpen}, max_len {a}*src+{b}")
    print(f"speed-up of the cache over recompute: {summary['speedup_vs_no_cache']}x; over one-at-a-time: "
          f"{summary['speedup_vs_per_sentence']}x; {tag} over fp32: {summary[f'speedup_{tag}_vs_fp32']}x; "
          f"large {tag} batches over HAT's fp32 {args.batch_size}-sentence batches: "
          f"{summary[f'speedup_big_batches_{tag}_vs_fp32_batch']}x")
    print(f"identical best hypotheses: cache vs recompute {same_cache:.2%}, {tag} vs fp32 {same_bf16:.2%}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        m = model.to(device=device, dtype=half).eval()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            search(m, collate(data, full_batches[len(full_batches) // 2]).src_tokens.to(device), None, settings)
            sync()
        sort = "cuda_time_total" if cuda else "cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=25)
        (out / "profile.txt").write_text(table + "\n")
        summary["profile"] = str(out / "profile.txt")
        print(f"profile of one {tag} batch: {out / 'profile.txt'}")

    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")


def _translate_without_cache(model, data, batches, settings, device):
    """translate() with the full-recompute search (the reference the cache replaces)."""
    from hat_cli.data.batching import collate
    from hat_cli.model.decoding import beam_search

    hyps = [None] * len(data)
    generated = 0
    for indices in batches:
        batch = collate(data, indices)
        best = beam_search(model, batch.src_tokens.to(device), None, settings, incremental=False).best()
        for sentence, tokens in zip(batch.ids.tolist(), best):
            hyps[sentence] = tokens
            generated += len(tokens) + 1
    return hyps, generated


if __name__ == "__main__":
    main()
