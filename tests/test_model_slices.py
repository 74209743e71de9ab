"""model/slices.py: the lean backward of sliced super-sized weights gives exactly autograd's gradients."""

from __future__ import annotations

import random

import torch

from hat_cli.model import slices, transformer
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import TransformerModel
from hat_cli.training.loss import label_smoothed_nll_loss


def _gradients(model, config, batch, monkeypatch, lean: bool) -> tuple[float, dict[str, torch.Tensor]]:
    plain = lambda weight, *bounds: None if weight is None else weight[bounds]  # noqa: E731 - the old slicing
    monkeypatch.setattr(transformer, "matmul_slice", slices.matmul_slice if lean else plain)
    model.zero_grad(set_to_none=True)
    src, prev, target = batch
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, prev, config)
    loss, _ = label_smoothed_nll_loss(logits, target, 0.1)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_sliced_weights_get_the_same_gradients_as_through_autograd(monkeypatch):
    """WMT space0 SuperTransformer (shared embeddings, so one table is read by F.embedding and by the output
    projection), bf16 autocast, SubTransformers narrower than the super shape: every gradient bit-identical."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 512, 512, True, dropout=0.0)
    g = torch.Generator().manual_seed(1)
    src, prev, target = (torch.randint(4, 512, (3, n), generator=g) for n in (9, 7, 7))
    src[0, :2] = 1  # padding
    for seed in (0, 1, 2):
        config = space.sample(random.Random(seed))
        plain_loss, plain = _gradients(model, config, (src, prev, target), monkeypatch, lean=False)
        lean_loss, lean = _gradients(model, config, (src, prev, target), monkeypatch, lean=True)
        assert lean_loss == plain_loss
        assert lean.keys() == plain.keys()
        for name in plain:
            assert torch.equal(lean[name], plain[name]), name


def test_into_a_gradient_that_holds_something_only_the_order_of_additions_differs(monkeypatch):
    """A second micro-batch (or SubTransformer) of an update adds to .grad: the shared table's two reads are then
    added one at a time instead of summed first, so the gradients agree to float rounding, not bit for bit."""
    space = SearchSpace.builtin("space0")
    torch.manual_seed(0)
    model = TransformerModel.supertransformer(space.shape, 512, 512, True, dropout=0.0)
    g = torch.Generator().manual_seed(4)
    first = tuple(torch.randint(4, 512, (3, n), generator=g) for n in (9, 7, 7))
    second = tuple(torch.randint(4, 512, (2, n), generator=g) for n in (6, 8, 8))
    config = space.sample(random.Random(5))
    accumulated = {}
    for lean in (False, True):
        _gradients(model, config, first, monkeypatch, lean)  # zeroes, then the first micro-batch
        src, prev, target = second
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = label_smoothed_nll_loss(model(src, prev, config), target, 0.1)
        loss.backward()  # adds to the gradients of the first
        accumulated[lean] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    for name, plain in accumulated[False].items():
        assert torch.allclose(accumulated[True][name], plain, rtol=1e-5, atol=1e-7), name


def test_the_lean_path_is_taken_only_where_it_changes_something():
    weight = torch.nn.Parameter(torch.randn(6, 5))
    # fp32 without autocast: the plain view, autograd as usual
    view = slices.matmul_slice(weight, slice(4), slice(3))
    assert view._base is weight and view.grad_fn is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert slices.matmul_slice(weight, slice(4)).dtype == torch.float32  # no gradients: autocast casts later
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = slices.matmul_slice(weight, slice(2, None), slice(3))
    assert cast.dtype == torch.bfloat16 and cast.shape == (4, 3)
    (cast.float() * 2).sum().backward()
    expected = torch.zeros(6, 5)
    expected[2:, :3] = 2
    assert torch.equal(weight.grad, expected)  # written into the slice of .grad, zeros elsewhere
    assert slices.matmul_slice(None, slice(3)) is None
