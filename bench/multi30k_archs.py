"""The architectures the Multi30k benchmarks train, written as HAT YAML files into one directory.

    python bench/multi30k_archs.py OUT_DIR

largest.yml / smallest.yml: the Multi30k space's extremes. Plain Transformers (uniform layers, standard
encoder-decoder attention, the space's 6 encoder layers), scaled down by decoder depth and by width:
plain{1,2,3,6}.yml are 512 wide (FFN 2048, 8 heads), w384d{1,2,3}.yml 384 wide (FFN 2048, 8 heads) and
w256d{1,2,3}.yml 256 wide (FFN 1024, 4 heads).
"""

from __future__ import annotations

import sys
from pathlib import Path

from hat_cli.model.space import SearchSpace, SubTransformerConfig


def plain(width: int, ffn: int, heads: int, depth: int) -> SubTransformerConfig:
    return SubTransformerConfig.from_mapping({
        "encoder-embed-dim-subtransformer": width, "decoder-embed-dim-subtransformer": width,
        "encoder-ffn-embed-dim-all-subtransformer": [ffn] * 6, "decoder-ffn-embed-dim-all-subtransformer": [ffn] * depth,
        "encoder-layer-num-subtransformer": 6, "decoder-layer-num-subtransformer": depth,
        "encoder-self-attention-heads-all-subtransformer": [heads] * 6,
        "decoder-self-attention-heads-all-subtransformer": [heads] * depth,
        "decoder-ende-attention-heads-all-subtransformer": [heads] * depth,
        "decoder-arbitrary-ende-attn-all-subtransformer": [-1] * depth,
    })


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.builtin("multi30k")
    space.largest().save_yaml(out / "largest.yml")
    space.smallest().save_yaml(out / "smallest.yml")
    for depth in (1, 2, 3, 6):
        plain(512, 2048, 8, depth).save_yaml(out / f"plain{depth}.yml")
    for depth in (1, 2, 3):
        plain(384, 2048, 8, depth).save_yaml(out / f"w384d{depth}.yml")
        plain(256, 1024, 4, depth).save_yaml(out / f"w256d{depth}.yml")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
