"""The residual step after every sublayer, norm(x + dropout(h)), compiled (``compiled_norms``, the GPU default)
against the same three operations run eagerly (what CPUs run by default)."""

from __future__ import annotations

import random

import pytest
import torch

from hat_cli.core.compiled import compile_warnings
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import TransformerModel, _compiled_residual_norm
from hat_cli.training.loss import label_smoothed_nll_loss


def _forward_backward(model, config, batch, compiled: bool):
    model.compiled_norms = compiled
    model.zero_grad(set_to_none=True)
    src, prev, target = batch
    logits = model(src, prev, config)
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1)
    loss.backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
def test_compiled_norms_compute_what_the_eager_layers_compute():
    """space0 SuperTransformer in fp32, training mode without dropout, SubTransformers of both widths: the same
    logits and gradients up to float rounding, and the compilation really ran (no fallback)."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 400, 400, True, dropout=0.0).train()
    g = torch.Generator().manual_seed(1)
    src, prev, target = (torch.randint(4, 400, (3, n), generator=g) for n in (9, 7, 7))
    src[0, :3] = 1  # padding
    for seed in (0, 3):
        config = space.sample(random.Random(seed))
        eager_logits, eager = _forward_backward(model, config, (src, prev, target), compiled=False)
        compiled_logits, compiled = _forward_backward(model, config, (src, prev, target), compiled=True)
        torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-5, atol=1e-5)
        assert compiled.keys() == eager.keys()
        for name in eager:  # relative to the whole tensor: single near-zero entries carry only rounding
            error = (compiled[name] - eager[name]).norm() / eager[name].norm().clamp(min=1e-12)
            assert error < 1e-5, (name, error.item())
    assert _compiled_residual_norm().failure is None and not compile_warnings()


@pytest.mark.slow
def test_compiled_dropout_drops_at_its_rate_and_rescales():
    """x = 0, h = ones: each row after dropout holds zeros and 1/(1-p), so after the norm the share of the lower
    value is the share dropped. Eval mode drops nothing."""
    norm = _compiled_residual_norm()
    width, p = 4096, 0.3
    x, h = torch.zeros(8, width), torch.ones(8, width)
    weight, bias = torch.ones(width), torch.zeros(width)
    out = norm(x, h, p, True, weight, bias)
    dropped = (out < 0).float().mean().item()
    assert dropped == pytest.approx(p, abs=0.02)
    assert norm(x, h, 0.0, False, weight, bias).abs().max().item() == 0.0  # a constant row normalises to zero
    assert norm.failure is None
