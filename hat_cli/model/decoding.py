"""Greedy and beam search over the incremental decoder, as fairseq 0.8's SequenceGenerator does it.

HAT's ``generate.py`` is fairseq 0.8's beam search (docs/METHOD.md §7): per step, the top ``2·beam`` candidates
of all beams of a sentence (only beam 0 at the first step); end-of-sentence candidates among the first
``beam`` are *finalised* (score = summed log-probabilities / length**lenpen, length counting the EOS) until
a sentence holds ``beam`` finished hypotheses; the first ``beam`` non-EOS candidates continue. A sentence
leaves the batch as soon as it is finished; at ``max_len = a·src_len + b`` (``src_len`` = the padded batch
width, as fairseq) only EOS is allowed, before ``min_len`` EOS is forbidden, ``<pad>`` never.

Everything runs batched over all sentences and beams: the per-sentence bookkeeping of fairseq's Python
loops is done with tensor indexing, the only host synchronisations are the "did anything finish" checks.
The decoder keeps key/value caches (``DecoderCache``): self-attention keys grow by one position per step and
are reordered as beams are selected; the encoder-attention keys are computed once and, like the encoder
output, only need reordering when finished sentences leave the batch (beams of a sentence share them).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from hat_cli.model.transformer import DecoderCache

BOS, PAD, EOS, UNK = 0, 1, 2, 3
NEG_INF = -math.inf


@dataclass
class SearchSettings:
    """fairseq 0.8 generation defaults; HAT's test.sh adds beam/lenpen per task (docs/METHOD.md §7)."""

    beam: int = 5
    lenpen: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    unk_penalty: float = 0.0
    normalize_scores: bool = True
    max_positions: int = 1024  # the decoder's max_target_positions; max_len stays below it

    def max_len(self, src_len: int) -> int:
        # fairseq: min(int(a * src_len + b), max_decoder_positions - 1), src_len = padded batch width.
        return min(int(self.max_len_a * src_len + self.max_len_b), self.max_positions - 1)


@dataclass
class Hypotheses:
    """The finished hypotheses of a batch, best first per sentence (sentences in input order)."""

    tokens: Tensor  # [B, K, L] long; each hypothesis ends with EOS, then padding
    lengths: Tensor  # [B, K] long; tokens including the final EOS
    scores: Tensor  # [B, K] float; summed log-probs / length**lenpen (unnormalised if normalize_scores=False)
    positional_scores: Tensor  # [B, K, L] float; log-prob of each token (0 after the end)
    steps: int  # decoder calls made (HAT's generate.py reports this)

    def best(self) -> list[list[int]]:
        """Token ids of each sentence's best hypothesis, without the final EOS."""
        tokens, lengths = self.tokens[:, 0].tolist(), self.lengths[:, 0].tolist()
        return [row[: n - 1] for row, n in zip(tokens, lengths)]


class _ModelSide:
    """The model half of a search: the encoder output and decoder cache of the rows currently searched."""

    def __init__(self, model, config, src_tokens: Tensor, incremental: bool, autocast_dtype: Optional[torch.dtype]):
        self.model, self.config, self.autocast_dtype = model, config, autocast_dtype
        self.device_type = src_tokens.device.type
        with self._precision():
            self.enc = model.encode(src_tokens, config)
        self.cache = DecoderCache() if incremental else None
        self._reorder_skips_static = self.cache is not None and "include_static" in inspect.signature(self.cache.reorder).parameters

    def _precision(self):
        if self.autocast_dtype is None or self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast_dtype)

    def expand(self, beam: int) -> None:
        rows = torch.arange(self.enc.out.size(0), device=self.enc.out.device).repeat_interleave(beam)
        self.enc = self.enc.reorder(rows)

    def log_probs(self, prefix: Tensor) -> Tensor:
        """Log-probabilities [rows, V] (fp32) of the token after ``prefix`` [rows, t]."""
        with self._precision():
            logits = self.model.decode(prefix, self.enc, self.config, cache=self.cache)
        return torch.log_softmax(logits[:, -1, :].float(), dim=-1)

    def reorder(self, rows: Tensor, batch_changed: bool) -> None:
        """Row i of the next step continues row ``rows[i]`` of the previous one.

        Without a batch change every row stays inside its sentence, whose beams share one encoder output,
        so only the self-attention cache needs moving.
        """
        if batch_changed:
            self.enc = self.enc.reorder(rows)
        if self.cache is None:
            return
        if self._reorder_skips_static and not batch_changed:
            self.cache.reorder(rows, include_static=False)
        else:
            self.cache.reorder(rows)


