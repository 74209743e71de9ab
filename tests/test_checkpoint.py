"""Checkpoint I/O: exact round trip of weights, optimizer and RNG state; atomicity; pruning; averaging."""

import json

import pytest
import torch

from hat_cli.training.checkpoint import (
    average_checkpoints,
    average_last,
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from hat_cli.core.errors import HatError


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(13, 6)
        self.proj = torch.nn.Linear(6, 6)
        self.out = torch.nn.Linear(6, 13, bias=False)
        self.out.weight = self.embed.weight  # tied like HAT's shared embeddings

    def forward(self, x):
        return self.out(torch.relu(self.proj(self.embed(x))))


def _train_steps(model, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randint(0, 13, (4, 5), generator=g)
        loss = model(x).logsumexp(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _fresh(seed=0):
    torch.manual_seed(seed)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.98), weight_decay=0.01)
    return model, opt


def test_round_trip_continues_bit_identically(tmp_path):
    model, opt = _fresh()
    _train_steps(model, opt, 3, seed=1)
    path = save_checkpoint(tmp_path, 3, model, opt, {"position": {"epoch": 1, "batch": 7}, "config": {"lr": 0.01}})
    assert path.name == "checkpoint_0000003"
    torch.manual_seed(1234)
    expected_random = torch.rand(3)
    _train_steps(model, opt, 2, seed=2)

    other, other_opt = _fresh(seed=99)  # different init: everything must come from the file
    torch.manual_seed(777)  # scramble RNG: restored from the checkpoint
    state = load_checkpoint(path, other, other_opt)
    assert state["updates"] == 3 and state["position"] == {"epoch": 1, "batch": 7}
    torch.manual_seed(1234)
    assert torch.equal(torch.rand(3), expected_random)
    _train_steps(other, other_opt, 2, seed=2)
    for (n, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), n
    assert other.out.weight is other.embed.weight  # tying survives loading


def test_rng_state_is_restored(tmp_path):
    model, opt = _fresh()
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path, 1, model, opt, {})
    after_save = torch.rand(4)
    torch.manual_seed(6)
    load_checkpoint(path, model, opt)
    assert torch.equal(torch.rand(4), after_save)


def test_latest_pruning_and_incomplete_directories(tmp_path):
    model, opt = _fresh()
    for updates in (10, 20, 30, 40):
        save_checkpoint(tmp_path, updates, model, opt, {}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint_0000030", "checkpoint_0000040"]
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000040"
    # a directory without state.json (a write that was killed) is never picked
    (tmp_path / "checkpoint_0000050").mkdir()
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000040"
    # the pointer is informative only: the newest complete directory wins
    (tmp_path / "last.json").unlink()
    assert latest_checkpoint(tmp_path).name == "checkpoint_0000040"
    assert latest_checkpoint(tmp_path / "nothing") is None
    assert json.loads((tmp_path / "checkpoint_0000040" / "state.json").read_text())["updates"] == 40


def test_averaging_is_the_elementwise_mean(tmp_path):
    saved = []
    for updates in (1, 2, 3):
        model, opt = _fresh(seed=updates)
        save_checkpoint(tmp_path, updates, model, opt, {})
        saved.append({k: v.clone() for k, v in model.state_dict().items()})
    avg, chosen = average_last(tmp_path, 2)
    assert [p.name for p in chosen] == ["checkpoint_0000002", "checkpoint_0000003"]
    for name, tensor in avg.items():
        assert torch.allclose(tensor, (saved[1][name] + saved[2][name]) / 2, atol=1e-7)
        assert tensor.dtype == torch.float32
    all3 = average_checkpoints(list_checkpoints(tmp_path))
    assert torch.allclose(all3["proj.weight"], sum(s["proj.weight"] for s in saved) / 3, atol=1e-7)


def test_best_checkpoint_is_the_lowest_mean_validation_loss(tmp_path):
    assert best_checkpoint(tmp_path) is None
    model, opt = _fresh(seed=1)
    save_checkpoint(tmp_path, 1, model, opt, {"metrics": {"valid_loss": {}}})  # not validated: never chosen
    assert best_checkpoint(tmp_path) is None
    losses = {2: {"largest": 3.0, "smallest": 3.2}, 3: {"largest": 2.1, "smallest": 2.5}, 4: {"largest": 2.4, "smallest": 2.0}}
    for updates, valid in losses.items():
        save_checkpoint(tmp_path, updates, model, opt, {"metrics": {"valid_loss": valid}})
    path, valid = best_checkpoint(tmp_path)
    assert path.name == "checkpoint_0000004" and valid == losses[4]  # mean 2.2 beats 2.3; ties go to the newest


def test_loading_into_the_wrong_model_is_a_clear_error(tmp_path):
    model, opt = _fresh()
    path = save_checkpoint(tmp_path, 1, model, opt, {})
    with pytest.raises(HatError, match="does not fit this model"):
        load_checkpoint(path, torch.nn.Linear(3, 3))
    with pytest.raises(HatError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "missing", model)
