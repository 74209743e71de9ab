"""The architectures the Multi30k benchmarks train, written as HAT YAML files into one directory.

    python bench/multi30k_archs.py OUT_DIR [--space demo]

largest.yml / smallest.yml: the Multi30k space's extremes. Plain Transformers (uniform layers, standard
encoder-decoder attention, the space's 6 encoder layers), scaled down by decoder depth and by width:
plain{1,2,3,6}.yml are 512 wide (FFN 2048, 8 heads), w384d{1,2,3}.yml 384 wide (FFN 2048, 8 heads) and
w256d{1,2,3}.yml 256 wide (FFN 1024, 4 heads). random11.yml / random12.yml: the space's samples with seeds 11
and 12 (and random13.yml, 13). With --space demo the same names hold the demo space's counterparts (widths 64/64/32, for dry runs).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from hat_cli.model.space import SearchSpace, SubTransformerConfig


def plain(width: int, ffn: int, heads: int, depth: int, encoder_layers: int = 6) -> SubTransformerConfig:
    return SubTransformerConfig.from_mapping({
        "encoder-embed-dim-subtransformer": width, "decoder-embed-dim-subtransformer": width,
        "encoder-ffn-embed-dim-all-subtransformer": [ffn] * encoder_layers, "decoder-ffn-embed-dim-all-subtransformer": [ffn] * depth,
        "encoder-layer-num-subtransformer": encoder_layers, "decoder-layer-num-subtransformer": depth,
        "encoder-self-attention-heads-all-subtransformer": [heads] * encoder_layers,
        "decoder-self-attention-heads-all-subtransformer": [heads] * depth,
        "decoder-ende-attention-heads-all-subtransformer": [heads] * depth,
        "decoder-arbitrary-ende-attn-all-subtransformer": [-1] * depth,
    })


def main(out: Path, space_name: str = "multi30k") -> None:
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.builtin(space_name)
    space.largest().save_yaml(out / "largest.yml")
    space.smallest().save_yaml(out / "smallest.yml")
    layers = max(space.choices["encoder_layer_num"])
    if space_name == "multi30k":
        families = {"plain": (512, 2048, 8), "w384d": (384, 2048, 8), "w256d": (256, 1024, 4)}
    else:  # a dry run's stand-ins: the same names, sizes the space allows
        big, small = max(space.choices["encoder_embed_dim"]), min(space.choices["encoder_embed_dim"])
        ffn, heads = max(space.choices["encoder_ffn_embed_dim"]), max(space.choices["encoder_self_attention_heads"])
        families = {"plain": (big, ffn, heads), "w384d": (big, ffn // 2, heads), "w256d": (small, ffn // 2, heads)}
    for prefix, (width, ffn, heads) in families.items():
        for depth in (1, 2, 3, 6):
            if prefix == "plain" or depth < 6:
                if depth <= max(space.choices["decoder_layer_num"]):
                    plain(width, ffn, heads, depth, layers).validate(space).save_yaml(out / f"{prefix}{depth}.yml")
    for seed in (11, 12, 13):
        space.sample(random.Random(seed)).save_yaml(out / f"random{seed}.yml")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--space", default="multi30k")
    args = parser.parse_args()
    main(args.out, args.space)
