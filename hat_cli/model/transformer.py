"""HAT's SuperTransformer and its SubTransformers in plain PyTorch, with one set of layer code.

Every tensor is allocated once (at super size for a SuperTransformer, at the architecture's own size for a
compact SubTransformer) and a forward pass uses the *leading slice* each architecture needs (docs/METHOD.md §2).
Slices are taken at forward time, never cached, so `.half()`, `.to()` and `load_state_dict` cannot leave
stale views behind (the trap of docs/METHOD.md §2.1). State-dict names are exactly fairseq/HAT's, so original
checkpoints load by name.

Layout is batch-first ([batch, time, channels]) throughout; attention goes through
`scaled_dot_product_attention`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hat_cli.core.compiled import compiled
from hat_cli.model.slices import autocast_dtype, matmul_slice
from hat_cli.model.space import SubTransformerConfig, SuperShape

PAD, EOS = 1, 2

# cuDNN's attention builds an execution plan for every new shape; HAT's shapes change every update (random
# SubTransformer, length-bucketed batches), which made plan building dominate training on an H200.
# Flash and memory-efficient attention need no per-shape set-up.
if hasattr(torch.backends.cuda, "enable_cudnn_sdp"):
    torch.backends.cuda.enable_cudnn_sdp(False)

# Set while building a model whose weights are copied in right after (extraction, loading): random
# initialisation of tens of millions of parameters is the slowest part of building a model on a CPU.
_SKIP_INIT = False


class skip_init:
    """Context manager: build modules with uninitialised (``torch.empty``) weights."""

    def __enter__(self):
        global _SKIP_INIT
        self._previous, _SKIP_INIT = _SKIP_INIT, True

    def __exit__(self, *exc):
        global _SKIP_INIT
        _SKIP_INIT = self._previous


# ------------------------------------------------------------------------------------- dimensions
@dataclass(frozen=True)
class ModelDims:
    """The allocated size of every tensor of a model (per layer, since compact models differ by layer)."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_ffn_dims: tuple[int, ...]
    decoder_ffn_dims: tuple[int, ...]
    qkv_dim: int

    @classmethod
    def of_super(cls, shape: SuperShape) -> "ModelDims":
        return cls(
            shape.encoder_embed_dim,
            shape.decoder_embed_dim,
            (shape.encoder_ffn_embed_dim,) * shape.encoder_layers,
            (shape.decoder_ffn_embed_dim,) * shape.decoder_layers,
            shape.qkv_dim,
        )

    @classmethod
    def of_config(cls, config: SubTransformerConfig, qkv_dim: int) -> "ModelDims":
        return cls(
            config.encoder_embed_dim,
            config.decoder_embed_dim,
            tuple(config.encoder_ffn_embed_dim),
            tuple(config.decoder_ffn_embed_dim),
            qkv_dim,
        )

    def can_run(self, config: SubTransformerConfig) -> bool:
        return (
            config.encoder_embed_dim <= self.encoder_embed_dim
            and config.decoder_embed_dim <= self.decoder_embed_dim
            and config.encoder_layer_num <= len(self.encoder_ffn_dims)
            and config.decoder_layer_num <= len(self.decoder_ffn_dims)
            and all(f <= a for f, a in zip(config.encoder_ffn_embed_dim, self.encoder_ffn_dims))
            and all(f <= a for f, a in zip(config.decoder_ffn_embed_dim, self.decoder_ffn_dims))
            and all(
                self.qkv_dim % h == 0
                for h in config.encoder_self_attention_heads
                + config.decoder_self_attention_heads
                + config.decoder_ende_attention_heads
            )
        )


# ------------------------------------------------------------------------------------- positions
def sinusoid_table(num_positions: int, width: int, padding_idx: int = PAD) -> Tensor:
    """fairseq's sinusoid table at ``width`` columns: [sin(p·f_0..), cos(p·f_0..)], pad row zero.

    HAT builds it at the *super* width and slices it, so a 512-wide model sees all 320 sines of the 640-wide
    table followed by 192 cosines (docs/METHOD.md §2.3); callers pass the super width here.
    """
    half = width // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -step)
    angles = torch.arange(num_positions, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).view(num_positions, -1)
    if width % 2 == 1:
        table = torch.cat([table, torch.zeros(num_positions, 1)], dim=1)
    table[padding_idx, :] = 0
    return table