def _apply_constraints(lprobs: Tensor, step: int, max_len: int, settings: SearchSettings) -> None:
    lprobs[:, PAD] = NEG_INF  # never select pad
    if settings.unk_penalty:
        lprobs[:, UNK] -= settings.unk_penalty
    if step >= max_len:  # only EOS is left
        eos = lprobs[:, EOS].clone()
        lprobs.fill_(NEG_INF)
        lprobs[:, EOS] = eos
    elif step < settings.min_len:
        lprobs[:, EOS] = NEG_INF


def _normalise(scores: Tensor, length: int, settings: SearchSettings) -> Tensor:
    return scores / (length ** settings.lenpen) if settings.normalize_scores else scores


def _positional(cumulative: Tensor) -> Tensor:
    """Cumulative scores -> per-token scores, as fairseq derives them (differences in fp32)."""
    out = cumulative.clone()
    out[:, 1:] = cumulative[:, 1:] - cumulative[:, :-1]
    return out


def _sorted(tokens: Tensor, lengths: Tensor, scores: Tensor, positional: Tensor, steps: int) -> Hypotheses:
    # Best first; ties keep finalisation order (fairseq sorts its lists with Python's stable sort).
    order = scores.sort(dim=1, descending=True, stable=True).indices
    take = lambda t: t.gather(1, order.view(*order.shape, *([1] * (t.dim() - 2))).expand(*order.shape, *t.shape[2:]))
    return Hypotheses(take(tokens), take(lengths), take(scores), take(positional), steps)


