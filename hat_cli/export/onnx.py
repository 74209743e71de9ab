"""A SubTransformer as two ONNX graphs: the encoder, and one incremental decoder step.

``encoder.onnx``: ``src_tokens`` [batch, src_len] -> ``src_keep`` [batch, src_len] (True = a real token)
and, per decoder layer i, the encoder-attention keys and values ``cross_key_i``/``cross_value_i``
[batch, heads, src_len x attended layers, head_dim]. They are computed once per sentence, as a deployed
decoder caches them; the graph therefore holds the decoder's encoder-attention projections.

``decoder.onnx``: ``tokens`` [rows, 1] (the last token of every hypothesis; rows = batch x beam),
``src_keep`` and the cross keys/values of those rows, and the self-attention cache ``past_key_i``/
``past_value_i`` [rows, heads, steps so far, head_dim] (zero steps at the start) -> ``logits`` [rows, vocab]
and the grown cache ``present_key_i``/``present_value_i``. The position of the new token is read from the
cache length, so the caller only carries tensors. Rows and lengths are dynamic axes.

The graphs are traced from the same layer code as the PyTorch model (model.py); nothing here re-implements
a layer. We use torch's TorchScript-based exporter: the torch.export-based one needs onnxscript and, for
a cache that starts empty, more shape hints than it is worth.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hat_cli.core.files import atomic_write_text, temporary_sibling
from hat_cli.core.errors import HatError
from hat_cli.model.transformer import EOS, PAD, EncoderMemory, TransformerModel, extract_subtransformer, sinusoid_table
from hat_cli.model.space import SubTransformerConfig

OPSET = 17
FORMAT = "hat-onnx"
FORMAT_VERSION = 1
ENCODER_FILE, DECODER_FILE, CONFIG_FILE = "encoder.onnx", "decoder.onnx", "config.json"
MAX_POSITIONS = 1024  # the decoder's max_target_positions (decoding.SearchSettings.max_positions)


@dataclass(frozen=True)
class LayerSignature:
    """What one decoder layer's cache tensors look like (heads differ per layer in HAT's space)."""

    self_heads: int
    ende_heads: int
    head_dim_self: int
    head_dim_ende: int
    encoder_layers_attended: int


def layer_signatures(config: SubTransformerConfig, qkv_dim: int) -> list[LayerSignature]:
    return [
        LayerSignature(
            config.decoder_self_attention_heads[i], config.decoder_ende_attention_heads[i],
            qkv_dim // config.decoder_self_attention_heads[i], qkv_dim // config.decoder_ende_attention_heads[i],
            config.encoder_layers_attended(i),
        )
        for i in range(config.decoder_layer_num)
    ]


def encoder_output_names(layers: int) -> list[str]:
    return ["src_keep"] + [f"cross_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def past_names(layers: int) -> list[str]:
    return [f"past_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def cross_names(layers: int) -> list[str]:
    return [f"cross_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def decoder_input_names(layers: int) -> list[str]:
    return ["tokens", "src_keep"] + cross_names(layers) + past_names(layers)


class EncoderGraph(nn.Module):
    """The encoder plus every decoder layer's encoder-attention key/value projection."""

    def __init__(self, model: TransformerModel, config: SubTransformerConfig):
        super().__init__()
        self.model, self.config = model, config

    def forward(self, src_tokens):
        config, model = self.config, self.model
        enc = model.encode(src_tokens, config)
        outputs = [enc.padding_mask.logical_not()]
        for i in range(config.decoder_layer_num):
            memory = enc.memory(config.encoder_layers_attended(i))
            attention = model.decoder.layers[i].encoder_attn
            keys, values = attention.project_key_value(memory.keys, memory.width)
            heads = config.decoder_ende_attention_heads[i]
            outputs += [_split_heads(keys, heads), _split_heads(values, heads)]
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One incremental decoder step for every row, with the output projection (HAT's timed unit)."""

    def __init__(self, model: TransformerModel, config: SubTransformerConfig):
        super().__init__()
        self.model, self.config = model, config
        dim = config.decoder_embed_dim
        # The table at the *super* width, sliced, exactly as SinusoidalPositions does (HAT's quirk).
        table = sinusoid_table(MAX_POSITIONS + PAD + 2, model.super_shape.decoder_embed_dim, PAD)[:, :dim]
        self.register_buffer("positions", table.to(model.output_weight().dtype), persistent=False)

    def forward(self, tokens, src_keep, *caches):
        config, model = self.config, self.model
        layers = config.decoder_layer_num
        cross, past = caches[: 2 * layers], caches[2 * layers :]
        dim = config.decoder_embed_dim
        drop = model._dropouts(dim, model.super_shape.decoder_embed_dim)
        # Step t (1-based) sits at position PAD + t; t - 1 steps are in the cache already.
        step = past[0].shape[2] + 1
        x = F.embedding(tokens, model.decoder.embed_tokens.weight[:, :dim]) * math.sqrt(dim)
        x = x + self.positions[PAD + step].expand(tokens.size(0), 1, dim)
        presents = []
        for i in range(layers):
            attended = config.encoder_layers_attended(i)
            mask = src_keep.repeat(1, attended)[:, None, None, :]
            cache = {"self_k": past[2 * i], "self_v": past[2 * i + 1], "enc_k": cross[2 * i], "enc_v": cross[2 * i + 1]}
            memory = EncoderMemory(keys=None, mask=mask, width=config.encoder_embed_dim)
            x = model.decoder.layers[i](
                x, memory, dim, config.decoder_ffn_embed_dim[i], config.decoder_self_attention_heads[i],
                config.decoder_ende_attention_heads[i], drop, cache,
            )
            presents += [cache["self_k"], cache["self_v"]]
        logits = F.linear(x, model.output_weight()[:, :dim])
        return (logits[:, -1, :], *presents)


def _split_heads(x, heads: int):
    batch, time, width = x.shape
    return x.view(batch, time, heads, width // heads).transpose(1, 2)


def empty_past(config: SubTransformerConfig, qkv_dim: int, rows: int, dtype=torch.float32) -> list[torch.Tensor]:
    """The self-attention cache before the first step: zero positions per layer."""
    past = []
    for sig in layer_signatures(config, qkv_dim):
        past += [torch.zeros(rows, sig.self_heads, 0, sig.head_dim_self, dtype=dtype)] * 2
    return past


def _dynamic_axes(layers: int) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {"src_tokens": {0: "batch", 1: "src_len"}, "src_keep": {0: "rows", 1: "src_len"},
                                       "tokens": {0: "rows"}, "logits": {0: "rows"}}
    for name in cross_names(layers):
        axes[name] = {0: "rows", 2: "memory_len"}
    for name in past_names(layers):
        axes[name] = {0: "rows", 2: "past_len"}
    for name in present_names(layers):
        axes[name] = {0: "rows", 2: "present_len"}
    return axes


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    tmp = temporary_sibling(path)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's business
            torch.onnx.export(
                module, args, str(tmp), dynamo=False, opset_version=OPSET, input_names=inputs, output_names=outputs,
                dynamic_axes={k: v for k, v in axes.items() if k in inputs or k in outputs}, do_constant_folding=True,
            )
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_tokens(length: int, batch: int = 2) -> torch.Tensor:
    """A batch of HAT's dummy sentences, the second left-padded by two, so padding is exercised."""
    src = torch.full((batch, length), 7, dtype=torch.long)
    src[:, 0] = EOS
    if batch > 1 and length > 3:
        src[1, :2] = PAD
        src[1, 2] = EOS
    return src


@torch.no_grad()
def export_onnx(
    model: TransformerModel,
    config: SubTransformerConfig,
    out_dir: str | Path,
    metadata: Optional[dict[str, Any]] = None,
    check_length: int = 12,
) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``config.json`` for ``config`` run by ``model`` (a
    SuperTransformer or a compact model that can run it). Returns the config.json document."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise HatError(f"{out_dir} is a file; the export needs a directory.")
    if not model.dims.can_run(config):
        raise HatError("The architecture does not fit inside this model.")
    model = model.float().cpu().eval()
    # Always a fresh compact copy: the export then never touches the caller's model, and tracing the
    # SuperTransformer itself gave wrong encoder-attention keys in ONNX Runtime (torch 2.13's TorchScript exporter).
    compact = extract_subtransformer(model, config).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers, qkv = config.decoder_layer_num, model.super_shape.qkv_dim
    # Grow the encoder's position table to the longest source now: tracing freezes it at its current size.
    compact.encoder.embed_positions._rows(MAX_POSITIONS + PAD + 2, torch.device("cpu"))
    axes = _dynamic_axes(layers)

    src = check_tokens(check_length)
    encoder = EncoderGraph(compact, config)
    _export(encoder, (src,), out / ENCODER_FILE, ["src_tokens"], encoder_output_names(layers), axes)
    enc_out = encoder(src)
    rows = src.size(0)
    # Trace at step 2 (a non-empty cache), so no size is constant-folded from an empty one.
    decoder = DecoderStepGraph(compact, config)
    first = decoder(torch.full((rows, 1), EOS), enc_out[0], *enc_out[1:], *empty_past(config, qkv, rows))
    tokens = torch.full((rows, 1), 7)
    _export(decoder, (tokens, enc_out[0], *enc_out[1:], *first[1:]), out / DECODER_FILE,
            decoder_input_names(layers), ["logits"] + present_names(layers), axes)

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "opset": OPSET,
        "arch": config.to_dict(),
        "super_shape": model.super_shape.to_dict(),
        "src_vocab_size": model.src_vocab_size,
        "tgt_vocab_size": model.tgt_vocab_size,
        "share_all_embeddings": model.share_all_embeddings,
        "pad": PAD,
        "eos": EOS,
        "max_positions": MAX_POSITIONS,
        "decoder_layers": [sig.__dict__ for sig in layer_signatures(config, qkv)],
        "encoder": {"file": ENCODER_FILE, "inputs": ["src_tokens"], "outputs": encoder_output_names(layers)},
        "decoder": {"file": DECODER_FILE, "inputs": decoder_input_names(layers), "outputs": ["logits"] + present_names(layers)},
        **(metadata or {}),
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(doc, indent=2) + "\n")
    return doc


def read_export_config(directory: str | Path) -> dict[str, Any]:
    """The config.json of an export directory; a HatError when it is not one."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HatError(f"{directory} is not an ONNX export of hat (it has no {CONFIG_FILE}); make one with `hat export`.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HatError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise HatError(f"{path} is not the config of a hat ONNX export (missing \"format\": \"{FORMAT}\").")
    for name in (ENCODER_FILE, DECODER_FILE):
        if not (directory / name).is_file():
            raise HatError(f"{directory} has no {name}; export it again with `hat export`.")
    return doc
