"""Label-smoothed cross entropy as HAT's fairseq criterion computes it (docs/METHOD.md §3.1).

Per non-pad target token: ``(1 - eps) * NLL + (eps / V) * sum_vocab(-log p)``, summed over tokens.
The caller divides by the number of target tokens of the whole update (all micro-batches, all GPUs).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from hat_cli.core.compiled import compiled as compiled_function

LN2 = math.log(2.0)


def label_smoothed_nll_loss(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                            padding_idx: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(loss, nll_loss)``, both summed over the non-pad tokens of ``target``; ``logits`` is ``[..., V]``.

    The reference, as fairseq computes it: float32 log-probabilities of the logits (``get_normalized_probs``),
    whatever autocast produced. The search's exact fp32 scoring uses it; training uses
    :func:`smoothed_loss_from_logits`, the same quantity."""
    lprobs = F.log_softmax(logits.reshape(-1, logits.size(-1)), dim=-1, dtype=torch.float32)
    target = target.reshape(-1, 1)
    keep = target.ne(padding_idx)
    # Pad positions are gathered at a valid index and masked out, so no data-dependent shapes (no host sync).
    nll = -lprobs.gather(dim=-1, index=target.clamp(min=0)).masked_fill(~keep, 0.0)
    smooth = -lprobs.sum(dim=-1, keepdim=True).masked_fill(~keep, 0.0)
    nll_sum, smooth_sum = nll.sum(), smooth.sum()
    loss = (1.0 - epsilon) * nll_sum + (epsilon / lprobs.size(-1)) * smooth_sum
    return loss, nll_sum


def smoothed_loss_from_logits(logits: torch.Tensor, target: torch.Tensor, epsilon: float,
                              padding_idx: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`label_smoothed_nll_loss` written without the ``[tokens, V]`` log-probabilities: per token
    ``-log p_y = lse - z_y`` and ``-sum_v log p_v = V * lse - sum_v z_v``. The same numbers; written so that
    ``torch.compile`` can fuse it into a few passes over the bf16 logits (see :func:`training_losses`)
    where the eager version writes and reads fp32 tensors of the logits' size several times."""
    z = logits.reshape(-1, logits.size(-1)).float()
    target = target.reshape(-1)
    keep = target.ne(padding_idx)
    lse = torch.logsumexp(z, dim=-1)
    nll = (lse - z.gather(dim=-1, index=target.clamp(min=0).unsqueeze(-1)).squeeze(-1)).masked_fill(~keep, 0.0)
    smooth = (z.size(-1) * lse - z.sum(dim=-1)).masked_fill(~keep, 0.0)
    nll_sum = nll.sum()
    return (1.0 - epsilon) * nll_sum + (epsilon / z.size(-1)) * smooth.sum(), nll_sum


def distillation_loss_from_logits(logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                                  padding_idx: int = 1) -> torch.Tensor:
    """In-place distillation (sampling.py's sandwich rule): the student's cross entropy against the teacher's
    predicted distribution, summed over non-pad target tokens, from both logits and without ``[tokens, V]``
    log-probabilities: since the teacher's probabilities sum to one, ``-sum_v p_v log q_v = lse(z) - sum_v p_v z_v``
    with ``p = softmax(teacher logits)`` recomputed on the fly. The teacher is only read (detach it first)."""
    z = logits.reshape(-1, logits.size(-1)).float()
    t = teacher_logits.reshape(-1, teacher_logits.size(-1)).float()
    keep = target.reshape(-1).ne(padding_idx)
    teacher = torch.softmax(t, dim=-1)
    per_token = torch.logsumexp(z, dim=-1) - (teacher * z).sum(dim=-1)
    return per_token.masked_fill(~keep, 0.0).sum()


def training_losses(compiled: bool, static_widths: bool = False) -> tuple[Callable, Callable]:
    """(label-smoothed loss, distillation loss), both from logits: compiled (training's ``compiled_loss``, the
    search's bf16 scoring on GPUs; ``static_widths``: the vocabulary static, see hat_cli/core/compiled.py) or
    the plain functions, which compute the same quantities eagerly."""
    if compiled:
        return (compiled_function(smoothed_loss_from_logits, "the loss", "compiled_loss", static_widths),
                compiled_function(distillation_loss_from_logits, "the loss", "compiled_loss", static_widths))
    return smoothed_loss_from_logits, distillation_loss_from_logits


def to_base2_per_token(total: float, ntokens: int) -> float:
    """fairseq logs losses per token in bits (divided by ln 2)."""
    return total / max(ntokens, 1) / LN2
