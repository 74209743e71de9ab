"""Parallel binarized data and fairseq-style token-bucketed batches.

``load_split`` opens ``{split}.{src}-{tgt}.{lang}.bin/.idx`` with ``dict.{lang}.txt`` (fairseq's
names), ``token_batches`` groups length-sorted sentences under a padding-aware token budget
(``max(len) * n <= max_tokens``, like ``batch_by_size``), ``collate`` pads them into tensors
(source left-padded, target right-padded, ``prev_output_tokens`` = target with EOS moved to the front).
torch is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hat_cli.data.dictionary import Dictionary
from hat_cli.data.indexed import IndexedDataset, dataset_exists
from hat_cli.core.errors import HatError


@dataclass
class ParallelData:
    src: IndexedDataset
    tgt: IndexedDataset
    src_dict: Dictionary
    tgt_dict: Dictionary
    src_lang: str
    tgt_lang: str
    split: str = ""

    def __len__(self) -> int:
        return len(self.src)

    @property
    def src_sizes(self) -> np.ndarray:
        return self.src.sizes

    @property
    def tgt_sizes(self) -> np.ndarray:
        return self.tgt.sizes

    def batches(self, max_tokens: int, shuffle: bool = False, seed: int = 1, epoch: int = 1,
                required_batch_size_multiple: int = 8, max_positions: int | None = None) -> Iterator["Batch"]:
        """Collated batches in the order ``token_batches`` gives."""
        for indices in token_batches(self.src_sizes, self.tgt_sizes, max_tokens, shuffle, seed, epoch,
                                     required_batch_size_multiple, max_positions):
            yield collate(self, indices)


def split_prefix(data_dir: str | Path, split: str, src_lang: str, tgt_lang: str, lang: str) -> Path:
    return Path(data_dir) / f"{split}.{src_lang}-{tgt_lang}.{lang}"


def load_split(data_dir: str | Path, split: str, src_lang: str, tgt_lang: str) -> ParallelData:
    data_dir = Path(data_dir)
    src_prefix = split_prefix(data_dir, split, src_lang, tgt_lang, src_lang)
    tgt_prefix = split_prefix(data_dir, split, src_lang, tgt_lang, tgt_lang)
    for prefix in (src_prefix, tgt_prefix):
        if not dataset_exists(prefix):
            raise HatError(
                f"No binarized '{split}' data at {prefix}.bin/.idx; run `hat data --task ...` first "
                f"or point --data-dir at a fairseq data directory."
            )
    src, tgt = IndexedDataset(src_prefix), IndexedDataset(tgt_prefix)
    if len(src) != len(tgt):
        raise HatError(f"'{split}' has {len(src)} {src_lang} sentences but {len(tgt)} {tgt_lang} sentences in {data_dir}.")
    return ParallelData(
        src=src,
        tgt=tgt,
        src_dict=Dictionary.load(data_dir / f"dict.{src_lang}.txt"),
        tgt_dict=Dictionary.load(data_dir / f"dict.{tgt_lang}.txt"),
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        split=split,
    )


def ordered_indices(src_sizes: np.ndarray, tgt_sizes: np.ndarray, shuffle: bool, seed: int) -> np.ndarray:
    """fairseq's order: (optionally) a seeded permutation, then stable sorts by target then source length."""
    n = len(src_sizes)
    indices = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    indices = indices[np.argsort(np.asarray(tgt_sizes)[indices], kind="stable")]
    return indices[np.argsort(np.asarray(src_sizes)[indices], kind="stable")]


