"""Scoring SubTransformers for the search: validation loss with weights inherited from the SuperTransformer.

The score is HAT's (docs/METHOD.md §6, §3.1): the label-smoothed cross entropy (eps 0.1) summed over every
non-pad target token of the validation set, divided by the number of those tokens, in bits. Eval mode,
no dropout.

What makes it fast (the original spends 0.85 s per candidate on newstest2013, most of it not on maths):
- everything that does not depend on the candidate is done once: the validation set is collated into
  length-sorted batches that stay on the device (no data loader per candidate), and in bf16 mode the
  SuperTransformer's weights are cast to bf16 once (autocast would re-cast every weight slice per batch);
- batches are large (default 16384 tokens on GPU, HAT used 4096);
- losses are summed on the device and read back once per *generation* (the model always applies the
  padding mask rather than testing for pads, which would sync once per batch).

``precision="fp32"`` is the exact reference: fp32 weights, TF32 matmuls disabled.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from hat_cli.core.errors import HatError
from hat_cli.data.batching import collate, token_batches
from hat_cli.model.space import SubTransformerConfig
from hat_cli.core.compiled import compile_warnings
from hat_cli.training.loss import label_smoothed_nll_loss, training_losses

PRECISIONS = ("bf16", "fp32")
LABEL_SMOOTHING = 0.1  # HAT's criterion setting for every task (docs/METHOD.md §3.1)


@dataclass
class ValidationSet:
    """Pre-collated validation batches, already on the device the model runs on."""

    batches: list  # hat_cli.data.batching.Batch, tensors on `device`
    sentences: int
    target_tokens: int
    source_tokens: int
    padding_idx: int
    device: torch.device


def prepare_validation(data, max_tokens: int, device: str | torch.device, subset: int | None = None) -> ValidationSet:
    """Collate ``data`` (a ``ParallelData`` split) into length-sorted batches of at most ``max_tokens``.

    ``subset`` keeps the first N sentences of the split (file order), for quick searches.
    """
    n = len(data)
    if n == 0:
        raise HatError(f"The validation split '{data.split}' is empty.")
    keep = np.arange(n)
    if subset is not None:
        if subset < 1:
            raise HatError(f"--valid-subset must be at least 1, got {subset}.")
        keep = keep[: min(subset, n)]
    src_sizes, tgt_sizes = data.src_sizes[keep], data.tgt_sizes[keep]
    device = torch.device(device)
    batches = []
    for local in token_batches(src_sizes, tgt_sizes, max_tokens, shuffle=False, required_batch_size_multiple=1):
        batch = collate(data, keep[local])
        if device.type == "cuda":
            batch = _pinned(batch)
        batches.append(batch.to(device))
    return ValidationSet(
        batches=batches,
        sentences=len(keep),
        target_tokens=int(tgt_sizes.sum()),
        source_tokens=int(src_sizes.sum()),
        padding_idx=data.tgt_dict.pad(),
        device=device,
    )


def _pinned(batch):
    """Pinned host memory so the one-time upload is asynchronous."""
    for name in ("src_tokens", "src_lengths", "prev_output_tokens", "target"):
        setattr(batch, name, getattr(batch, name).pin_memory())
    return batch


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """Disable TF32 so fp32 really is fp32 (the reference the bf16 ranking is checked against)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)


# Raised whenever the scorer's arithmetic changes in a way that moves scores by rounding (2: compiled once per
# width, the ReLU in the matmul epilogue on GPUs and the encoder keys cast once; eleventh session. 3: the norms
# also write the next matmul's bf16 input, twelfth session: equal on the CPU, but another compiled kernel on a GPU).
SCORER_VERSION = 3