class SinusoidalPositions(nn.Module):
    """Positions counted from the first non-pad token (left padding works); pads get the zero row."""

    def __init__(self, width: int, padding_idx: int = PAD):
        super().__init__()
        self.width = width
        self.padding_idx = padding_idx
        self._table = sinusoid_table(256, width, padding_idx)

    def _rows(self, needed: int, device) -> Tensor:
        """The table with at least ``needed`` rows, on ``device`` (grown and moved once, then reused)."""
        if needed > self._table.size(0) or self._table.device != device:
            size = max(needed, self._table.size(0))
            self._table = sinusoid_table(size, self.width, self.padding_idx).to(device)
        return self._table

    def forward(self, tokens: Tensor, dim: int) -> Tensor:
        mask = tokens.ne(self.padding_idx)
        positions = torch.cumsum(mask, dim=1, dtype=torch.long) * mask + self.padding_idx
        # Positions never exceed length + padding_idx; sizing by shape avoids a device sync.
        return self._rows(tokens.size(1) + self.padding_idx + 1, tokens.device)[:, :dim][positions]

    def at(self, step: int, tokens: Tensor, dim: int) -> Tensor:
        """The row of position ``step`` (1-based, no pads before it) for every row of ``tokens`` [B, 1]."""
        index = self.padding_idx + step
        return self._rows(index + 1, tokens.device)[index, :dim].expand(tokens.size(0), 1, dim)


# ------------------------------------------------------------------------------------- layers
def _linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], out_dim: int, in_dim: int) -> Tensor:
    """Leading-slice linear layer (HAT's LinearSuper): W[:out, :in], b[:out]."""
    return F.linear(x, matmul_slice(weight, slice(out_dim), slice(in_dim)), matmul_slice(bias, slice(out_dim)))


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        if not _SKIP_INIT:
            nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor, out_dim: int, in_dim: int) -> Tensor:
        return _linear(x, self.weight, self.bias, out_dim, in_dim)

    def forward_relu(self, x: Tensor, out_dim: int, in_dim: int) -> Tensor:
        """relu(self(x)): on a GPU without gradients (the search's scoring, decoding) as one matmul whose epilogue
        applies the bias and the ReLU, instead of a second pass over the [tokens, ffn] output (7% of a scored
        candidate's GPU time on an H100, bench/RESULTS.md). Rounding commutes with max(0, ·), so only the matmul
        kernel's own order of additions can differ. torch._addmm_activation has no backward, so training keeps
        the two steps."""
        if torch.is_grad_enabled() or not x.is_cuda:
            return F.relu(self(x, out_dim, in_dim))
        return _linear_relu_no_grad(x, self.weight, self.bias, out_dim, in_dim)


def _linear_relu_no_grad(x: Tensor, weight: Tensor, bias: Tensor, out_dim: int, in_dim: int) -> Tensor:
    """relu(x W[:out, :in]^T + b[:out]) in one addmm with a ReLU epilogue, in the dtype F.linear would compute in
    (the autocast dtype, else the weight's, float64 included; like F.linear, mixed dtypes autocast leaves alone are
    an error)."""
    dtype = autocast_dtype(weight)
    if dtype is None:
        if x.dtype != weight.dtype:
            raise RuntimeError(f"input {x.dtype} and weight {weight.dtype} differ and autocast leaves them so")
        dtype = weight.dtype
    w = matmul_slice(weight, slice(out_dim), slice(in_dim)).to(dtype)
    b = matmul_slice(bias, slice(out_dim)).to(dtype)
    out = torch._addmm_activation(b, x.reshape(-1, in_dim).to(dtype), w.t())
    return out.view(*x.shape[:-1], out_dim)


