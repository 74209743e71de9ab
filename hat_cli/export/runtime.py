"""Running an ONNX export with ONNX Runtime: the encoder/decoder graphs behind the interface that
``decoding.beam_search`` drives (so ONNX hypotheses come from the very same search as `hat test`).

onnxruntime is the optional extra ``hat-cli[onnx]``; importing it is deferred to :func:`load_onnxruntime`
so that the rest of hat works without it and says how to install it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from hat_cli.core.errors import HatError
from hat_cli.export.onnx import DECODER_FILE, ENCODER_FILE, check_tokens, read_export_config
from hat_cli.model.transformer import DecoderCache

INSTALL_HINT = "pip install 'hat-cli[onnx]'"


def load_onnxruntime():
    """The onnxruntime module, or a HatError that says how to install it."""
    try:
        import onnxruntime  # the optional extra: imported only when something runs ONNX
    except ImportError:
        raise HatError(f"ONNX Runtime is not installed; install it with `{INSTALL_HINT}`.") from None
    return onnxruntime


def make_session(path: str | Path, threads: Optional[int] = None):
    """An ONNX Runtime session on the CPU execution provider (``threads``: intra-op threads; None = ORT's default)."""
    ort = load_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise for a user
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class OnnxEncoderOutput:
    """What the encoder graph returned, per row: the source mask and every layer's cross keys/values."""

    src_keep: torch.Tensor
    cross: list[torch.Tensor]

    @property
    def out(self) -> torch.Tensor:
        """One row per sentence (beam search sizes its rows by this, as by PyTorch's encoder output)."""
        return self.src_keep

    def reorder(self, index: torch.Tensor) -> "OnnxEncoderOutput":
        return OnnxEncoderOutput(self.src_keep.index_select(0, index), [t.index_select(0, index) for t in self.cross])


class OnnxTranslator:
    """An exported SubTransformer behind ``TransformerModel``'s encode/decode calls, computed by ONNX Runtime.

    Tensors cross to and from numpy without copies; the self-attention cache lives in a ``DecoderCache``,
    so beam search reorders it exactly as it does PyTorch's.
    """

    training = False

    def __init__(self, directory: str | Path, threads: Optional[int] = None):
        directory = Path(directory)
        self.meta = read_export_config(directory)
        self.encoder = make_session(directory / ENCODER_FILE, threads)
        self.decoder = make_session(directory / DECODER_FILE, threads)
        self.tgt_vocab_size = int(self.meta["tgt_vocab_size"])
        self.src_vocab_size = int(self.meta["src_vocab_size"])
        self.layers = self.meta["decoder_layers"]
        self.decoder_inputs = self.meta["decoder"]["inputs"]

    # decoding._eval_mode toggles these; an exported graph has no training mode
    def eval(self) -> "OnnxTranslator":
        return self

    def train(self, mode: bool = True) -> "OnnxTranslator":
        return self

    def encode(self, src_tokens: torch.Tensor, config: Any = None) -> OnnxEncoderOutput:
        outputs = self.encoder.run(None, {"src_tokens": _numpy(src_tokens, np.int64)})
        return OnnxEncoderOutput(torch.from_numpy(outputs[0]), [torch.from_numpy(o) for o in outputs[1:]])

    def empty_past(self, rows: int) -> list[np.ndarray]:
        past = []
        for layer in self.layers:
            past += [np.zeros((rows, layer["self_heads"], 0, layer["head_dim_self"]), dtype=np.float32)] * 2
        return past

    def decode(self, prev_output_tokens: torch.Tensor, encoder_out: OnnxEncoderOutput, config: Any = None,
               cache: Optional[DecoderCache] = None) -> torch.Tensor:
        """Logits [rows, 1, V] of the token after each prefix, one incremental step (cache required)."""
        if cache is None:
            raise HatError("The ONNX decoder is incremental: decode with a DecoderCache.")
        rows = prev_output_tokens.size(0)
        if cache.layers:
            past = [_numpy(cache.layer(i)[key], np.float32) for i in range(len(self.layers)) for key in ("self_k", "self_v")]
        else:
            past = self.empty_past(rows)
        feed = [_numpy(prev_output_tokens[:, -1:], np.int64), _numpy(encoder_out.src_keep, np.bool_)]
        feed += [_numpy(t, np.float32) for t in encoder_out.cross] + past
        outputs = self.decoder.run(None, dict(zip(self.decoder_inputs, feed)))
        for i in range(len(self.layers)):
            layer = cache.layer(i)
            layer["self_k"], layer["self_v"] = torch.from_numpy(outputs[1 + 2 * i]), torch.from_numpy(outputs[2 + 2 * i])
        return torch.from_numpy(outputs[0]).unsqueeze(1)


def _numpy(tensor: torch.Tensor, dtype) -> np.ndarray:
    array = tensor.detach().cpu().numpy()
    return array if array.dtype == dtype else array.astype(dtype)


@torch.no_grad()
def compare_with_pytorch(model, config, directory: str | Path, length: int = 12, steps: int = 6) -> float:
    """Largest absolute difference of log-probabilities between the export in ``directory`` run by ONNX
    Runtime and ``model`` in PyTorch, on a padded check batch decoded ``steps`` steps incrementally."""
    onnx_model = OnnxTranslator(directory)
    src = check_tokens(length)
    model = model.float().cpu().eval()
    prefix = torch.full((src.size(0), steps), 7, dtype=torch.long)
    prefix[:, 0] = 2
    reference = torch.log_softmax(model(src, prefix, config), dim=-1)
    enc, cache, worst = onnx_model.encode(src), DecoderCache(), 0.0
    for step in range(1, steps + 1):
        got = torch.log_softmax(onnx_model.decode(prefix[:, :step], enc, cache=cache)[:, -1], dim=-1)
        worst = max(worst, float((got - reference[:, step - 1]).abs().max()))
    return worst
