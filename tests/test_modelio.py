"""Model directories: safetensors + config.json, strict loading, clear errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hat_cli.core.errors import HatError
from hat_cli.model.transformer import TransformerModel, extract_subtransformer
from hat_cli.model.directory import load_model, save_model
from hat_cli.model.space import SearchSpace


@pytest.mark.parametrize("share", [True, False])
def test_round_trip_keeps_outputs(tmp_path, share):
    space = SearchSpace.builtin("demo")
    model = TransformerModel.supertransformer(space.shape, 40, 40 if share else 30, share).eval()
    sub = extract_subtransformer(model, space.sample(random.Random(1)))
    src = torch.randint(4, 40, (2, 6))
    tgt = torch.randint(4, 30, (2, 5))
    for original in (model, sub):
        path = save_model(original, tmp_path / "m", {"task": "demo", "seed": 3})
        loaded, meta = load_model(path)
        assert meta["task"] == "demo" and meta["kind"] == ("subtransformer" if original is sub else "supertransformer")
        assert torch.equal(loaded(src, tgt), original(src, tgt))
        if share:
            assert loaded.decoder.embed_tokens.weight is loaded.encoder.embed_tokens.weight


def test_full_size_subtransformer_keeps_its_architecture(tmp_path):
    """A SubTransformer as wide and deep as the SuperTransformer, attending to the last two encoder layers,
    has the SuperTransformer's tensors; reloaded, it must still attend to two layers (an H200 run scored
    such a model with the default one-layer attention: BLEU 0 instead of ~40)."""
    import dataclasses

    space = SearchSpace.builtin("multi30k")
    largest = space.largest()
    config = dataclasses.replace(largest, decoder_arbitrary_ende_attn=[1] * largest.decoder_layer_num)
    model = TransformerModel.subtransformer(config, space.shape, 50, 50, True).eval()
    assert not model.is_compact
    loaded, meta = load_model(save_model(model, tmp_path / "m", {"task": "multi30k.de-en"}))
    assert loaded.config == config
    src, tgt = torch.randint(4, 50, (2, 7)), torch.randint(4, 50, (2, 5))
    assert torch.equal(loaded(src, tgt), model(src, tgt))


def test_nothing_but_safetensors_and_json_is_written(tmp_path):
    space = SearchSpace.builtin("demo")
    save_model(TransformerModel.supertransformer(space.shape, 20, 20, True), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["format"] == "hat-cli"


def test_corrupt_or_foreign_directories_are_refused(tmp_path):
    with pytest.raises(HatError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(HatError, match="not valid JSON"):
        load_model(tmp_path)
    space = SearchSpace.builtin("demo")
    save_model(TransformerModel.supertransformer(space.shape, 20, 20, True), tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated download
    with pytest.raises(HatError, match="not a readable safetensors"):
        load_model(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["kind"] = "lstm"
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(HatError, match="kind is .lstm.; expected subtransformer"):
        load_model(tmp_path)
