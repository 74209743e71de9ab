"""Model directories: ``model.safetensors`` + ``config.json``. No pickle anywhere.

``config.json`` holds everything needed to rebuild the module (kind, super shape, architecture, vocabulary
sizes, sharing, dropout settings) plus provenance (task, dictionary hashes, training settings, seed).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, make_parent
from hat_cli.core.tensors import load_tensors, save_tensors
from hat_cli.model.space import SubTransformerConfig, SuperShape

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
_TIED_NAME = "decoder.embed_tokens.weight"  # with shared embeddings: the same tensor as the encoder's


def describe(model, kind: str | None = None, **metadata: Any) -> dict[str, Any]:
    """The config.json document of ``model`` (metadata such as task/dictionaries/training is merged in).

    ``kind`` overrides what the tensors suggest: a SubTransformer extracted at the full super size has the
    super model's tensors but is still the one architecture it was extracted as."""
    doc = {
        "format": "hat-cli",
        "format_version": FORMAT_VERSION,
        # A SubTransformer as wide and deep as its SuperTransformer has the same tensors; "arch" still says
        # which architecture it computes (e.g. attending to two encoder layers), and loading honours it.
        "kind": kind or ("subtransformer" if model.is_compact else "supertransformer"),
        "super_shape": model.super_shape.to_dict(),
        "arch": model.config.to_dict(),
        "src_vocab_size": model.src_vocab_size,
        "tgt_vocab_size": model.tgt_vocab_size,
        "share_all_embeddings": model.share_all_embeddings,
        "hyperparameters": model.hyperparameters(),
    }
    doc.update(metadata)
    return doc


