"""What one search candidate's score costs on a GPU: `hat search`'s scorer on newstest2013 (random `space0` weights,
the data `bench_search_wmt.py` builds), at two batch sizes, in five variants, each adding one change: the eager
loss under autocast (as before issue 16), the compiled loss, compiled residual LayerNorms (every dimension
dynamic), the same compiled once per width (the default since the eleventh session), and pure bf16 (no
autocast: the residual stream in bf16 too).

    python bench/bench_search_scoring.py --out DIR [--candidates 8] [--max-tokens 16384 65536]

Prints ms per candidate (wall clock), GPU kernel time and kernel launches per candidate (torch profiler over half
the candidates), and writes each profile's table to DIR/prof_<max-tokens>_<loss>.txt.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


VARIANTS = {"eager": dict(fused_loss=False, compiled_norms=False),
            "compiled-loss": dict(fused_loss=True, compiled_norms=False),
            "compiled-norms": dict(fused_loss=True, compiled_norms=True, static_widths=False),
            "static-widths": dict(fused_loss=True, compiled_norms=True, static_widths=True),
            "pure-bf16": dict(fused_loss=True, compiled_norms=True, static_widths=True, pure_bf16=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    from torch.profiler import ProfilerActivity, profile

    import bench_search_wmt
    from hat_cli.data.batching import load_split
    from hat_cli.model.space import SearchSpace
    from hat_cli.model.transformer import TransformerModel
    from hat_cli.search.fitness import ValidationLoss, prepare_validation

    data = load_split(bench_search_wmt.prepare_newstest2013(args.out), "valid", "en", "de")
    space = SearchSpace.builtin("space0")
    torch.manual_seed(1)
    model = TransformerModel.supertransformer(space.shape, len(data.src_dict), len(data.tgt_dict), True).cuda().eval()
    rng = random.Random(5)
    probe = [space.sample(rng) for _ in range(args.candidates)]
    half = max(1, len(probe) // 2)
    print(f"device: {torch.cuda.get_device_name()}, {len(probe)} random space0 candidates, newstest2013 en-de")
    for size in args.max_tokens:
        valid = prepare_validation(data, size, "cuda", None)
        for loss in args.variants:
            scorer = ValidationLoss(model, valid, "bf16", **VARIANTS[loss])
            ms = bench_search_wmt.ms_per_candidate(scorer, probe, torch.cuda.synchronize)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                scorer(probe[:half])
                torch.cuda.synchronize()
            events = prof.key_averages()
            busy = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
            launches = sum(e.count for e in events if "LaunchKernel" in e.key)
            print(f"max-tokens {size}, {loss}: {ms:.1f} ms per candidate, {busy / half / 1e3:.1f} ms of kernels, "
                  f"{launches / half:.0f} launches", flush=True)
            (args.out / f"prof_{size}_{loss}.txt").write_text(events.table(sort_by="self_device_time_total", row_limit=25))


if __name__ == "__main__":
    main()
