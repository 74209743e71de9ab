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


GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton kernels training would use)")


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=GPU)])
def test_compiled_norms_compute_what_the_eager_layers_compute(device):
    """space0 SuperTransformer in fp32, training mode without dropout, SubTransformers of both widths: the same
    logits and gradients up to float rounding, and the compilation really ran (no fallback). On a GPU machine
    this is the check that compiled norms may be turned on in training."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 400, 400, True, dropout=0.0).train().to(device)
    g = torch.Generator().manual_seed(1)
    src, prev, target = (torch.randint(4, 400, (3, n), generator=g).to(device) for n in (9, 7, 7))
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
    """x = 0, h = ones: after dropout a row holds zeros and 1/(1-p), so after the norm the share of the lower value is
    the share dropped. The norm hides the 1/(1-p) there, so the same seed (the same mask) is then used with x and h
    random, against the eager formula with that mask. Eval mode drops nothing."""
    import torch.nn.functional as F

    norm = _compiled_residual_norm()
    width, p = 4096, 0.3
    weight, bias = torch.ones(width), torch.zeros(width)
    torch.manual_seed(7)
    out = norm(torch.zeros(8, width), torch.ones(8, width), p, True, weight, bias)
    kept = out > out.min(dim=-1, keepdim=True).values
    assert 1 - kept.float().mean().item() == pytest.approx(p, abs=0.02)
    x, h = torch.randn(8, width), torch.randn(8, width)
    torch.manual_seed(7)
    out = norm(x, h, p, True, weight, bias)
    expected = F.layer_norm(x + kept * h / (1 - p), (width,), weight, bias, 1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    wrong_scale = F.layer_norm(x + kept * h, (width,), weight, bias, 1e-5)
    assert not torch.allclose(out, wrong_scale, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm(x, h, 0.0, False, weight, bias), F.layer_norm(x + h, (width,), weight, bias, 1e-5))
    assert norm.failure is None