def save_model(model, directory: str | os.PathLike, metadata: dict[str, Any] | None = None, kind: str | None = None) -> Path:
    """Write ``model`` into ``directory`` atomically (weights first, then config.json)."""
    directory = Path(directory)
    make_parent(directory / CONFIG_FILE)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if model.share_all_embeddings:
        state.pop(_TIED_NAME, None)
    save_tensors(state, directory / WEIGHTS_FILE, {"format": "hat-cli"})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(describe(model, kind, **(metadata or {})), indent=2) + "\n")
    return directory


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise HatError(f"{directory} is not a hat model directory (it has no {CONFIG_FILE}).")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HatError(f"{path} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != "hat-cli":
        raise HatError(f"{path} is not a hat model config (missing \"format\": \"hat-cli\").")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HatError(f"{path} was written by a newer hat (format {version}); upgrade hat-cli.")
    return meta


# Bounds far beyond any HAT model, so a damaged config.json is refused before memory is allocated for it.
MAX_VOCAB = 1 << 21
MAX_WIDTH = 1 << 15
MAX_LAYERS = 64
MAX_PARAMETERS = 1 << 32
# config.json's hyperparameters -> what a valid value is (for the sentence refusing another one)
HYPERPARAMETERS = {
    "dropout": "is no probability from 0 to below 1", "attention_dropout": "is no probability from 0 to below 1",
    "activation_dropout": "is no probability from 0 to below 1", "padding_idx": "is no symbol id of the vocabularies",
    "hat_dropout_quirk": "is neither true nor false",
}


def check_model_config(meta: dict[str, Any], source: str = CONFIG_FILE) -> None:
    """A HatError naming ``source`` unless ``meta`` describes a model that can be built: a known kind,
    positive sizes within bounds, one vocabulary when embeddings are shared, an architecture that fits."""

    def whole(value: Any, name: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise HatError(f"{source}: {name} is {value!r}; it must be a whole number from {low} to {high}.")
        return value

    if meta.get("kind") not in ("subtransformer", "supertransformer"):
        raise HatError(f"{source}: kind is {meta.get('kind')!r}; expected subtransformer or supertransformer.")
    shape = meta.get("super_shape")
    if not isinstance(shape, dict) or set(shape) != {f.name for f in dataclasses.fields(SuperShape)}:
        raise HatError(f"{source}: super_shape must hold exactly {', '.join(f.name for f in dataclasses.fields(SuperShape))}.")
    for name, value in shape.items():
        whole(value, f"super_shape.{name}", 1, MAX_LAYERS if name.endswith("layers") or name.endswith("heads") else MAX_WIDTH)
    for name in ("src_vocab_size", "tgt_vocab_size"):
        whole(meta.get(name), name, 4, MAX_VOCAB)
    if not isinstance(meta.get("share_all_embeddings"), bool):
        raise HatError(f"{source}: share_all_embeddings must be true or false.")
    if meta["share_all_embeddings"] and meta["src_vocab_size"] != meta["tgt_vocab_size"]:
        raise HatError(f"{source}: shared embeddings need one vocabulary, but src_vocab_size is {meta['src_vocab_size']} "
                       f"and tgt_vocab_size {meta['tgt_vocab_size']}.")
    shape_obj = SuperShape(**shape)
    width = max(shape_obj.encoder_embed_dim, shape_obj.decoder_embed_dim)
    layer = 4 * width * shape_obj.qkv_dim + 2 * width * max(shape_obj.encoder_ffn_embed_dim, shape_obj.decoder_ffn_embed_dim)
    estimate = (meta["src_vocab_size"] + meta["tgt_vocab_size"]) * width + 2 * (shape_obj.encoder_layers + shape_obj.decoder_layers) * layer
    if estimate > MAX_PARAMETERS:
        raise HatError(f"{source} describes a model of about {estimate:.3g} parameters; that is no HAT model (damaged file?).")
    arch = meta.get("arch")
    if meta["kind"] == "subtransformer" or arch:
        try:
            config = SubTransformerConfig.from_dict(arch)
            fits = config.fits(shape_obj) and min(config.encoder_layer_num, config.decoder_layer_num) >= 1
        except (KeyError, TypeError, ValueError):
            raise HatError(f"{source}: arch is not a SubTransformer architecture (the 10 fields of HAT's YAML).") from None
        if not fits:
            raise HatError(f"{source}: arch does not fit inside super_shape.")
    hyper = meta.get("hyperparameters", {})
    if not isinstance(hyper, dict) or not set(hyper) <= set(HYPERPARAMETERS):
        raise HatError(f"{source}: hyperparameters must be a JSON object with some of {', '.join(HYPERPARAMETERS)}.")
    for name, value in hyper.items():
        if name == "hat_dropout_quirk":
            ok = isinstance(value, bool)
        elif name == "padding_idx":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < min(meta["src_vocab_size"], meta["tgt_vocab_size"])
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
        if not ok:
            raise HatError(f"{source}: hyperparameters.{name} is {value!r}, which {HYPERPARAMETERS[name]}.")


def build_from_metadata(meta: dict[str, Any], source: str = CONFIG_FILE):
    """The module described by a config.json, with uninitialised weights (they are loaded next)."""
    # Lazily: torch. Reading a directory's config.json (resolving --arch DIR) must not import it.
    from hat_cli.model.transformer import TransformerModel, skip_init

    check_model_config(meta, source)
    with skip_init():
        return _build(meta, TransformerModel)


def _build(meta: dict[str, Any], TransformerModel):

    try:
        shape = SuperShape(**meta["super_shape"])
        hyper = dict(meta.get("hyperparameters", {}))
        common = (meta["src_vocab_size"], meta["tgt_vocab_size"], bool(meta["share_all_embeddings"]))
        if meta["kind"] == "supertransformer":
            model = TransformerModel.supertransformer(shape, *common, **hyper)
            if meta.get("arch"):  # full-size weights trained for one architecture (see `describe`)
                model.default_config = SubTransformerConfig.from_dict(meta["arch"])
            return model
        if meta["kind"] == "subtransformer":
            return TransformerModel.subtransformer(SubTransformerConfig.from_dict(meta["arch"]), shape, *common, **hyper)
    except (KeyError, TypeError, ValueError) as exc:
        raise HatError(f"The model config is incomplete or malformed ({exc}).") from None
    raise HatError(f"Unsupported model kind '{meta.get('kind')}'; expected subtransformer or supertransformer.")


def load_model(directory: str | os.PathLike, device: str | None = None):
    """Rebuild the model of a directory written by :func:`save_model`; returns ``(model, metadata)``."""
    directory = Path(directory)
    meta = read_metadata(directory)
    model = build_from_metadata(meta, str(directory / CONFIG_FILE))
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise HatError(f"{directory} has no {WEIGHTS_FILE}.")
    state = load_tensors(weights)
    expected = model.state_dict()
    if model.share_all_embeddings and _TIED_NAME not in state and "encoder.embed_tokens.weight" in state:
        state[_TIED_NAME] = state["encoder.embed_tokens.weight"]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise HatError(f"{weights} does not match its config.json ({detail}).")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise HatError(f"{weights}: tensor {name} has shape {tuple(tensor.shape)}, config.json implies {tuple(expected[name].shape)}.")
    dtype = state["encoder.embed_tokens.weight"].dtype
    model = model.to(dtype)
    model.load_state_dict(state)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, meta


def check_data_matches(meta: dict[str, Any], data, label: str, model=None) -> list[str]:
    """Refuse data tokenised with other dictionaries than the model was trained with (and, given the
    model, vocabularies of another size): its losses or translations would mean nothing. Returns a
    sentence for each dictionary the model records no digest of (nothing could be checked: say so)."""
    recorded = (meta or {}).get("dictionaries") or {}
    if not isinstance(recorded, dict):
        recorded = {}
    unchecked = []
    for lang, dictionary in ((data.src_lang, data.src_dict), (data.tgt_lang, data.tgt_dict)):
        expected = recorded.get(lang)
        if not expected:
            unchecked.append(lang)
        elif expected != dictionary.sha256():
            raise HatError(
                f"The {lang} dictionary of the data differs from the one model {label} was trained with "
                f"(sha256 {dictionary.sha256()[:12]}… vs {expected[:12]}…); use the matching --data-dir."
            )
    if model is not None:
        for side, dictionary, size in (("source", data.src_dict, model.src_vocab_size), ("target", data.tgt_dict, model.tgt_vocab_size)):
            if len(dictionary) != size:
                raise HatError(f"The {side} dictionary has {len(dictionary)} symbols but model {label} expects {size}.")
    if not unchecked:
        return []
    return [f"model {label} records no digest of its {' and '.join(dict.fromkeys(unchecked))} dictionary, so the data's "
            "dictionaries could only be checked for size (`hat zoo convert --data-dir` records them)."]
