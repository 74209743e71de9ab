"""``hat-mlp``: HAT's latency predictor (docs/METHOD.md §5.1).

10 features / feature-norm, 400x3 hidden ReLU MLP, Adam lr 1e-5, 5000 steps of batch 128, MSE on
latency / lat-norm. Also reads the 8 MLPs HAT shipped (pulled from the zoo).
"""

from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from hat_cli.core.errors import HatError
from hat_cli.latency.predictors.base import FEATURE_NORM, LatencyRows, Predictor, register_predictor_kind


@register_predictor_kind
class HatMlpPredictor(Predictor):
    """HAT's latency MLP (docs/METHOD.md §5.1), state-dict names as HAT's ``Net``."""

    kind = "hat-mlp"
    tensor_dtype = np.float32
    fit_steps = 5000

    def __init__(self, state: dict[str, np.ndarray], lat_norm: float, feature_norm: Sequence[float] = FEATURE_NORM, training=None):
        expected = {"first_layer.weight", "first_layer.bias", "predict.weight", "predict.bias"}
        if not expected <= set(state):
            raise HatError(f"A HAT latency predictor needs the keys {sorted(expected)} and layers.N.*; got {sorted(state)[:6]}.")
        self.state = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        try:
            self.hidden = sorted(int(k.split(".")[1]) for k in self.state if k.startswith("layers.") and k.endswith(".weight"))
        except ValueError:
            raise HatError(f"A HAT latency predictor names its hidden layers layers.N.*; got {sorted(state)[:6]}.") from None
        if len(feature_norm) != 10 or not all(float(v) for v in feature_norm):
            raise HatError("A HAT latency predictor takes exactly 10 features, each with a non-zero normalisation.")
        self._check_shapes()
        self.lat_norm = float(lat_norm)
        self.feature_norm = tuple(float(v) for v in feature_norm)
        self.training = training or {}

    def _check_shapes(self) -> None:
        """10 -> hidden -> ... -> 1, every weight [out, in] with its bias [out]: a damaged file is a sentence
        here, not a matmul error at the first prediction."""
        s, width = self.state, 10
        for name in ["first_layer", *(f"layers.{i}" for i in self.hidden), "predict"]:
            weight, bias = s.get(f"{name}.weight"), s.get(f"{name}.bias")
            if weight is None or bias is None or weight.ndim != 2 or bias.shape != weight.shape[:1] or weight.shape[1] != width:
                shapes = [None if t is None else list(t.shape) for t in (weight, bias)]
                raise HatError(f"A HAT latency predictor's {name} must be a weight [out, {width}] with a bias [out]; got {shapes}.")
            width = weight.shape[0]
        if width != 1:
            raise HatError(f"A HAT latency predictor ends in one output (predict.weight [1, hidden]), not {width}.")

    def predict_rows(self, rows: LatencyRows) -> np.ndarray:
        s = self.state
        h = np.maximum(rows.features / np.array(self.feature_norm) @ s["first_layer.weight"].T + s["first_layer.bias"], 0)
        for i in self.hidden:
            h = np.maximum(h @ s[f"layers.{i}.weight"].T + s[f"layers.{i}.bias"], 0)
        return (h @ s["predict.weight"].T + s["predict.bias"])[:, 0] * self.lat_norm

    def tensors(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    @classmethod
    def from_saved(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "HatMlpPredictor":
        return cls(tensors, meta["lat_norm"], meta["feature_norm"], meta.get("training"))

    @classmethod
    def fit(cls, train: LatencyRows, lat_norm: float, seed: int, steps: int = fit_steps, batch: int = 128, lr: float = 1e-5, hidden: int = 400, layers: int = 3, progress=None) -> "HatMlpPredictor":
        # Lazily: torch only fits the MLP; predicting is numpy, and `hat search` and `hat fit-predictor
        # --model layer-cost load this module without needing torch.
        import torch
        from torch import nn

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # 128x400 matmuls: extra threads only add synchronisation overhead
        try:
            return cls._fit(torch, nn, train, lat_norm, seed, steps, batch, lr, hidden, layers, progress)
        finally:
            torch.set_num_threads(threads)

    @classmethod
    def _fit(cls, torch, nn, train, lat_norm, seed, steps, batch, lr, hidden, layers, progress) -> "HatMlpPredictor":
        torch.manual_seed(seed)
        rng = random.Random(seed)
        first = nn.Linear(10, hidden)
        hidden_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        head = nn.Linear(hidden, 1)
        params = list(first.parameters()) + list(hidden_layers.parameters()) + list(head.parameters())
        optimizer = torch.optim.Adam(params, lr=lr)
        x = torch.tensor(train.features / np.array(FEATURE_NORM), dtype=torch.float32)
        y = torch.tensor(train.total_ms / lat_norm, dtype=torch.float32)
        indices = list(range(len(train)))
        size = min(batch, len(indices))
        for step in range(steps):
            pick = rng.sample(indices, size)  # HAT: random.sample without replacement, every step
            h = torch.relu(first(x[pick]))
            for layer in hidden_layers:
                h = torch.relu(layer(h))
            loss = torch.mean((head(h)[:, 0] - y[pick]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if progress and step % 100 == 99:
                progress(step + 1, steps)
        state = {"first_layer.weight": first.weight, "first_layer.bias": first.bias, "predict.weight": head.weight, "predict.bias": head.bias}
        for i, layer in enumerate(hidden_layers):
            state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = layer.weight, layer.bias
        state = {k: v.detach().numpy().astype(np.float64) for k, v in state.items()}
        return cls(state, lat_norm, FEATURE_NORM, {"steps": steps, "batch": batch, "lr": lr, "seed": seed})


def from_published_hat_state_dict(state_dict: dict, lat_norm: float, feature_norm: Sequence[float] = FEATURE_NORM) -> HatMlpPredictor:
    """One of HAT's 8 shipped MLP predictors (torch or numpy tensors) as a hat predictor."""
    state = {k: (v.detach().cpu().double().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state_dict.items()}
    return HatMlpPredictor(state, lat_norm, feature_norm, {"source": "published HAT predictor"})
