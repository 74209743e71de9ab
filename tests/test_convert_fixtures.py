"""Build checkpoints in the exact layout of HAT's released `.pt` files (docs/METHOD.md §9.1, §9.2), for tests.

`fairseq` is not installed: a stand-in `fairseq.meters` module with fairseq 0.8's three meter classes is
put into `sys.modules` only while pickling (so the pickle names `fairseq.meters.AverageMeter` etc.) and
removed afterwards, so loading must work without it.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import types
from pathlib import Path

import torch


def _fake_fairseq_meters() -> types.ModuleType:
    module = types.ModuleType("fairseq.meters")

    class AverageMeter:
        def __init__(self):
            self.val, self.avg, self.sum, self.count = 2.5, 3.25, 13.0, 4

    class TimeMeter:
        def __init__(self):
            self.init, self.start, self.n = 0, time.time(), 1234

    class StopwatchMeter:
        def __init__(self):
            self.sum, self.n, self.start_time = 10.5, 7, None

    for cls in (AverageMeter, TimeMeter, StopwatchMeter):
        cls.__module__ = "fairseq.meters"
        cls.__qualname__ = cls.__name__
        setattr(module, cls.__name__, cls)
    return module


def original_state_dict(model, fp16: bool = True) -> "collections.OrderedDict[str, torch.Tensor]":
    """Our model's weights under fairseq's names, plus the weightless buffers fairseq also saves."""
    ours = model.state_dict()
    dtype = torch.float16 if fp16 else torch.float32
    state: collections.OrderedDict = collections.OrderedDict()
    state["encoder.version"] = torch.Tensor([3.0])
    for name, tensor in ours.items():
        state[name] = tensor.detach().to(dtype).clone()
        if name == "encoder.embed_tokens.weight":
            state["encoder.embed_positions._float_tensor"] = torch.Tensor(1)
        if name == "decoder.embed_tokens.weight":
            state["decoder.embed_positions._float_tensor"] = torch.Tensor(1)
    if model.share_all_embeddings:  # fairseq saves the one shared table under both names (same storage)
        state["decoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"]
    state["decoder.version"] = torch.Tensor([3.0])
    return state


def hat_args(model, arch_name: str, data: str, fp16: bool, sub_config=None) -> argparse.Namespace:
    shape = model.super_shape
    args = argparse.Namespace(
        arch=arch_name,
        data=data,
        seed=1,
        fp16=fp16,
        dropout=0.3,
        attention_dropout=0.1,
        activation_dropout=0.0,
        share_all_embeddings=model.share_all_embeddings,
        encoder_embed_dim=shape.encoder_embed_dim,
        decoder_embed_dim=shape.decoder_embed_dim,
        encoder_ffn_embed_dim=shape.encoder_ffn_embed_dim,
        decoder_ffn_embed_dim=shape.decoder_ffn_embed_dim,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.encoder_attention_heads,
        decoder_attention_heads=shape.decoder_attention_heads,
        qkv_dim=shape.qkv_dim,
        adam_betas="(0.9, 0.98)",
        max_tokens=4096,
        update_freq=[16],
        train_subtransformer=sub_config is not None,
    )
    if sub_config is not None:
        for key, value in sub_config.to_hat_keys().items():
            setattr(args, key.replace("-", "_"), value)
    return args


def write_original_checkpoint(
    path: Path, model, *, legacy: bool, fp16: bool = True, arch_name: str = "transformersuper_wmt_en_de",
    data: str = "data/binary/wmt16_en_de", sub_config=None, extra: dict | None = None, with_optimizer: bool = True,
) -> Path:
    """torch.save a dict shaped like fairseq 0.8's `save_state` output (legacy or zip format)."""
    meters = _fake_fairseq_meters()
    saved = {name: sys.modules.get(name) for name in ("fairseq", "fairseq.meters")}
    sys.modules["fairseq"] = types.ModuleType("fairseq")
    sys.modules["fairseq.meters"] = meters
    try:
        state = original_state_dict(model, fp16)
        checkpoint = {
            "args": hat_args(model, arch_name, data, fp16, sub_config),
            "model": state,
            "optimizer_history": [
                {
                    "criterion_name": "LabelSmoothedCrossEntropyCriterion",
                    "optimizer_name": "FP16Optimizer" if fp16 else "FairseqAdam",
                    "lr_scheduler_state": {"best": 3.91},
                    "num_updates": 40000,
                }
            ],
            "extra_state": {
                "train_iterator": {"epoch": 12, "iterations_in_epoch": 0, "shuffle": True},
                "val_loss": 3.91,
                "best": 3.88,
                "train_meters": collections.OrderedDict(
                    train_loss=meters.AverageMeter(), wps=meters.TimeMeter(), wall=meters.StopwatchMeter()
                ),
            },
        }
        if with_optimizer:
            first = next(iter(k for k in state if k.endswith("fc1.weight")))
            checkpoint["last_optimizer_state"] = {
                "state": {0: {"step": 40000, "exp_avg": torch.zeros_like(state[first], dtype=torch.float32), "exp_avg_sq": torch.zeros(3)}},
                "param_groups": [{"lr": 1e-7, "betas": (0.9, 0.98), "eps": 1e-8, "weight_decay": 0.0, "params": [0]}],
                "loss_scale": 128.0,
            }
        checkpoint.update(extra or {})
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return path


class Malicious:
    """Unpickling this runs ``touch marker`` with a general unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def write_zoo_table(tmp_path: Path, name: str, arch, shape, task: str = "wmt14.en-de", share: bool = True) -> Path:
    """A one-entry model_zoo.toml (for HAT_ZOO_FILE) naming a SubTransformer ``arch`` inside ``shape``."""
    import json

    keys = "\n".join(f"{k} = {json.dumps(v)}" for k, v in arch.to_hat_keys().items())
    dims = "\n".join(f"{k} = {v}" for k, v in shape.to_dict().items())
    table = tmp_path / "zoo.toml"
    table.write_text(
        f'[models."{name}"]\nkind = "subtransformer"\ntask = "{task}"\nshare_all_embeddings = {str(share).lower()}\n'
        f'original_url = ""\n[models."{name}".arch]\n{keys}\n[models."{name}".super_shape]\n{dims}\n'
        f'[models."{name}".hub]\nrepo = "hat-cli/x"\n'
    )
    return table