def token_batches(
    src_sizes: np.ndarray,
    tgt_sizes: np.ndarray,
    max_tokens: int,
    shuffle: bool = False,
    seed: int = 1,
    epoch: int = 1,
    required_batch_size_multiple: int = 8,
    max_positions: int | None = None,
) -> list[np.ndarray]:
    """Index arrays of length-bucketed batches whose padded size ``max(len) * n`` stays within ``max_tokens``.

    With ``shuffle`` the tie order inside equal lengths depends on ``seed`` and the batch order on
    ``(seed, epoch)``; without it batches come shortest first (evaluation). Batch sizes are rounded
    down to ``required_batch_size_multiple`` when that keeps a batch non-empty (as fairseq does).
    Sentences longer than ``max_positions`` are dropped.
    """
    src_sizes = np.asarray(src_sizes, dtype=np.int64)
    tgt_sizes = np.asarray(tgt_sizes, dtype=np.int64)
    if len(src_sizes) != len(tgt_sizes):
        raise HatError(f"Source and target have different sentence counts ({len(src_sizes)} vs {len(tgt_sizes)}).")
    if max_tokens <= 0:
        raise HatError(f"max_tokens must be positive (got {max_tokens}).")
    indices = ordered_indices(src_sizes, tgt_sizes, shuffle, seed)
    lengths = np.maximum(src_sizes, tgt_sizes)
    if max_positions is not None:
        indices = indices[lengths[indices] <= max_positions]
    too_long = lengths[indices] > max_tokens
    if too_long.any():
        worst = int(indices[np.argmax(lengths[indices])])
        raise HatError(
            f"Sentence {worst} has {int(lengths[worst])} tokens, more than max_tokens={max_tokens}; "
            f"raise max_tokens or set max_positions to drop such sentences."
        )
    batches = _greedy_batches(indices, lengths[indices].tolist(), max_tokens, max(1, required_batch_size_multiple))
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def _greedy_batches(indices: np.ndarray, lengths: list[int], max_tokens: int, multiple: int) -> list[np.ndarray]:
    batches: list[np.ndarray] = []
    start = 0  # the current batch is indices[start:pos]
    longest = 0
    n = len(lengths)
    pos = 0
    while pos < n:
        length = lengths[pos]
        candidate = max(longest, length)
        size = pos - start
        if size > 0 and (size + 1) * candidate > max_tokens:
            # Close the batch, rounded down to a multiple; the remainder starts the next one.
            keep = max(multiple * (size // multiple), size % multiple)
            batches.append(indices[start : start + keep])
            start += keep
            longest = max(lengths[start:pos], default=0)
            continue
        longest = candidate
        pos += 1
    if start < n:
        batches.append(indices[start:n])
    return batches


@dataclass
class Batch:
    """One padded batch (torch tensors); ``ids`` are the sentence indices within the split."""

    ids: Any
    src_tokens: Any
    src_lengths: Any
    prev_output_tokens: Any
    target: Any
    ntokens: int
    nsentences: int

    def to(self, device: Any) -> "Batch":
        return Batch(
            ids=self.ids,
            src_tokens=self.src_tokens.to(device, non_blocking=True),
            src_lengths=self.src_lengths.to(device, non_blocking=True),
            prev_output_tokens=self.prev_output_tokens.to(device, non_blocking=True),
            target=self.target.to(device, non_blocking=True),
            ntokens=self.ntokens,
            nsentences=self.nsentences,
        )


def collate(data: ParallelData, indices: np.ndarray | list[int]) -> Batch:
    """Pad the sentences ``indices`` of ``data`` into a ``Batch``, longest source first (like fairseq)."""
    import torch

    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise HatError("Cannot collate an empty batch.")
    src_lengths = data.src_sizes[indices]
    order = np.argsort(-src_lengths, kind="stable")
    indices = indices[order]
    eos = data.tgt_dict.eos()
    pad_src, pad_tgt = data.src_dict.pad(), data.tgt_dict.pad()
    tgt_lengths = data.tgt_sizes[indices]
    target = data.tgt.padded(indices, pad_tgt, left=False)
    rows = np.arange(len(indices))
    if np.any(tgt_lengths == 0) or np.any(target[rows, np.maximum(tgt_lengths - 1, 0)] != eos):
        raise HatError(f"A target sentence of split '{data.split}' does not end with </s>; the data is not fairseq-binarized text.")
    # prev_output_tokens: EOS first, then the target without its final EOS (teacher forcing input).
    shifted = np.full_like(target, pad_tgt)
    shifted[:, 0] = eos
    shifted[:, 1:] = target[:, :-1]
    cols = np.arange(target.shape[1])[None, :]
    shifted = np.where(cols < tgt_lengths[:, None], shifted, pad_tgt)
    return Batch(
        ids=torch.from_numpy(indices.copy()),
        src_tokens=torch.from_numpy(data.src.padded(indices, pad_src, left=True)),
        src_lengths=torch.from_numpy(src_lengths[order].astype(np.int64)),
        prev_output_tokens=torch.from_numpy(shifted),
        target=torch.from_numpy(target),
        ntokens=int(tgt_lengths.sum()),
        nsentences=len(indices),
    )
