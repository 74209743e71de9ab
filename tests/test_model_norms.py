"""The residual step after every sublayer, norm(x + dropout(h)), compiled (``compiled_norms``: the search's scorer
on GPUs, an option in training) against the same three operations run eagerly."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from hat_cli.core.compiled import compile_warnings
from hat_cli.model import transformer
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import TransformerModel, _compiled_residual_norm
from hat_cli.training.loss import label_smoothed_nll_loss

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton kernels training would use)")
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]


def _batch(device, vocab=400, padding=True):
    g = torch.Generator().manual_seed(1)
    src, prev, target = (torch.randint(4, vocab, (3, n), generator=g).to(device) for n in (9, 7, 7))
    if padding:
        src[0, :3] = 1
    return src, prev, target


@pytest.mark.slow
@pytest.mark.parametrize("static_widths", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_norms_score_what_the_eager_layers_compute(device, static_widths):
    """Scoring (no gradients, eval): space0 SuperTransformer in fp32, SubTransformers of both widths, the same
    logits up to float rounding, and the compilation really ran (no fallback); compiled for all shapes at once,
    and once per width as the search's scorer does on GPUs."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 400, 400, True).eval().to(device)
    model.static_widths = static_widths
    src, prev, _ = _batch(device)
    with torch.inference_mode():
        for seed in (0, 3):  # 512 and 640 wide
            config = space.sample(random.Random(seed))
            model.compiled_norms = False
            eager = model(src, prev, config)
            model.compiled_norms = True
            torch.testing.assert_close(model(src, prev, config), eager, rtol=1e-5, atol=1e-5)
    assert _compiled_residual_norm(static_widths).failure is None and not compile_warnings()


def _forward_backward(model, config, batch, compiled: bool):
    model.compiled_norms = compiled
    model.zero_grad(set_to_none=True)
    src, prev, target = batch
    logits = model(src, prev, config)
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1)
    loss.backward()
    return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_norms_train_like_the_eager_layers_without_dropout(device, monkeypatch):
    """Training mode without dropout, space0, both widths: the same logits, and gradients as close to eager as
    eager's own gradients are when every norm's output is nudged by rounding-sized noise (1e-7 relative). The
    yardstick matters: a ReLU input near zero turns such a nudge into 3e-3 relative in some weights' gradients,
    which once passed for a compiler error. On a GPU machine this is the check for compiled norms in training."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 400, 400, True, dropout=0.0).train().to(device)
    # Without padding: with this seed's padded batch, a 1e-7 nudge of the first norm's output alone moves some
    # gradients by 3e-3 (a ReLU input at its kink), under eager and compiled alike.
    batch = _batch(device, padding=False)
    exact_norm = transformer._residual_norm

    def nudged_norm(x, h, p, training, weight, bias):
        y = exact_norm(x, h, p, training, weight, bias)
        noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(11)).to(y.device)
        return y + (noise * 1e-7 * y.abs()).detach()

    for seed in (0, 3):
        config = space.sample(random.Random(seed))
        eager_logits, eager = _forward_backward(model, config, batch, compiled=False)
        compiled_logits, compiled = _forward_backward(model, config, batch, compiled=True)
        monkeypatch.setattr(transformer, "_residual_norm", nudged_norm)
        _, nudged = _forward_backward(model, config, batch, compiled=False)
        monkeypatch.setattr(transformer, "_residual_norm", exact_norm)
        torch.testing.assert_close(compiled_logits, eager_logits, rtol=1e-5, atol=1e-5)
        assert compiled.keys() == eager.keys()
        for name in eager:  # relative to the whole tensor: single near-zero entries carry only rounding
            scale = eager[name].norm().clamp(min=1e-12)
            error = ((compiled[name] - eager[name]).norm() / scale).item()
            noise = ((nudged[name] - eager[name]).norm() / scale).item()
            assert error <= max(1e-5, 3 * noise), (name, error, noise)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_dropout_step_has_the_eager_values_and_gradients(device):
    """x = 0, h = ones: after dropout a row holds zeros and 1/(1-p), so after the norm the share of the lower value
    is the share dropped. The norm hides the 1/(1-p) there, so the same seed (the same mask) is then used with x
    and h random, against the eager formula with that mask: values, and the gradients of x, h, weight and bias."""
    norm = _compiled_residual_norm()
    width, p = 640, 0.3
    torch.manual_seed(7)
    out = norm(torch.zeros(64, width, device=device), torch.ones(64, width, device=device), p, True,
               torch.ones(width, device=device), torch.zeros(width, device=device))
    kept = out > out.min(dim=-1, keepdim=True).values
    assert 1 - kept.float().mean().item() == pytest.approx(p, abs=0.02)

    leaves = [torch.randn(64, width, device=device), torch.randn(64, width, device=device),
              torch.randn(width, device=device), torch.randn(width, device=device)]
    upstream = torch.randn(64, width, device=device)
    results = []
    for compiled in (True, False):
        x, h, weight, bias = (t.clone().requires_grad_() for t in leaves)
        if compiled:
            torch.manual_seed(7)
            y = norm(x, h, p, True, weight, bias)
        else:
            y = F.layer_norm(x + kept * h / (1 - p), (width,), weight, bias, 1e-5)
        y.backward(upstream)
        results.append([y.detach(), x.grad, h.grad, weight.grad, bias.grad])
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    x, h = leaves[0], leaves[1]
    wrong_scale = F.layer_norm(x + kept * h, (width,), leaves[2], leaves[3], 1e-5)
    assert not torch.allclose(results[0][0], wrong_scale, rtol=1e-4, atol=1e-4)
    assert norm.failure is None