class LayerNorm(nn.Module):
    """LayerNorm over the first ``dim`` features with the leading slice of its weight and bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def after_residual(self, x: Tensor, h: Tensor, p: float, drop: "Dropouts", dim: int) -> Tensor:
        """The step after every sublayer: ``norm(x + dropout(h, p))``, compiled into one kernel (forward and
        backward) when ``drop.compiled_norms`` asks for it; otherwise the same three operations as written."""
        residual_norm = _compiled_residual_norm(drop.static_widths) if drop.compiled_norms else _residual_norm
        # No dropout, no dropout rate: a compiled function is specialised per rate, and eval needs no second one.
        return residual_norm(x, h, p if drop.training else 0.0, drop.training, self.weight[:dim], self.bias[:dim])

    def after_residual_for_matmul(self, x: Tensor, h: Tensor, p: float, drop: "Dropouts", dim: int) -> tuple[Tensor, Tensor]:
        """``after_residual``, and its output as the next matmul reads it. Without gradients under autocast with
        compiled norms (the search's scorer on a GPU), the norm's kernel also writes the copy in the autocast dtype:
        autocast would otherwise cast the fp32 output in a pass of its own before the matmul (casts were 9% of a
        scored candidate's GPU time on an H100, bench/RESULTS.md). The same rounding, so the same values.
        Everywhere else the copy is the output itself, and autocast casts it as before."""
        dtype = autocast_dtype(x)
        if drop.compiled_norms and dtype is not None and dtype != x.dtype and not torch.is_grad_enabled():
            residual_norm_and_cast = _compiled_residual_norm_and_cast(drop.static_widths)
            return residual_norm_and_cast(x, h, p if drop.training else 0.0, drop.training, self.weight[:dim], self.bias[:dim], dtype)
        x = self.after_residual(x, h, p, drop, dim)
        return x, x


def _residual_norm(x: Tensor, h: Tensor, p: float, training: bool, weight: Tensor, bias: Tensor) -> Tensor:
    return F.layer_norm(x + F.dropout(h, p, training), (weight.size(0),), weight, bias, 1e-5)


def _residual_norm_and_cast(x: Tensor, h: Tensor, p: float, training: bool, weight: Tensor, bias: Tensor,
                            dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    y = _residual_norm(x, h, p, training, weight, bias)
    return y, y.to(dtype)


@functools.cache
def _compiled_residual_norm(static_widths: bool = False):
    # Under autocast (training) x is fp32 and h bf16: eager, that is three kernels forward and more backward,
    # each reading and writing the whole activation; compiled, one each way (issue 16).
    return compiled(_residual_norm, "the residual LayerNorm", "compiled_norms", static_widths)


@functools.cache
def _compiled_residual_norm_and_cast(static_widths: bool = False):
    return compiled(_residual_norm_and_cast, "the residual LayerNorm", "compiled_norms", static_widths)


class Attention(nn.Module):
    """HAT's MultiheadAttentionSuper: q/k/v always project to qkv_dim features; heads only split them.

    Input columns are sliced to the query width (q) and key width (k, v); the packed in-proj bias is never
    sliced; the output projection maps qkv_dim back to the query width.
    """

    def __init__(self, in_width: int, qkv_dim: int, out_width: int):
        super().__init__()
        self.qkv_dim = qkv_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * qkv_dim, in_width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * qkv_dim))
        self.out_proj = Linear(qkv_dim, out_width)
        if not _SKIP_INIT:
            nn.init.xavier_uniform_(self.in_proj_weight)

    def project_query(self, x: Tensor, width: int) -> Tensor:
        q = self.qkv_dim
        return F.linear(x, matmul_slice(self.in_proj_weight, slice(q), slice(width)), matmul_slice(self.in_proj_bias, slice(q)))

    def project_key_value(self, x: Tensor, width: int) -> tuple[Tensor, Tensor]:
        q = self.qkv_dim
        kv = F.linear(x, matmul_slice(self.in_proj_weight, slice(q, None), slice(width)),
                      matmul_slice(self.in_proj_bias, slice(q, None)))
        return kv[..., :q], kv[..., q:]

    def project_self(self, x: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
        qkv = F.linear(x, matmul_slice(self.in_proj_weight, slice(None), slice(width)),
                       matmul_slice(self.in_proj_bias, slice(None)))
        return qkv.chunk(3, dim=-1)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        heads: int,
        out_width: int,
        mask: Optional[Tensor] = None,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> Tensor:
        """q: [B, Tq, Q], k/v: [B, Tk, Q] or already split [B, H, Tk, hd]; mask: [B, 1, 1, Tk] bool, True = attend."""
        batch, tq, _ = q.shape
        head_dim = self.qkv_dim // heads
        q = q.view(batch, tq, heads, head_dim).transpose(1, 2)
        if k.dim() == 3:
            k = _split_heads(k, heads)
            v = _split_heads(v, heads)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=bool(causal and mask is None and int(tq) > 1), scale=head_dim**-0.5
        )
        out = out.transpose(1, 2).reshape(batch, tq, self.qkv_dim)
        return self.out_proj(out, out_width, self.qkv_dim)


def _split_heads(x: Tensor, heads: int) -> Tensor:
    batch, time, width = x.shape
    return x.view(batch, time, heads, width // heads).transpose(1, 2)


class EncoderLayer(nn.Module):
    def __init__(self, embed_dim: int, ffn_dim: int, qkv_dim: int):
        super().__init__()
        self.self_attn = Attention(embed_dim, qkv_dim, embed_dim)
        self.self_attn_layer_norm = LayerNorm(embed_dim)
        self.fc1 = Linear(embed_dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, embed_dim)
        self.final_layer_norm = LayerNorm(embed_dim)

    def forward(self, x: Tensor, mask: Optional[Tensor], dim: int, ffn: int, heads: int, drop: "Dropouts") -> Tensor:
        q, k, v = self.self_attn.project_self(x, dim)
        h = self.self_attn.attend(q, k, v, heads, dim, mask=mask, dropout=drop.attention)
        x, x_for_matmul = self.self_attn_layer_norm.after_residual_for_matmul(x, h, drop.encoder_self_attn_residual, drop, dim)
        h = self.fc1.forward_relu(x_for_matmul, ffn, dim)
        h = F.dropout(h, drop.activation, drop.training)
        h = self.fc2(h, dim, ffn)
        return self.final_layer_norm.after_residual(x, h, drop.residual, drop, dim)


class DecoderLayer(nn.Module):
    def __init__(self, embed_dim: int, encoder_embed_dim: int, ffn_dim: int, qkv_dim: int):
        super().__init__()
        self.self_attn = Attention(embed_dim, qkv_dim, embed_dim)
        self.self_attn_layer_norm = LayerNorm(embed_dim)
        # Packed in-proj at the wider of the two widths: q reads [:D] columns, k/v read [:E].
        self.encoder_attn = Attention(max(embed_dim, encoder_embed_dim), qkv_dim, embed_dim)
        self.encoder_attn_layer_norm = LayerNorm(embed_dim)
        self.fc1 = Linear(embed_dim, ffn_dim)
        self.fc2 = Linear(ffn_dim, embed_dim)
        self.final_layer_norm = LayerNorm(embed_dim)

    def forward(
        self,
        x: Tensor,
        memory: "EncoderMemory",
        dim: int,
        ffn: int,
        self_heads: int,
        ende_heads: int,
        drop: "Dropouts",
        layer_cache: Optional[dict] = None,
    ) -> Tensor:
        q, k, v = self.self_attn.project_self(x, dim)
        if layer_cache is not None:
            k, v = _split_heads(k, self_heads), _split_heads(v, self_heads)
            if "self_k" in layer_cache:
                k = torch.cat([layer_cache["self_k"], k], dim=2)
                v = torch.cat([layer_cache["self_v"], v], dim=2)
            layer_cache["self_k"], layer_cache["self_v"] = k, v
            h = self.self_attn.attend(q, k, v, self_heads, dim, dropout=drop.attention)
        else:
            h = self.self_attn.attend(q, k, v, self_heads, dim, causal=True, dropout=drop.attention)
        x, x_for_matmul = self.self_attn_layer_norm.after_residual_for_matmul(x, h, drop.residual, drop, dim)

        q = self.encoder_attn.project_query(x_for_matmul, dim)
        if layer_cache is not None and "enc_k" in layer_cache:
            k, v = layer_cache["enc_k"], layer_cache["enc_v"]
        else:
            k, v = self.encoder_attn.project_key_value(memory.keys, memory.width)
            k, v = _split_heads(k, ende_heads), _split_heads(v, ende_heads)
            if layer_cache is not None:  # the encoder side is static: project it once per sentence
                layer_cache["enc_k"], layer_cache["enc_v"] = k, v
        h = self.encoder_attn.attend(q, k, v, ende_heads, dim, mask=memory.mask, dropout=drop.attention)
        x, x_for_matmul = self.encoder_attn_layer_norm.after_residual_for_matmul(x, h, drop.residual, drop, dim)

        h = self.fc1.forward_relu(x_for_matmul, ffn, dim)
        h = F.dropout(h, drop.activation, drop.training)
        h = self.fc2(h, dim, ffn)
        return self.final_layer_norm.after_residual(x, h, drop.residual, drop, dim)


@dataclass
class Dropouts:
    """Effective dropout rates of one forward pass (HAT scales them by sample/super width, docs/METHOD.md §2.5),
    and whether its residual steps run compiled (``TransformerModel.compiled_norms``), compiled once per width
    (``TransformerModel.static_widths``, see hat_cli/core/compiled.py) or once for all."""

    training: bool
    residual: float
    activation: float
    attention: float
    encoder_self_attn_residual: float
    compiled_norms: bool = False
    static_widths: bool = False


# ------------------------------------------------------------------------------------- encoder output
@dataclass
class EncoderMemory:
    """The keys one decoder layer attends to: 1, 2 or 3 encoder layer outputs joined along time."""

    keys: Tensor
    mask: Optional[Tensor]  # [B, 1, 1, Tk] bool, True = attend
    width: int


@dataclass
class EncoderOutput:
    out: Tensor  # [B, S, E], the last encoder layer
    layer_outputs: list[Tensor]  # outputs of the super encoder layers, identity layers repeating (docs/METHOD.md §1.4)
    padding_mask: Optional[Tensor]  # [B, S] bool, True at pads
    _memory: dict = field(default_factory=dict, repr=False)

    def memory(self, layers_attended: int) -> EncoderMemory:
        if layers_attended not in self._memory:
            if layers_attended > len(self.layer_outputs):
                raise ValueError(f"cannot attend to {layers_attended} encoder layers; the encoder has {len(self.layer_outputs)}")
            # [last ; second-last ; third-last], one softmax over all of them (docs/METHOD.md §1.4).
            parts = [self.out] + [self.layer_outputs[-i] for i in range(2, layers_attended + 1)]
            keys = torch.cat(parts, dim=1) if len(parts) > 1 else self.out
            dtype = autocast_dtype(keys)
            if dtype is not None and not torch.is_grad_enabled():
                # Every decoder layer projects these keys, and autocast would cast them for each: cast once. With
                # gradients the layers' bf16 gradients would then be summed in bf16, so training keeps autocast's casts.
                keys = keys.to(dtype)
            mask = None
            if self.padding_mask is not None:
                keep = ~self.padding_mask
                mask = keep.repeat(1, layers_attended)[:, None, None, :]
            self._memory[layers_attended] = EncoderMemory(keys, mask, self.out.size(-1))
        return self._memory[layers_attended]

    def reorder(self, index: Tensor) -> "EncoderOutput":
        return EncoderOutput(
            self.out.index_select(0, index),
            [t.index_select(0, index) for t in self.layer_outputs],
            None if self.padding_mask is None else self.padding_mask.index_select(0, index),
        )


class DecoderCache:
    """Per-layer key/value caches of incremental decoding (self-attention grows; encoder side is static)."""

    def __init__(self) -> None:
        self.layers: dict[int, dict[str, Tensor]] = {}

    def layer(self, index: int) -> dict:
        return self.layers.setdefault(index, {})

    def reorder(self, index: Tensor, include_static: bool = True) -> None:
        """Follow the beams; the encoder side (static) only needs it when sentences leave the batch."""
        for cache in self.layers.values():
            for key, value in cache.items():
                if include_static or not key.startswith("enc_"):
                    cache[key] = value.index_select(0, index)


# ------------------------------------------------------------------------------------- the model
class Encoder(nn.Module):
    def __init__(self, dims: ModelDims, vocab_size: int, positional_width: int, padding_idx: int, table_width: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, table_width, padding_idx=padding_idx)
        self.embed_positions = SinusoidalPositions(positional_width, padding_idx)
        self.layers = nn.ModuleList(EncoderLayer(dims.encoder_embed_dim, f, dims.qkv_dim) for f in dims.encoder_ffn_dims)


class Decoder(nn.Module):
    def __init__(
        self, dims: ModelDims, vocab_size: int, positional_width: int, padding_idx: int, table_width: int, separate_output: bool
    ):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, table_width, padding_idx=padding_idx)
        self.embed_positions = SinusoidalPositions(positional_width, padding_idx)
        self.layers = nn.ModuleList(
            DecoderLayer(dims.decoder_embed_dim, dims.encoder_embed_dim, f, dims.qkv_dim) for f in dims.decoder_ffn_dims
        )
        if separate_output:
            self.embed_out = nn.Parameter(torch.empty(vocab_size, dims.decoder_embed_dim))


class TransformerModel(nn.Module):
    """A SuperTransformer (super-sized tensors, any architecture of its space per forward) or a compact
    SubTransformer (tensors of one architecture) — the same code, different allocated sizes."""

    def __init__(
        self,
        dims: ModelDims,
        super_shape: SuperShape,
        src_vocab_size: int,
        tgt_vocab_size: int,
        share_all_embeddings: bool,
        default_config: SubTransformerConfig,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        padding_idx: int = PAD,
        hat_dropout_quirk: bool = False,
    ):
        super().__init__()
        if share_all_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError("shared embeddings need one joined dictionary (equal vocabulary sizes)")
        self.dims = dims
        self.super_shape = super_shape
        self.src_vocab_size = src_vocab_size
        self.tgt_vocab_size = tgt_vocab_size
        self.share_all_embeddings = share_all_embeddings
        self.default_config = default_config
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.padding_idx = padding_idx
        # HAT leaves the encoder self-attention residual dropout unscaled (docs/METHOD.md §2.5).
        self.hat_dropout_quirk = hat_dropout_quirk
        # Set by training and the search on GPUs (their compiled_norms switch); not part of the model's state.
        self.compiled_norms = False
        self.static_widths = False  # the search's scorer compiles once per width (hat_cli/core/compiled.py)

        # One shared table serves both sides, so it must be as wide as the wider of the two.
        shared_width = max(dims.encoder_embed_dim, dims.decoder_embed_dim)
        enc_table = shared_width if share_all_embeddings else dims.encoder_embed_dim
        dec_table = shared_width if share_all_embeddings else dims.decoder_embed_dim
        self.encoder = Encoder(dims, src_vocab_size, super_shape.encoder_embed_dim, padding_idx, enc_table)
        self.decoder = Decoder(
            dims, tgt_vocab_size, super_shape.decoder_embed_dim, padding_idx, dec_table, not share_all_embeddings
        )
        if share_all_embeddings:
            self.decoder.embed_tokens.weight = self.encoder.embed_tokens.weight
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        if _SKIP_INIT:
            return
        # std from the *super* width, as HAT initialises its super tables (docs/METHOD.md §2.2).
        for table in (self.encoder.embed_tokens.weight, self.decoder.embed_tokens.weight):
            nn.init.normal_(table, mean=0.0, std=self.super_shape.encoder_embed_dim**-0.5)
            with torch.no_grad():
                table[self.padding_idx].zero_()
        if not self.share_all_embeddings:
            nn.init.normal_(self.decoder.embed_out, mean=0.0, std=self.super_shape.decoder_embed_dim**-0.5)

    # ---------------------------------------------------------------------------------- builders
    @classmethod
    def supertransformer(
        cls, shape: SuperShape, src_vocab_size: int, tgt_vocab_size: int, share_all_embeddings: bool, **kwargs
    ) -> "TransformerModel":
        return cls(ModelDims.of_super(shape), shape, src_vocab_size, tgt_vocab_size, share_all_embeddings, full_config(shape), **kwargs)

    @classmethod
    def subtransformer(
        cls,
        config: SubTransformerConfig,
        super_shape: SuperShape,
        src_vocab_size: int,
        tgt_vocab_size: int,
        share_all_embeddings: bool,
        **kwargs,
    ) -> "TransformerModel":
        """A freshly initialised compact model of one architecture (positions and dropout still refer to
        ``super_shape``, so it computes exactly what the SuperTransformer computes for that config)."""
        return cls(
            ModelDims.of_config(config, super_shape.qkv_dim),
            super_shape,
            src_vocab_size,
            tgt_vocab_size,
            share_all_embeddings,
            config,
            **kwargs,
        )

    @property
    def is_compact(self) -> bool:
        return self.dims != ModelDims.of_super(self.super_shape)

    @property
    def config(self) -> SubTransformerConfig:
        return self.default_config

    def hyperparameters(self) -> dict:
        return {
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "activation_dropout": self.activation_dropout,
            "padding_idx": self.padding_idx,
            "hat_dropout_quirk": self.hat_dropout_quirk,
        }

    def output_weight(self) -> Tensor:
        return self.decoder.embed_tokens.weight if self.share_all_embeddings else self.decoder.embed_out

    # ---------------------------------------------------------------------------------- forward
    def _resolve(self, config: Optional[SubTransformerConfig]) -> SubTransformerConfig:
        config = config or self.default_config
        if not self.dims.can_run(config):
            raise ValueError("this model's weights are too small for the requested architecture")
        return config

    def _dropouts(self, width: int, super_width: int) -> Dropouts:
        scale = width / super_width
        residual = self.dropout * scale
        return Dropouts(
            training=self.training,
            residual=residual,
            activation=self.activation_dropout * scale,
            attention=self.attention_dropout if self.training else 0.0,
            encoder_self_attn_residual=self.dropout if self.hat_dropout_quirk else residual,
            compiled_norms=self.compiled_norms,
            static_widths=self.static_widths,
        )

    def encode(self, src_tokens: Tensor, config: Optional[SubTransformerConfig] = None) -> EncoderOutput:
        config = self._resolve(config)
        dim = config.encoder_embed_dim
        drop = self._dropouts(dim, self.super_shape.encoder_embed_dim)
        enc = self.encoder
        # F.embedding (not indexing): its backward is a fast dense scatter, indexing's a slow sort.
        x = F.embedding(src_tokens, enc.embed_tokens.weight[:, :dim]) * math.sqrt(dim)
        x = x + enc.embed_positions(src_tokens, dim).to(x.dtype)
        x = F.dropout(x, drop.residual, self.training)
        padding = src_tokens.eq(self.padding_idx)
        # Always masked (no `padding.any()` check): that check would cost a host-device sync per batch.
        mask = (~padding)[:, None, None, :]
        outputs = []
        for i in range(config.encoder_layer_num):
            x = enc.layers[i](x, mask, dim, config.encoder_ffn_embed_dim[i], config.encoder_self_attention_heads[i], drop)
            outputs.append(x)
        # Identity super layers still append their input (docs/METHOD.md §1.4), so -2/-3 index the super list.
        outputs.extend([x] * (self.super_shape.encoder_layers - config.encoder_layer_num))
        return EncoderOutput(x, outputs, padding)

    def decode(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOutput,
        config: Optional[SubTransformerConfig] = None,
        cache: Optional[DecoderCache] = None,
    ) -> Tensor:
        """Logits [B, T, V]; with a cache only the last position is computed ([B, 1, V])."""
        config = self._resolve(config)
        dim = config.decoder_embed_dim
        drop = self._dropouts(dim, self.super_shape.decoder_embed_dim)
        dec = self.decoder
        tokens = prev_output_tokens
        if cache is not None:
            # Incremental prefixes hold no pads: step t sits at position padding_idx + t.
            tokens = tokens[:, -1:]
            positions = dec.embed_positions.at(prev_output_tokens.size(1), tokens, dim)
        else:
            positions = dec.embed_positions(prev_output_tokens, dim)
        x = F.embedding(tokens, dec.embed_tokens.weight[:, :dim]) * math.sqrt(dim)
        x = x + positions.to(x.dtype)
        x = F.dropout(x, drop.residual, self.training)
        for i in range(config.decoder_layer_num):
            memory = encoder_out.memory(config.encoder_layers_attended(i))
            x = dec.layers[i](
                x,
                memory,
                dim,
                config.decoder_ffn_embed_dim[i],
                config.decoder_self_attention_heads[i],
                config.decoder_ende_attention_heads[i],
                drop,
                None if cache is None else cache.layer(i),
            )
        return F.linear(x, matmul_slice(self.output_weight(), slice(None), slice(dim)))

    def forward(
        self, src_tokens: Tensor, prev_output_tokens: Tensor, config: Optional[SubTransformerConfig] = None
    ) -> Tensor:
        config = self._resolve(config)
        return self.decode(prev_output_tokens, self.encode(src_tokens, config), config)


def full_config(shape: SuperShape) -> SubTransformerConfig:
    """The architecture that uses every allocated weight (super heads, standard encoder attention)."""
    return SubTransformerConfig(
        encoder_embed_dim=shape.encoder_embed_dim,
        decoder_embed_dim=shape.decoder_embed_dim,
        encoder_layer_num=shape.encoder_layers,
        decoder_layer_num=shape.decoder_layers,
        encoder_ffn_embed_dim=(shape.encoder_ffn_embed_dim,) * shape.encoder_layers,
        encoder_self_attention_heads=(shape.encoder_attention_heads,) * shape.encoder_layers,
        decoder_ffn_embed_dim=(shape.decoder_ffn_embed_dim,) * shape.decoder_layers,
        decoder_self_attention_heads=(shape.decoder_attention_heads,) * shape.decoder_layers,
        decoder_ende_attention_heads=(shape.decoder_attention_heads,) * shape.decoder_layers,
        decoder_arbitrary_ende_attn=(-1,) * shape.decoder_layers,
    )


# ------------------------------------------------------------------------------------- extraction
@torch.no_grad()
def extract_subtransformer(model: TransformerModel, config: SubTransformerConfig) -> TransformerModel:
    """A compact model holding only the leading slices ``config`` uses (docs/METHOD.md §9.3); same outputs."""
    if not model.dims.can_run(config):
        raise ValueError("the architecture does not fit inside this model")
    reference = model.output_weight()
    with skip_init():  # every weight is overwritten next
        compact = TransformerModel.subtransformer(
            config,
            model.super_shape,
            model.src_vocab_size,
            model.tgt_vocab_size,
            model.share_all_embeddings,
            **model.hyperparameters(),
        )
    compact = compact.to(device=reference.device, dtype=reference.dtype)
    source = model.state_dict()
    for name, tensor in compact.state_dict().items():
        tensor.copy_(source[name][tuple(slice(0, n) for n in tensor.shape)])
    compact.train(model.training)
    return compact
