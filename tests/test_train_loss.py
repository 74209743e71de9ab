"""Label-smoothed cross entropy against a direct per-token formula (docs/METHOD.md §3.1)."""

import math

import pytest
import torch

from hat_cli.training.loss import label_smoothed_nll_loss, to_base2_per_token


def _reference(logits, target, eps, pad):
    total, nll_total = 0.0, 0.0
    V = logits.size(-1)
    for row, t in zip(logits.reshape(-1, V).double(), target.reshape(-1).tolist()):
        if t == pad:
            continue
        logp = row - torch.logsumexp(row, 0)
        nll = -logp[t].item()
        total += (1 - eps) * nll + eps / V * (-logp.sum().item())
        nll_total += nll
    return total, nll_total


def test_label_smoothed_loss_matches_reference_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 3
    target = torch.randint(2, 11, (3, 5), generator=g)
    target[0, 3:] = 1  # padding
    target[2, 4] = 1
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, padding_idx=1)
    ref_loss, ref_nll = _reference(logits, target, 0.1, 1)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5)
    assert nll.item() == pytest.approx(ref_nll, rel=1e-5)


def test_loss_agrees_with_torch_cross_entropy_label_smoothing_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 7, 23, generator=g, requires_grad=True)
    target = torch.randint(0, 23, (4, 7), generator=g)
    target[1, 5:] = 1
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1, padding_idx=1)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 23), target.reshape(-1), ignore_index=1,
                                            reduction="sum", label_smoothing=0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    loss.backward()
    # padded positions get no gradient
    assert torch.count_nonzero(logits.grad[1, 5:]) == 0
    assert torch.count_nonzero(logits.grad[0]) > 0


def test_zero_smoothing_is_plain_nll_and_base2_logging():
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0), 0.0]]])
    target = torch.tensor([[2]])
    loss, nll = label_smoothed_nll_loss(logits, target, 0.0, padding_idx=1)
    assert loss.item() == pytest.approx(nll.item())
    assert nll.item() == pytest.approx(-math.log(2.0 / 5.0), rel=1e-6)
    assert to_base2_per_token(nll.item(), 1) == pytest.approx(-math.log2(2.0 / 5.0), rel=1e-6)
