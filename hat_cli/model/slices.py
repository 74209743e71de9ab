"""The slice of a super-sized weight that one matmul reads, cast once, with a lean backward (issue 16).

Under autocast, ``F.linear(x, W[:o, :i])`` casts the fp32 slice to bf16 in the forward; its backward casts
the slice's bf16 gradient back to fp32, writes it into a zero tensor of W's *full* size (the backward of
slicing) and adds that tensor to ``W.grad``: three kernels, two of them over the whole super-sized tensor,
for each of the ~130 weight reads of a SuperTransformer update. :func:`matmul_slice` casts in the forward
and, in the backward, adds the gradient straight into the slice of ``W.grad``: one kernel. The numbers are
the same sums, possibly added in another order: where one forward reads a weight twice (the shared embedding
table: the embedding lookups and the output projection), autograd summed the two gradients before adding them
to ``.grad``, and here each is added in turn. Into a zero ``.grad`` that is exact; once ``.grad`` holds something
(a later micro-batch or SubTransformer of the same update) the last bits can differ.

The backward writes ``.grad`` itself, which training's gradient buffer (loop.FlatGradients) expects; it is not
for ``torch.autograd.grad``, gradient hooks on the weight or double backward.

Only used where it changes something: with gradients on, under autocast to another dtype. Elsewhere the
plain slice is returned and autocast casts it as before.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _CastSlice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, index: tuple, dtype: torch.dtype) -> Tensor:
        ctx.weight, ctx.index = weight, index
        return weight[index].to(dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        weight = ctx.weight
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        # Returning None keeps autograd from accumulating a full-size gradient; the slice is added here instead.
        weight.grad[ctx.index].add_(grad)
        return None, None, None


def autocast_dtype(tensor: Tensor) -> Optional[torch.dtype]:
    """The dtype a matmul under autocast computes ``tensor`` in here, or None where autocast leaves it alone
    (autocast off on its device, or a float64 tensor)."""
    device_type = tensor.device.type
    if not torch.is_autocast_enabled(device_type) or tensor.dtype == torch.float64:
        return None
    return torch.get_autocast_dtype(device_type)


def matmul_slice(weight: Optional[Tensor], *bounds: slice) -> Optional[Tensor]:
    """``weight[bounds]`` as a matmul under the current autocast will read it (see the module's docstring)."""
    if weight is None:
        return None
    # Gradients first: decoding (no gradients) calls this for every weight at every step, and returns at once.
    if torch.is_grad_enabled() and weight.requires_grad and weight.is_leaf:
        dtype = autocast_dtype(weight)
        if dtype is not None and dtype != weight.dtype:
            return _CastSlice.apply(weight, bounds, dtype)
    return weight[bounds]
