"""Model size and FLOPs with HAT's accounting (docs/METHOD.md §2.6, §8).

HAT counts parameters without embeddings and output projection (in-proj biases always at full 3·Q), and
FLOPs as 2·MACs that torchprofile traced on a teacher-forced forward of one dummy sentence (L = 30 WMT,
23 IWSLT), minus the final vocabulary projection. The closed forms below reproduce that trace term by
term — linear layers, both attention products (independent of the head count), the q scaling, LayerNorms,
the embedding-scale and position multiplies, and the few scalar ops HAT's training-mode dropout left in the
graph — and equal the published parameters and FLOPs of all 44 models (model_zoo.toml). `traced_count` runs
torchprofile on our own model, for `hat profile` to show beside them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torchprofile

from hat_cli.model.space import SubTransformerConfig, SuperShape
from hat_cli.model.transformer import TransformerModel, skip_init

# Scalar multiplies torchprofile counted per layer in HAT's traced training-mode graph (docs/METHOD.md §8).
_ENCODER_LAYER_SCALAR_OPS = 3
_DECODER_LAYER_SCALAR_OPS = 6


def count_params(config: SubTransformerConfig, qkv_dim: int = 512) -> int:
    """Non-embedding parameters of ``config`` (HAT's ``get_sampled_params_numel``)."""
    q = qkv_dim
    e, d = config.encoder_embed_dim, config.decoder_embed_dim
    total = 0
    for f in config.encoder_ffn_embed_dim:
        total += 3 * q * e + 3 * q + q * e + e  # self-attention in-proj (+ full bias) and out-proj
        total += e * f + f + f * e + e  # FFN
        total += 4 * e  # two LayerNorms
    for f in config.decoder_ffn_embed_dim:
        total += 3 * q * d + 3 * q + q * d + d  # self-attention
        total += q * d + 2 * q * e + 3 * q + q * d + d  # encoder attention: q reads D, k/v read E
        total += d * f + f + f * d + d
        total += 6 * d  # three LayerNorms
    return total


def count_macs(config: SubTransformerConfig, length: int, qkv_dim: int = 512, vocab_size: int = 0) -> int:
    """Multiply-accumulates of one teacher-forced forward on a ``length``-token sentence, HAT's way.

    ``vocab_size`` adds the final projection (HAT reports FLOPs without it).
    """
    q, n = qkv_dim, length
    e, d = config.encoder_embed_dim, config.decoder_embed_dim

    def attention(width_q: int, width_kv: int, keys: int) -> int:
        return (
            n * width_q * q  # q projection
            + 2 * keys * width_kv * q  # k and v projections
            + n * q  # q scaling
            + 2 * n * keys * q  # q·kᵀ and attention·v
            + n * q * width_q  # output projection
        )

    macs = n * e + n  # embedding scale, position computation
    for f in config.encoder_ffn_embed_dim:
        macs += attention(e, e, n) + 2 * n * e * f + 2 * n * e + _ENCODER_LAYER_SCALAR_OPS
    macs += n * d + n
    for layer, f in enumerate(config.decoder_ffn_embed_dim):
        keys = n * config.encoder_layers_attended(layer)
        macs += attention(d, d, n) + attention(d, e, keys) + 2 * n * d * f + 3 * n * d + _DECODER_LAYER_SCALAR_OPS
    return macs + n * d * vocab_size


def count_flops(config: SubTransformerConfig, length: int, qkv_dim: int = 512) -> int:
    """HAT's "FLOPs without the last layer": 2 · MACs, vocabulary projection excluded."""
    return 2 * count_macs(config, length, qkv_dim)


def torchprofile_macs(model, config: SubTransformerConfig, length: int) -> int:
    """MACs that torchprofile traces on *our* model for one teacher-forced forward of the dummy sentence
    (source ``[2, 7, ...]``, decoder input ``[7, ..., 2]``, batch 1), output projection included.

    Our graph differs from HAT's only where HAT spent extra ops: the q scaling happens inside
    scaled_dot_product_attention and no dropout ops remain in eval mode.
    """
    src = torch.full((1, length), 7, dtype=torch.long)
    src[0, 0] = 2
    prev = torch.full((1, length), 7, dtype=torch.long)
    prev[0, -1] = 2

    class _Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, s, p):
            return self.inner(s, p, config)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchprofile names each op it has no rule for (masks, repeats: no MACs)
            return int(torchprofile.profile_macs(_Wrapped(model), args=(src, prev)))
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class TracedCount:
    """torchprofile's count on our model, beside HAT's closed forms (`hat profile`)."""

    macs: int  # one teacher-forced forward, output projection included
    flops: int  # 2 x (macs - the output projection): HAT's "FLOPs without the last layer" convention

    def to_dict(self) -> dict[str, int]:
        return {"macs": self.macs, "flops": self.flops}


def traced_count(config: SubTransformerConfig, super_shape: SuperShape, length: int, vocab_sizes: tuple[int, int],
                 share_all_embeddings: bool) -> TracedCount:
    """Build a compact SubTransformer of ``config`` (weights left uninitialised: only shapes matter) and trace it.
    ``vocab_sizes``: (source, target), equal when the embeddings are shared (Task.timed_vocab_sizes)."""
    src_vocab, tgt_vocab = vocab_sizes
    with skip_init():
        model = TransformerModel.subtransformer(config, super_shape, src_vocab, tgt_vocab, share_all_embeddings)
    macs = torchprofile_macs(model, config, length)
    return TracedCount(macs, 2 * (macs - length * config.decoder_embed_dim * tgt_vocab))
