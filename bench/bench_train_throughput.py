"""SuperTransformer training throughput of `hat train-super` (the real training loop) on one GPU.

WMT `space0` SuperTransformer, shared vocabulary of 32768, one random SubTransformer per update,
sentence lengths of real WMT text (newstest2012-2014 En-De, Moses-tokenized and BPE'd with the
WMT'16 32k codes from ../shared/data), token ids synthesised with those lengths.

Reports target tokens/s per max-tokens setting (median over logging windows after the first),
model-FLOPs utilisation (exact matmul FLOPs of the sampled SubTransformers, x3 for training),
peak memory, and a torch.profiler summary: GPU busy fraction and the top kernels.

    python bench/bench_train_throughput.py --out bench/out/throughput
    python bench/bench_train_throughput.py --max-tokens 16384 65536 131072 --updates 60 --out DIR
    # smoke test on a CPU:  --device cpu --space demo --vocab 512 --max-tokens 1024 --updates 6 --no-profile
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PEAK_BF16_TFLOPS = 790.0  # measured bf16 matmul peak of one H200 (PERFORMANCE.md); CPU runs report against it


def measured_peak_tflops(size: int = 8192, repeats: int = 20) -> float:
    """This GPU's bf16 matmul peak: the best of five timed rounds of square ``size`` products (what MFU is of)."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            a @ b
        end.record()
        end.synchronize()
        best = max(best, repeats * 2 * size**3 / (start.elapsed_time(end) / 1e3) / 1e12)
    return best


# ------------------------------------------------------------------------------------------------ lengths
def real_lengths(limit: int | None = None) -> np.ndarray:
    """(src, tgt) BPE token counts (+1 for </s>) of newstest2012-2014 En-De."""
    news = SHARED / "wmt-newstest" / "en-de"
    codes = SHARED / "wmt16-en-de-bpe32k" / "bpe.32000"
    pairs = []
    try:
        from sacremoses import MosesTokenizer
        from subword_nmt.apply_bpe import BPE

        with open(codes, encoding="utf-8") as handle:
            bpe = BPE(handle)
        tok = {"en": MosesTokenizer(lang="en"), "de": MosesTokenizer(lang="de")}

        def count(line: str, lang: str) -> int:
            return len(bpe.process_line(tok[lang].tokenize(line, return_str=True, escape=False)).split()) + 1
    except Exception as exc:  # noqa: BLE001 - fall back to a whitespace estimate, said in the output
        print(f"(BPE unavailable: {exc}; using whitespace tokens x 1.3)", file=sys.stderr)

        def count(line: str, lang: str) -> int:
            return int(len(line.split()) * 1.3) + 1

    for year in (2012, 2013, 2014):
        en = gzip.decompress((news / f"newstest{year}.en.gz").read_bytes()).decode("utf-8").splitlines()
        de = gzip.decompress((news / f"newstest{year}.de.gz").read_bytes()).decode("utf-8").splitlines()
        for s, t in zip(en, de):
            if s.strip() and t.strip():
                pairs.append((count(s, "en"), count(t, "de")))
            if limit and len(pairs) >= limit:
                return np.array(pairs, dtype=np.int64)
    return np.array(pairs, dtype=np.int64)


def write_corpus(out: Path, lengths: np.ndarray, vocab: int, n_train: int, seed: int = 0) -> None:
    """Binarized train/valid data (fairseq format) with real length pairs and random token ids."""
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.indexed import write_indexed

    d = Dictionary()
    for i in range(vocab - len(d)):
        d.add_symbol(f"w{i}", n=vocab - i)
    d.save(out / "dict.en.txt")
    d.save(out / "dict.de.txt")
    rng = np.random.default_rng(seed)
    # A tiny valid split: train() validates at its end and that should not count in the profile.
    for split, n in (("train", n_train), ("valid", min(64, len(lengths)))):
        picks = lengths[rng.integers(0, len(lengths), n)] if split == "train" else lengths[:n]
        for side, lang in ((0, "en"), (1, "de")):
            sents = []
            for length in picks[:, side]:
                ids = rng.integers(4, vocab, int(length), dtype=np.int64)
                ids[-1] = d.eos()
                sents.append(ids)
            write_indexed(out / f"{split}.en-de.{lang}", sents, len(d))


