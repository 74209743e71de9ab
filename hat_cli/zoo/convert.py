"""Original HAT checkpoints (fairseq 0.8 pickles, docs/METHOD.md §9) -> hat model directories.

The released `.pt` files are pickles: an `argparse.Namespace`, the `model` state dict, `extra_state` with
pickled `fairseq.meters` objects, optimizer state. They are read with torch's restricted
(`weights_only`) unpickler, which builds only allow-listed globals: the tensor/storage rebuilders, plain
containers, `argparse.Namespace`, and inert stand-ins for the three fairseq meter classes. Any other
global (`os.system`, `builtins.eval`, a fairseq class we do not know, ...) stops the load with a
HatError naming it, before anything from the file is called. Both the legacy (pre-1.6) and the zip
format go through the same unpickler.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from hat_cli.core.errors import HatError
from hat_cli.data.dictionary import Dictionary
from hat_cli.model.directory import save_model
from hat_cli.model.space import YAML_KEYS, SubTransformerConfig, SuperShape
from hat_cli.model.transformer import TransformerModel, extract_subtransformer
from hat_cli.tasks import all_tasks, get_task

FAIRSEQ_METERS = ("AverageMeter", "TimeMeter", "StopwatchMeter")
# Buffers of fairseq modules that carry no weights (docs/METHOD.md §9.2); our models do not have them.
_IGNORED_SUFFIXES = (".version", "embed_positions._float_tensor")
_SUB_ARG_FIELDS = {key.replace("-", "_"): key for key in YAML_KEYS}  # args.<key with underscores> -> YAML key


# ------------------------------------------------------------------------------- restricted load
class InertMeter:
    """What a pickled fairseq meter becomes: the numbers it recorded, and no behaviour at all."""

    fairseq_name = "Meter"

    def __repr__(self) -> str:
        return f"{self.fairseq_name}({vars(self)})"


class AverageMeterRecord(InertMeter):
    fairseq_name = "AverageMeter"


class TimeMeterRecord(InertMeter):
    fairseq_name = "TimeMeter"


class StopwatchMeterRecord(InertMeter):
    fairseq_name = "StopwatchMeter"


_METER_STAND_INS = {"AverageMeter": AverageMeterRecord, "TimeMeter": TimeMeterRecord, "StopwatchMeter": StopwatchMeterRecord}


def _allowed_globals() -> list:
    allowed: list = [argparse.Namespace, collections.OrderedDict]
    allowed += [(cls, f"fairseq.meters.{name}") for name, cls in _METER_STAND_INS.items()]
    return allowed


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def load_restricted(path: str | os.PathLike) -> Any:
    """Unpickle a torch checkpoint allowing only the harmless globals of HAT's files (on CPU)."""
    path = Path(path)
    if path.is_dir():
        raise HatError(f"Checkpoint {path} is a directory; give the original checkpoint file (.pt).")
    if not path.is_file():
        raise HatError(f"Checkpoint {path} does not exist.")
    if not hasattr(torch.serialization, "safe_globals"):
        raise HatError("Reading original HAT checkpoints safely needs torch 2.5 or newer.")
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        match = _GLOBAL_RE.search(str(exc))
        what = f"the Python global '{match.group(1)}'" if match else f"a construct the safe loader refuses ({_unpickler_reason(exc)})"
        raise HatError(
            f"{path} refers to {what}, which a HAT checkpoint never needs; refusing to load it "
            "(nothing from the file was executed)."
        ) from None
    except Exception as exc:  # torch raises many kinds on a damaged or foreign file (IndexError, RuntimeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HatError(f"{path} is not a readable PyTorch checkpoint ({first}).") from None


def _unpickler_reason(exc: Exception) -> str:
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


# ------------------------------------------------------------------------------ checkpoint facts
@dataclass
class OriginalCheckpoint:
    path: Path
    state: dict  # fairseq names, minus the weightless buffers
    args: dict[str, Any]
    super_shape: SuperShape
    src_vocab_size: int
    tgt_vocab_size: int
    share_all_embeddings: bool
    dtype: Any

    def architecture_from_args(self) -> SubTransformerConfig | None:
        """The SubTransformer a `--train-subtransformer` run was trained as (docs/METHOD.md §9.3), if recorded."""
        if not self.args.get("train_subtransformer"):
            return None
        values = {yaml_key: self.args.get(arg) for arg, yaml_key in _SUB_ARG_FIELDS.items()}
        if any(v is None for v in values.values()):
            return None
        return SubTransformerConfig.from_mapping(values, f"the args of {self.path.name}")

    def task(self) -> str | None:
        data = str(self.args.get("data", "")).rstrip("/").split("/")[-1]
        # The task records name the folders the published runs kept their data in.
        return next((task.name for task in all_tasks() if data in task.original_data_dirs), None)