class ValidationLoss:
    """``fitness(configs) -> list of losses`` (bits per target token), one batched pass per config."""

    def __init__(self, model, valid: ValidationSet, precision: str = "bf16", epsilon: float = LABEL_SMOOTHING,
                 fused_loss: bool | None = None, compiled_norms: bool | None = None, pure_bf16: bool = False,
                 static_widths: bool | None = None):
        if precision not in PRECISIONS:
            raise HatError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'.")
        self.valid = valid
        self.precision = precision
        self.epsilon = epsilon
        self.device = valid.device
        # bf16 = weights cast once + autocast (CPU too when asked for; the CPU default is fp32).
        bf16 = precision == "bf16"
        if pure_bf16 and not bf16:
            raise HatError("Pure bf16 scoring needs --precision bf16.")
        self.autocast = bf16 and not pure_bf16
        weights_dtype = torch.bfloat16 if bf16 else torch.float32
        # Module.to works in place: the caller's model is converted (pass a separate copy to compare modes).
        self.model = model.to(device=self.device, dtype=weights_dtype).eval()
        fast = bf16 and self.device.type == "cuda"
        # Set on the model at every scoring pass: scorers of several settings may share one model.
        self.compiled_norms = fast if compiled_norms is None else compiled_norms
        # Compiled once per width: a search scores thousands of candidates of a few widths (embedding widths for
        # the norms, one vocabulary for the loss), so each compilation is reused many times (issue 16).
        self.static_widths = fast if static_widths is None else static_widths
        self.evaluations = 0
        # bf16 on a GPU: the loss straight from the bf16 logits in one compiled pass (training/loss.py), not
        # through fp32 log-probabilities of the logits' size. The fp32 reference keeps the eager loss.
        if fused_loss is None:
            fused_loss = fast
        self.fused_loss, self.pure_bf16 = fused_loss, pure_bf16
        self.loss_function = (training_losses(compiled=True, static_widths=self.static_widths)[0] if fused_loss
                              else label_smoothed_nll_loss)

    def settings(self) -> dict:
        """How the scores are computed, for the search's score cache: scores from other settings (or from an
        earlier version of this arithmetic, ``SCORER_VERSION``) differ by rounding and are not mixed in."""
        return {"version": SCORER_VERSION, "fused_loss": self.fused_loss, "compiled_norms": self.compiled_norms,
                "static_widths": self.static_widths, "pure_bf16": self.pure_bf16}

    def compile_warning(self) -> str | None:
        """A sentence for the search's log if compiling failed (the loss or the norms were computed uncompiled)."""
        return " ".join(compile_warnings()) or None

    @classmethod
    def fp32_copy(cls, other: "ValidationLoss", model) -> "ValidationLoss":
        return cls(model, other.valid, "fp32", other.epsilon)

    def _context(self):
        if self.autocast:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        if self.precision == "bf16":  # pure bf16: the weights are bf16 already, so is every activation
            return contextlib.nullcontext()
        return _exact_fp32()

    @torch.inference_mode()
    def loss_sums(self, config: SubTransformerConfig) -> torch.Tensor:
        """Label-smoothed loss summed over the whole validation set, as a device scalar (no host sync)."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.model.compiled_norms = self.compiled_norms
        self.model.static_widths = self.static_widths
        with self._context():
            for batch in self.valid.batches:
                logits = self.model(batch.src_tokens, batch.prev_output_tokens, config)
                loss, _ = self.loss_function(logits, batch.target, self.epsilon, self.valid.padding_idx)
                total += loss.double()
        return total

    def __call__(self, configs: Sequence[SubTransformerConfig]) -> list[float]:
        if not configs:
            return []
        sums = torch.stack([self.loss_sums(c) for c in configs]).cpu().tolist()  # one sync per generation
        self.evaluations += len(configs)
        per_token = self.valid.target_tokens * math.log(2.0)
        return [s / per_token for s in sums]


def default_precision(device: torch.device) -> str:
    return "bf16" if device.type == "cuda" else "fp32"


def default_max_tokens(device: torch.device) -> int:
    # Larger batches keep an H200 busy; on CPU the 4096 of HAT keeps memory modest.
    return 16384 if device.type == "cuda" else 4096


