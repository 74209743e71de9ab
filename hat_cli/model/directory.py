"""Model directories: ``model.safetensors`` + ``config.json``. No pickle anywhere.

``config.json`` holds everything needed to rebuild the module (kind, super shape, architecture, vocabulary
sizes, sharing, dropout settings) plus provenance (task, dictionary hashes, training settings, seed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, temporary_sibling
from hat_cli.model.space import SubTransformerConfig, SuperShape

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
_TIED_NAME = "decoder.embed_tokens.weight"  # with shared embeddings: the same tensor as the encoder's


def describe(model, **metadata: Any) -> dict[str, Any]:
    """The config.json document of ``model`` (metadata such as task/dictionaries/training is merged in)."""
    doc = {
        "format": "hat-cli",
        "format_version": FORMAT_VERSION,
        # A SubTransformer as wide and deep as its SuperTransformer has the same tensors; "arch" still says
        # which architecture it computes (e.g. attending to two encoder layers), and loading honours it.
        "kind": "subtransformer" if model.is_compact else "supertransformer",
        "super_shape": model.super_shape.to_dict(),
        "arch": model.config.to_dict(),
        "src_vocab_size": model.src_vocab_size,
        "tgt_vocab_size": model.tgt_vocab_size,
        "share_all_embeddings": model.share_all_embeddings,
        "hyperparameters": model.hyperparameters(),
    }
    doc.update(metadata)
    return doc


def save_model(model, directory: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` into ``directory`` atomically (weights first, then config.json)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if model.share_all_embeddings:
        state.pop(_TIED_NAME, None)
    tmp = temporary_sibling(directory / WEIGHTS_FILE)
    try:
        save_file(state, str(tmp), metadata={"format": "hat-cli"})
        os.replace(tmp, directory / WEIGHTS_FILE)
    finally:
        if tmp.exists():
            tmp.unlink()
    atomic_write_text(directory / CONFIG_FILE, json.dumps(describe(model, **(metadata or {})), indent=2) + "\n")
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
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise HatError(f"{path} was written by a newer hat (format {meta['format_version']}); upgrade hat-cli.")
    return meta


def build_from_metadata(meta: dict[str, Any]):
    """The module described by a config.json, with uninitialised weights (they are loaded next)."""
    # Lazily: torch. Reading a directory's config.json (resolving --arch DIR) must not import it.
    from hat_cli.model.transformer import TransformerModel, skip_init

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
    except (KeyError, TypeError) as exc:
        raise HatError(f"The model config is incomplete or malformed ({exc}).") from None
    raise HatError(f"Unsupported model kind '{meta.get('kind')}'; expected subtransformer or supertransformer.")


def load_model(directory: str | os.PathLike, device: str | None = None):
    """Rebuild the model of a directory written by :func:`save_model`; returns ``(model, metadata)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_metadata(directory)
    model = build_from_metadata(meta)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise HatError(f"{directory} has no {WEIGHTS_FILE}.")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise HatError(f"{weights} is not a readable safetensors file ({exc}).") from None
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


def check_data_matches(meta: dict[str, Any], data, label: str, model=None) -> None:
    """Refuse data tokenised with other dictionaries than the model was trained with (and, given the
    model, vocabularies of another size): its losses or translations would mean nothing."""
    recorded = (meta or {}).get("dictionaries") or {}
    for lang, dictionary in ((data.src_lang, data.src_dict), (data.tgt_lang, data.tgt_dict)):
        expected = recorded.get(lang)
        if expected and expected != dictionary.sha256():
            raise HatError(
                f"The {lang} dictionary of the data differs from the one model {label} was trained with "
                f"(sha256 {dictionary.sha256()[:12]}… vs {expected[:12]}…); use the matching --data-dir."
            )
    if model is None:
        return
    for side, dictionary, size in (("source", data.src_dict, model.src_vocab_size), ("target", data.tgt_dict, model.tgt_vocab_size)):
        if len(dictionary) != size:
            raise HatError(f"The {side} dictionary has {len(dictionary)} symbols but model {label} expects {size}.")
