"""Linear layers on the leading slice of a super-sized weight, with a lean training path (issue 16).

Under autocast, ``F.linear(x, W[:o, :i], b[:o])`` casts the fp32 slices and the input to bf16 in the forward;
its backward casts the slices' bf16 gradients back to fp32, writes each into a zero tensor of the *full*
weight's size (the backward of slicing) and adds that tensor to ``W.grad``: extra kernels, two of them over
the whole super-sized tensor, for each of the ~130 weight reads of a SuperTransformer update, and half a dozen
autograd nodes per linear layer, each costing host time (at 4,096 tokens per update the host, not the GPU,
sets the pace). :func:`sliced_linear` does the same arithmetic as one autograd node: the forward casts and
multiplies; the backward computes the input's gradient and adds the weight's and bias's gradients straight
into the slices of their ``.grad``. The numbers are the same sums, possibly added in another order: where one
forward reads a weight twice (the shared embedding table: the embedding lookups and the output projection),
autograd summed the two gradients before adding them to ``.grad``, and here each is added in turn.

The backward writes ``.grad`` itself, which training's gradient buffer (loop.FlatGradients) expects; it is not
for ``torch.autograd.grad``, gradient hooks on the weight or double backward.

Only used where it changes something: with gradients on, under autocast to another dtype, for leaf weights.
Elsewhere (decoding, fp32 training, the search's bf16 weights) it is the plain sliced ``F.linear``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def _add_into_grad(parameter: Tensor, index: tuple, grad: Tensor) -> None:
    if parameter.grad is None:
        parameter.grad = torch.zeros_like(parameter)
    parameter.grad[index].add_(grad)


class _SlicedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], rows: slice, cols: slice, dtype: torch.dtype):
        w = weight[rows, cols].to(dtype)
        b = None if bias is None else bias[rows].to(dtype)
        x = x.to(dtype)  # what autocast does to the input of a matmul
        ctx.save_for_backward(x, w)
        ctx.weight, ctx.bias, ctx.rows, ctx.cols = weight, bias, rows, cols
        return F.linear(x, w, b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, w = ctx.saved_tensors
        grad_x = grad @ w if ctx.needs_input_grad[0] else None  # autograd casts it to the input's dtype
        flat = grad.reshape(-1, grad.size(-1))
        # Returning None for the weight and bias keeps autograd from accumulating full-size gradients.
        _add_into_grad(ctx.weight, (ctx.rows, ctx.cols), flat.t() @ x.reshape(-1, x.size(-1)))
        if ctx.bias is not None:
            _add_into_grad(ctx.bias, (ctx.rows,), flat.sum(0))
        return grad_x, None, None, None, None, None


def _training_dtype(weight: Tensor) -> Optional[torch.dtype]:
    """The dtype autocast would cast ``weight`` to in a training forward, or None where the lean path does not
    apply. Gradients are checked first: decoding calls this for every weight at every step."""
    if torch.is_grad_enabled() and weight.requires_grad and weight.is_leaf:
        device_type = weight.device.type
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
            if dtype != weight.dtype:
                return dtype
    return None


def sliced_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], rows: slice, cols: slice) -> Tensor:
    """``F.linear(x, weight[rows, cols], bias[rows])``, as one lean autograd node when training under autocast
    (see the module's docstring)."""
    dtype = _training_dtype(weight)
    if dtype is None:
        return F.linear(x, weight[rows, cols], None if bias is None else bias[rows])
    return _SlicedLinear.apply(x, weight, bias, rows, cols, dtype)
