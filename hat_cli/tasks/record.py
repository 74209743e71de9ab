"""The task record: every fact about one translation task that the rest of hat needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from hat_cli.core.errors import HatError


@dataclass(frozen=True)
class Task:
    name: str
    src: str
    tgt: str
    space: str  # search space of the SuperTransformer: the name of configs/<space>.yml, or a YAML file
    latency_space: str  # space latency datasets are sampled from and timed with (likewise)
    dummy_length: int  # the latency/FLOPs dummy sentence: 30 tokens for WMT, 23 for IWSLT (docs/METHOD.md §4.1)
    share_all_embeddings: bool
    beam: int  # published test settings (docs/METHOD.md §7)
    lenpen: float
    zoo_key: Optional[str] = None  # the task's spelling in published model names (e.g. "wmt14ende")
    description: str = ""
    # Source and target vocabulary sizes of the model the latency protocol times (the V x D output
    # projection dominates the decoder), so a CSV's numbers do not depend on which data was prepared here.
    timed_vocab: tuple[int, int] = (32768, 32768)
    # Training defaults (TrainingConfig fields) of `hat train-super` and `hat train-sub`.
    train_super: Mapping[str, Any] = field(default_factory=dict)
    train_sub: Mapping[str, Any] = field(default_factory=dict)
    # Key of the download/preprocessing recipe in hat_cli/data/recipes.py; None = prepared from local
    # text only (`hat data --from-dir`).
    recipe: Optional[str] = None
    # The last folder of the published checkpoints' data path (args.data), read when converting them.
    original_data_dirs: tuple[str, ...] = ()

    @property
    def pair(self) -> str:
        return f"{self.src}-{self.tgt}"

    @property
    def timed_vocab_sizes(self) -> tuple[int, int]:
        """(source, target) vocabulary of the timed model: one shared table has the larger size on both sides."""
        src, tgt = self.timed_vocab
        return (max(src, tgt),) * 2 if self.share_all_embeddings else (src, tgt)

    def training_defaults(self, kind: str) -> dict[str, Any]:
        """The task's defaults for a ``super`` or ``sub`` training run."""
        if kind not in ("super", "sub"):
            raise HatError(f"Unknown training kind '{kind}'; use super or sub.")
        return dict(self.train_super if kind == "super" else self.train_sub)