# ------------------------------------------------------------------------------------------------ FLOPs
def matmul_flops_per_target_token(cfg, shape, vocab: int, src_len: float, tgt_len: float, ratio: float) -> float:
    """Training matmul FLOPs (3 x forward) per target token of one SubTransformer.

    src_len/tgt_len: mean padded lengths (attention cost); ratio: source tokens per target token.
    Causal self-attention counts half the score matrix (what flash attention computes)."""
    q = shape.qkv_dim
    e, d = cfg.encoder_embed_dim, cfg.decoder_embed_dim
    enc = 0.0  # per source token
    for f in cfg.encoder_ffn_embed_dim:
        enc += 2 * (4 * q * e + 2 * e * f) + 2 * 2 * src_len * q
    dec = 0.0  # per target token
    for f in cfg.decoder_ffn_embed_dim:
        dec += 2 * (4 * q * d) + 2 * 2 * (tgt_len / 2) * q  # self-attention
        dec += 2 * (2 * q * d) + 2 * 2 * src_len * q  # encoder attention: q and out projections, scores
        dec += ratio * 2 * (2 * q * e)  # k/v projections of the encoder output (per source token)
        dec += 2 * (2 * d * f)
    dec += 2 * d * vocab
    return 3.0 * (dec + ratio * enc)


# ------------------------------------------------------------------------------------------------ runs
def run_train(data: Path, save: Path, args, max_tokens: int, updates: int, log_every: int, on_window=None):
    import torch

    from hat_cli.model.space import SearchSpace
    from hat_cli.tasks import Task
    from hat_cli.training.loop import TrainRun, train
    from hat_cli.training.config import resolve_training_config

    task = Task("bench.en-de", "en", "de", "space0", "latency", 30, True, 4, 0.6)
    cfg = resolve_training_config("wmt14.en-de", "super", cli_overrides=dict(
        max_updates=updates, warmup_updates=min(10, updates - 1), max_tokens=max_tokens, update_freq=args.update_freq,
        precision=args.precision, log_every=log_every, validate_every=10**9, save_interval_updates=10**9, keep_last=1,
        compiled_loss=False if args.eager_loss else None, compiled_norms=args.compiled_norms,
        sampling=args.sampling, distill=args.distill))
    space = SearchSpace.from_yaml(args.space) if args.space.endswith((".yml", ".yaml")) else SearchSpace.builtin(args.space)
    run = TrainRun(task=task, kind="super", data_dir=data, save_dir=save, config=cfg, space=space, device=args.device,
                   resume=False)
    windows = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    def progress(p):
        if p.valid_loss is None:
            windows.append(p.tokens_per_second)
            if on_window is not None:
                on_window(p.updates)

    result = train(run, progress)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return result, windows, cfg, space, peak


def mean_flops(space, cfg, data_dir: Path, vocab: int, updates: int) -> float:
    """Average training FLOPs per target token over the SubTransformers of updates 0..updates-1."""
    from hat_cli.data.indexed import IndexedDataset

    src = IndexedDataset(data_dir / "train.en-de.en").sizes.astype(np.float64)
    tgt = IndexedDataset(data_dir / "train.en-de.de").sizes.astype(np.float64)
    # length-bucketed batches pad little: mean lengths weighted by tokens approximate the padded lengths
    src_len, tgt_len = float((src * src).sum() / src.sum()), float((tgt * tgt).sum() / tgt.sum())
    ratio = float(src.sum() / tgt.sum())
    from hat_cli.training.sampling import update_architectures

    # Every SubTransformer of an update (several with the sandwich rule) trains on the update's tokens.
    flops = [sum(matmul_flops_per_target_token(config, space.shape, vocab, src_len, tgt_len, ratio)
                 for config in update_architectures(space, cfg.sampling, u, cfg.arch_seed_offset, cfg.sandwich_random))
             for u in range(updates)]
    return float(np.mean(flops))