def _layer_count(state: Mapping[str, Any], prefix: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", k))}
    if indices != set(range(len(indices))):
        raise HatError(f"The checkpoint's {prefix} layers are not numbered 0..n-1 ({sorted(indices)}).")
    return len(indices)


def _shape_of(state: Mapping[str, Any], args: Mapping[str, Any], expected: SuperShape | None, source: str) -> SuperShape:
    try:
        enc_table = state["encoder.embed_tokens.weight"]
        dec_table = state["decoder.embed_tokens.weight"]
        in_proj = state["encoder.layers.0.self_attn.in_proj_weight"]
        shape = SuperShape(
            encoder_embed_dim=int(in_proj.shape[1]),
            decoder_embed_dim=int(state["decoder.layers.0.self_attn.in_proj_weight"].shape[1]),
            encoder_ffn_embed_dim=int(state["encoder.layers.0.fc1.weight"].shape[0]),
            decoder_ffn_embed_dim=int(state["decoder.layers.0.fc1.weight"].shape[0]),
            encoder_layers=_layer_count(state, "encoder"),
            decoder_layers=_layer_count(state, "decoder"),
            encoder_attention_heads=int(args.get("encoder_attention_heads") or (expected.encoder_attention_heads if expected else max(1, in_proj.shape[0] // 3 // 64))),
            decoder_attention_heads=int(args.get("decoder_attention_heads") or (expected.decoder_attention_heads if expected else max(1, in_proj.shape[0] // 3 // 64))),
            qkv_dim=int(in_proj.shape[0]) // 3,
        )
    except KeyError as exc:
        raise HatError(f"{source} is not a HAT Transformer checkpoint (its model has no {exc.args[0]}).") from None
    if enc_table.shape[1] != shape.encoder_embed_dim or dec_table.shape[1] != shape.decoder_embed_dim:
        raise HatError(f"{source}: the embedding tables are not as wide as the layers.")
    if expected is not None and expected != shape:
        raise HatError(f"{source} holds a SuperTransformer of shape {shape.to_dict()}, not the published {expected.to_dict()}.")
    return shape


def read_original(path: str | os.PathLike, expected_shape: SuperShape | None = None) -> OriginalCheckpoint:
    """Load and check an original HAT checkpoint (a training checkpoint, or a bare state dict)."""
    path = Path(path)
    loaded = load_restricted(path)
    if not isinstance(loaded, Mapping):
        raise HatError(f"{path} does not hold a checkpoint dictionary.")
    raw_state = loaded.get("model", loaded)
    if not isinstance(raw_state, Mapping):
        raise HatError(f"{path}: its 'model' entry is not a state dict.")
    args_obj = loaded.get("args")
    args = dict(vars(args_obj)) if args_obj is not None and hasattr(args_obj, "__dict__") else dict(args_obj or {})
    state = {k: v for k, v in raw_state.items() if not k.endswith(_IGNORED_SUFFIXES)}
    shape = _shape_of(state, args, expected_shape, str(path))
    separate_output = "decoder.embed_out" in state
    share = bool(args.get("share_all_embeddings", not separate_output))
    if share and separate_output:
        raise HatError(f"{path}: args say the embeddings are shared but the model has its own decoder.embed_out.")
    src_vocab = int(state["encoder.embed_tokens.weight"].shape[0])
    tgt_vocab = int(state["decoder.embed_tokens.weight"].shape[0])
    if share:
        if not torch.equal(state["encoder.embed_tokens.weight"], state["decoder.embed_tokens.weight"]):
            raise HatError(f"{path}: embeddings are meant to be shared but the encoder and decoder tables differ.")
    dtype = state["encoder.embed_tokens.weight"].dtype
    return OriginalCheckpoint(path, state, args, shape, src_vocab, tgt_vocab, share, dtype)


# ---------------------------------------------------------------------------------- conversion
def build_supertransformer(original: OriginalCheckpoint):
    """Our SuperTransformer holding the checkpoint's weights (fp32); key mismatches are reported, not hidden."""
    args = original.args
    hyper = {
        key: float(args[key])
        for key in ("dropout", "attention_dropout", "activation_dropout")
        if isinstance(args.get(key), (int, float))
    }
    # HAT's code trained every model with the unscaled encoder attention dropout (hat_dropout_quirk):
    # recorded, so that training the converted model further behaves as the original did.
    model = TransformerModel.supertransformer(
        original.super_shape, original.src_vocab_size, original.tgt_vocab_size, original.share_all_embeddings,
        hat_dropout_quirk=True, **hyper
    )
    expected = model.state_dict()
    missing = sorted(set(expected) - set(original.state))
    unexpected = sorted(set(original.state) - set(expected))
    if missing or unexpected:
        detail = f"lacks {missing[:3]}" if missing else f"has unknown tensors {unexpected[:3]}"
        raise HatError(f"{original.path} {detail}; it is not a HAT SuperTransformer-shaped checkpoint.")
    for name, tensor in original.state.items():
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(expected[name].shape):
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise HatError(f"{original.path}: {name} has shape {got}, expected {tuple(expected[name].shape)}.")
    with torch.no_grad():
        model.load_state_dict({k: v.float() for k, v in original.state.items()})
    return model.eval()


def convert_original(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    arch: SubTransformerConfig | None = None,
    task: str | None = None,
    dtype: str = "float32",
    expected_shape: SuperShape | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    arch_source: str = "given",
    data_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write ``out_dir`` (model.safetensors + config.json): the compact SubTransformer ``arch`` of the
    checkpoint, or its architecture recorded in args, or else the whole SuperTransformer.

    ``arch_source`` says where ``arch`` came from (for messages: "given", or "the zoo entry NAME" when the
    file is named like a published model). A checkpoint trained as one SubTransformer records it in its
    args, and only that architecture can be taken out of it: another one is refused, whoever named it.
    ``data_dir`` holds the dictionaries (dict.<lang>.txt) the checkpoint was trained with: their sizes are
    checked against its embedding tables and their digests recorded, so `hat test` and `hat search` refuse
    data made with other ones. Without it the model records none (and those commands say so)."""
    original = read_original(path, expected_shape)
    recorded = original.architecture_from_args()
    if arch is None:
        arch, arch_source = recorded, ("checkpoint args" if recorded is not None else None)
    elif recorded is not None and arch != recorded:
        raise HatError(
            f"{original.path.name} was trained as another SubTransformer than {arch_source} ({_first_difference(arch, recorded)}); "
            "pass --arch with the architecture recorded in its args (or leave --arch out to use it)."
        )
    task = task or original.task()
    digests = _dictionary_digests(data_dir, task, original)
    super_model = build_supertransformer(original)
    if arch is not None:
        if not super_model.dims.can_run(arch):
            raise HatError(f"The architecture does not fit inside the checkpoint's SuperTransformer {original.super_shape.to_dict()}.")
        model = extract_subtransformer(super_model, arch)
    else:
        model = super_model
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "original": original.dtype}
    if dtype not in dtypes:
        raise HatError(f"Unknown dtype '{dtype}'; choose float32, float16, bfloat16 or original.")
    model = model.to(dtypes[dtype])
    metadata = {
        "task": task,
        "dictionaries": digests,
        "seed": original.args.get("seed"),
        "training": {
            key: original.args[key]
            for key in ("arch", "data", "dropout", "attention_dropout", "lr", "max_update", "fp16", "max_tokens", "update_freq")
            if key in original.args and isinstance(original.args[key], (int, float, str, bool, list))
        },
        "converted_from": {
            "file": original.path.name,
            "sha256": _sha256(original.path),
            "dtype": str(original.dtype).replace("torch.", ""),
            "architecture": arch_source,
        },
    }
    metadata.update(extra_metadata or {})
    save_model(model, out_dir, metadata, kind="subtransformer" if arch is not None else "supertransformer")
    return {
        "path": str(out_dir),
        "kind": "subtransformer" if arch is not None else "supertransformer",
        "arch": arch.to_hat_keys() if arch is not None else None,
        "super_shape": original.super_shape.to_dict(),
        "task": metadata["task"],
        "dictionaries": digests,
    }


def _first_difference(given: SubTransformerConfig, recorded: SubTransformerConfig) -> str:
    ours, theirs = given.to_dict(), recorded.to_dict()
    field = next(k for k in ours if ours[k] != theirs[k])
    return f"its args record {field} = {theirs[field]}, not {ours[field]}"


def _dictionary_digests(data_dir: str | os.PathLike | None, task: str | None, original: OriginalCheckpoint) -> dict[str, str]:
    """sha256 of the task's two dictionaries in ``data_dir``, after checking each has as many symbols as
    the checkpoint's table on its side."""
    if data_dir is None:
        return {}
    if task is None:
        raise HatError(f"Recording the dictionaries of {original.path.name} needs its task; pass --task.")
    the_task = get_task(task)
    digests = {}
    for lang, size in ((the_task.src, original.src_vocab_size), (the_task.tgt, original.tgt_vocab_size)):
        dictionary = Dictionary.load(Path(data_dir) / f"dict.{lang}.txt")
        if len(dictionary) != size:
            raise HatError(f"{Path(data_dir) / f'dict.{lang}.txt'} has {len(dictionary)} symbols, but {original.path.name}'s "
                           f"embedding table has {size}; give the dictionaries the checkpoint was trained with.")
        digests[lang] = dictionary.sha256()
    return digests


def read_original_predictor(path: str | os.PathLike) -> dict:
    """A shipped HAT latency predictor (docs/METHOD.md §5.1): a plain state dict of the 10-400-400-400-400-1 MLP."""
    state = load_restricted(path)
    expected = {"first_layer.weight": (400, 10), "predict.weight": (1, 400)}
    if not isinstance(state, Mapping) or any(
        not isinstance(state.get(k), torch.Tensor) or tuple(state[k].shape) != s for k, s in expected.items()
    ):
        raise HatError(f"{path} is not a HAT latency predictor (first_layer [400, 10] ... predict [1, 400]).")
    return {k: v.float() for k, v in state.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