@contextlib.contextmanager
def _eval_mode(model):
    """Dropout off while decoding; the caller's training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.inference_mode()
def beam_search(
    model,
    src_tokens: Tensor,
    config=None,
    settings: Optional[SearchSettings] = None,
    *,
    incremental: bool = True,
    autocast_dtype: Optional[torch.dtype] = None,
) -> Hypotheses:
    """Translate a batch (``src_tokens`` [B, S], left- or right-padded) with fairseq 0.8's beam search.

    ``incremental=False`` recomputes the whole prefix every step (the reference the cache is tested
    against). Returns ``settings.beam`` hypotheses per sentence, best first.
    """
    with _eval_mode(model):
        return _beam_search(model, src_tokens, config, settings or SearchSettings(), incremental, autocast_dtype)


def _beam_search(model, src_tokens, config, settings, incremental, autocast_dtype) -> Hypotheses:
    device = src_tokens.device
    bsz, src_len = src_tokens.shape
    max_len = settings.max_len(src_len)
    side = _ModelSide(model, config, src_tokens, incremental, autocast_dtype)
    vocab = model.tgt_vocab_size
    beam = min(settings.beam, vocab - 1)  # never more beams than selectable tokens (pad is excluded)
    side.expand(beam)

    width = max_len + 2  # leading EOS + up to max_len tokens + final EOS
    tokens = torch.full((bsz * beam, width), PAD, dtype=torch.long, device=device)
    tokens[:, 0] = EOS
    scores = torch.zeros((bsz * beam, max_len + 1), dtype=torch.float32, device=device)  # cumulative

    # Finished hypotheses, indexed by original sentence and slot (slots fill in finalisation order).
    out_tokens = torch.full((bsz, beam, max_len + 1), PAD, dtype=torch.long, device=device)
    out_positional = torch.zeros((bsz, beam, max_len + 1), dtype=torch.float32, device=device)
    out_scores = torch.full((bsz, beam), NEG_INF, dtype=torch.float32, device=device)
    out_lengths = torch.zeros((bsz, beam), dtype=torch.long, device=device)
    finished_count = torch.zeros(bsz, dtype=torch.long, device=device)

    alive = torch.arange(bsz, device=device)  # original sentence of each group of `beam` rows
    cand_size = 2 * beam
    cand_offsets = torch.arange(cand_size, device=device)
    reorder: Optional[Tensor] = None
    batch_changed = False
    steps = 0
    for step in range(max_len + 1):
        if reorder is not None:
            side.reorder(reorder, batch_changed)
        lprobs = side.log_probs(tokens[:, : step + 1])
        steps += 1
        _apply_constraints(lprobs, step, max_len, settings)

        n = alive.numel()
        lp = lprobs.view(n, beam, vocab)
        if step == 0:
            lp = lp[:, :1]  # all beams are identical at the start: expand beam 0 only
        else:
            lp = lp + scores.view(n, beam, -1)[:, :, step - 1 : step]
        flat = lp.reshape(n, -1)
        cand_scores, cand_flat = flat.topk(min(cand_size, flat.size(1) - 1), dim=1)
        cand_beams = torch.div(cand_flat, vocab, rounding_mode="floor")
        cand_tokens = cand_flat.remainder(vocab)
        eos_mask = cand_tokens.eq(EOS)
        # fairseq's blacklist is always empty here: each beam yields at most one EOS candidate, so at
        # least `beam` of the 2·beam candidates continue.

        top_eos = eos_mask[:, :beam]  # only EOS among the first `beam` candidates is finalised
        done = None
        if bool(top_eos.any()):
            slot = finished_count[alive].unsqueeze(1) + top_eos.long().cumsum(dim=1) - 1
            accept = top_eos & (slot < beam)
            rows, cols = accept.nonzero(as_tuple=True)
            source = rows * beam + cand_beams[rows, cols]
            sentence, slot = alive[rows], slot[rows, cols]
            eos_scores = cand_scores[rows, cols]
            hyp = tokens[source, 1 : step + 2].clone()
            hyp[:, step] = EOS
            out_tokens[sentence, slot, : step + 1] = hyp
            cumulative = scores[source, : step + 1].clone()
            cumulative[:, step] = eos_scores
            out_positional[sentence, slot, : step + 1] = _positional(cumulative)
            out_scores[sentence, slot] = _normalise(eos_scores, step + 1, settings)
            out_lengths[sentence, slot] = step + 1
            finished_count.index_add_(0, alive, accept.sum(dim=1))
            done = finished_count[alive] >= beam
            n_done = int(done.sum())
            if n_done == n:
                break
            if n_done == 0:
                done = None
        assert step < max_len, "every sentence finishes at max_len"

        if done is not None:  # finished sentences leave the batch
            keep = (~done).nonzero().squeeze(1)
            eos_mask, cand_beams = eos_mask[keep], cand_beams[keep]
            cand_scores, cand_tokens = cand_scores[keep], cand_tokens[keep]
            tokens = tokens.view(n, -1)[keep].view(-1, width)
            scores = scores.view(n, -1)[keep].view(-1, max_len + 1)
            alive = alive[keep]
            previous_group = keep
            n = keep.numel()
            batch_changed = True
        else:
            previous_group = torch.arange(n, device=device)
            batch_changed = False

        # The first `beam` non-EOS candidates continue, in candidate order.
        active_rank = eos_mask.long() * cand_size + cand_offsets[: eos_mask.size(1)]
        active = active_rank.topk(beam, dim=1, largest=False).indices
        active_beams = cand_beams.gather(1, active)
        new_rows = (torch.arange(n, device=device) * beam).unsqueeze(1) + active_beams
        tokens = tokens.index_select(0, new_rows.view(-1))
        tokens[:, step + 1] = cand_tokens.gather(1, active).view(-1)
        scores = scores.index_select(0, new_rows.view(-1))
        scores[:, step] = cand_scores.gather(1, active).view(-1)
        # The model side still holds the previous layout (before finished sentences left).
        reorder = (previous_group.unsqueeze(1) * beam + active_beams).view(-1)

    return _sorted(out_tokens, out_lengths, out_scores, out_positional, steps)


@torch.inference_mode()
def greedy_search(
    model,
    src_tokens: Tensor,
    config=None,
    settings: Optional[SearchSettings] = None,
    *,
    incremental: bool = True,
    autocast_dtype: Optional[torch.dtype] = None,
) -> Hypotheses:
    """Beam size 1, without the candidate machinery: identical to ``beam_search`` with ``beam=1``."""
    with _eval_mode(model):
        return _greedy_search(model, src_tokens, config, settings or SearchSettings(beam=1), incremental, autocast_dtype)


def _greedy_search(model, src_tokens, config, settings, incremental, autocast_dtype) -> Hypotheses:
    device = src_tokens.device
    bsz, src_len = src_tokens.shape
    max_len = settings.max_len(src_len)
    side = _ModelSide(model, config, src_tokens, incremental, autocast_dtype)

    tokens = torch.full((bsz, max_len + 2), PAD, dtype=torch.long, device=device)
    tokens[:, 0] = EOS
    scores = torch.zeros((bsz, max_len + 1), dtype=torch.float32, device=device)  # cumulative
    out_tokens = torch.full((bsz, 1, max_len + 1), PAD, dtype=torch.long, device=device)
    out_positional = torch.zeros((bsz, 1, max_len + 1), dtype=torch.float32, device=device)
    out_scores = torch.full((bsz, 1), NEG_INF, dtype=torch.float32, device=device)
    out_lengths = torch.zeros((bsz, 1), dtype=torch.long, device=device)
    alive = torch.arange(bsz, device=device)
    keep: Optional[Tensor] = None
    steps = 0
    for step in range(max_len + 1):
        if keep is not None:
            side.reorder(keep, batch_changed=True)
            keep = None
        lprobs = side.log_probs(tokens[:, : step + 1])
        steps += 1
        _apply_constraints(lprobs, step, max_len, settings)
        if step > 0:  # argmax of the cumulative score, exactly what beam search with one beam ranks
            lprobs += scores[:, step - 1 : step]
        best_scores, best_tokens = lprobs.max(dim=1)
        tokens[:, step + 1] = best_tokens
        scores[:, step] = best_scores
        ended = best_tokens.eq(EOS)
        if bool(ended.any()):
            rows = ended.nonzero().squeeze(1)
            sentence = alive[rows]
            hyp = tokens[rows, 1 : step + 2]
            out_tokens[sentence, 0, : step + 1] = hyp
            out_positional[sentence, 0, : step + 1] = _positional(scores[rows, : step + 1])
            out_scores[sentence, 0] = _normalise(best_scores[rows], step + 1, settings)
            out_lengths[sentence, 0] = step + 1
            if rows.numel() == alive.numel():
                break
            keep = (~ended).nonzero().squeeze(1)
            tokens, scores, alive = tokens[keep], scores[keep], alive[keep]
    return Hypotheses(out_tokens, out_lengths, out_scores, out_positional, steps)


def search(model, src_tokens: Tensor, config=None, settings: Optional[SearchSettings] = None, **kwargs) -> Hypotheses:
    """Greedy for beam 1, beam search otherwise."""
    settings = settings or SearchSettings()
    if settings.beam == 1:
        return greedy_search(model, src_tokens, config, settings, **kwargs)
    return beam_search(model, src_tokens, config, settings, **kwargs)