def profile_updates(data: Path, save: Path, args, max_tokens: int) -> dict:
    """torch.profiler over ``--profile-updates`` updates in the middle of a run: the trace starts after the
    third update and stops after the last profiled one, so model set-up, the final validation and the
    saving of the model (a device-to-host copy of every tensor) stay out of it."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    first, last = 3, 3 + args.profile_updates
    prof = profile(activities=activities)
    times = {}

    def on_update(updates: int) -> None:  # called after each update's host sync (log_every=1)
        if updates == first:
            prof.start()
            times["start"] = time.perf_counter()
        elif updates == last:
            times["stop"] = time.perf_counter()
            prof.stop()

    run_train(data, save, args, max_tokens, last + 1, 1, on_update)
    wall = times["stop"] - times["start"]
    from torch.autograd import DeviceType

    events = prof.key_averages()
    attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    kernels = sorted((e for e in events if e.device_type == DeviceType.CUDA), key=lambda e: getattr(e, attr), reverse=True)
    busy_us = sum(getattr(e, attr) for e in kernels)
    top = [{"name": e.key[:70], "device_ms": getattr(e, attr) / 1e3, "calls": e.count} for e in kernels[:12]]
    launches = sum(e.count for e in events if "LaunchKernel" in e.key)
    syncs = sum(e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "aten::item", "aten::_local_scalar_dense"))
    table = events.table(sort_by=attr if kernels else "self_cpu_time_total", row_limit=20)
    return {"updates": args.profile_updates, "wall_s": wall, "gpu_busy_ms": busy_us / 1e3,
            "gpu_busy_fraction_of_train": (busy_us / 1e6) / max(wall, 1e-9), "kernel_launches": launches, "host_syncs": syncs,
            "top": top, "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[16384, 65536, 131072])
    parser.add_argument("--update-freq", type=int, default=1)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--space", default="space0")
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--train-pairs", type=int, default=400_000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--profile-updates", type=int, default=6)
    parser.add_argument("--profile-max-tokens", type=int, default=65536)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--sampling", default="random", choices=["random", "sandwich"],
                        help="SubTransformers per update: HAT's one random (default) or the sandwich rule")
    parser.add_argument("--distill", type=float, default=0.0, help="with --sampling sandwich: in-place distillation weight")
    parser.add_argument("--eager-loss", action="store_true",
                        help="training's compiled_loss off (by default it is on for GPUs): the eager fp32 loss, for an A/B")
    parser.add_argument("--compiled-norms", action="store_true",
                        help="training's compiled_norms on (off by default): the residual LayerNorm steps compiled")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 peak for MFU (default: measured on this GPU; the H200's 790 on a CPU)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    t0 = time.perf_counter()
    lengths = real_lengths()
    work = Path(tempfile.mkdtemp(prefix="hat-bench-"))
    data = work / "data"
    data.mkdir()
    write_corpus(data, lengths, args.vocab, args.train_pairs)
    print(f"corpus: {len(lengths)} real length pairs (mean src {lengths[:, 0].mean():.1f}, tgt {lengths[:, 1].mean():.1f} "
          f"tokens), {args.train_pairs} synthetic pairs written in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    if args.peak_tflops is None:
        args.peak_tflops = measured_peak_tflops() if device != "cpu" else PEAK_BF16_TFLOPS
    print(f"bf16 peak for MFU: {args.peak_tflops:.0f} TFLOP/s ({'measured' if device != 'cpu' else 'nominal'})",
          file=sys.stderr)
    rows = []
    for max_tokens in args.max_tokens:
        result, windows, cfg, space, peak = run_train(data, work / f"save-{max_tokens}", args, max_tokens, args.updates,
                                                      args.log_every)
        steady = windows[1:] or windows
        tps = statistics.median(steady)
        flops = mean_flops(space, cfg, data, args.vocab, args.updates)
        mfu = tps * flops / (args.peak_tflops * 1e12)
        rows.append({"max_tokens": max_tokens, "update_freq": args.update_freq, "precision": result.precision,
                     "tokens_per_s": tps, "tokens_per_s_all": result.tokens_per_second, "windows": windows,
                     "train_flops_per_token": flops, "tflops": tps * flops / 1e12, "mfu": mfu, "peak_gib": peak,
                     "updates": result.updates})
        print(f"max-tokens {max_tokens}: {tps / 1e3:.1f}k target tok/s, MFU {mfu:.1%}", file=sys.stderr)

    prof = None
    if not args.no_profile:
        prof = profile_updates(data, work / "save-profile", args, args.profile_max_tokens)
        (args.out / "profile.txt").write_text(prof.pop("table"))

    header = f"{'max-tokens':>10} {'upd-freq':>8} {'prec':>5} {'target tok/s':>13} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>8}"
    variant = "eager loss" if args.eager_loss or device == "cpu" else "compiled loss"
    if args.sampling != "random":
        variant += f", {args.sampling} sampling, distill {args.distill:g}"
    lines = [f"device: {device}, space {args.space}, vocab {args.vocab}, {args.updates} updates per setting "
             f"(median of {args.log_every}-update windows after the first), {variant}, "
             f"MFU of {args.peak_tflops:.0f} TFLOP/s bf16", header]
    for r in rows:
        lines.append(f"{r['max_tokens']:>10} {r['update_freq']:>8} {r['precision']:>5} {r['tokens_per_s'] / 1e3:>12.1f}k "
                     f"{r['tflops']:>8.1f} {r['mfu']:>6.1%} {r['peak_gib']:>8.1f}")
    if prof is not None:
        lines.append(f"profile ({prof['updates']} updates, max-tokens {args.profile_max_tokens}): GPU busy "
                     f"{prof['gpu_busy_fraction_of_train']:.0%} of training time, {prof['kernel_launches']} kernel launches, "
                     f"{prof['host_syncs']} host syncs (.item/synchronize)")
        for k in prof["top"][:8]:
            lines.append(f"  {k['device_ms']:>9.1f} ms {k['calls']:>6}x  {k['name']}")
    text = "\n".join(lines)
    print(text)
    (args.out / "throughput.txt").write_text(text + "\n")
    (args.out / "throughput.json").write_text(json.dumps({"device": device, "rows": rows, "profile": prof}, indent=2))


if __name__ == "__main__":
    main()
