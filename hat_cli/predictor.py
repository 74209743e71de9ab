"""Latency predictors: HAT's MLP (HAT-SPEC §5) and hat's default, a per-layer cost model.

Both map architectures to total latency (encoder + decoder) in ms and predict with numpy only, so the
search loop never needs torch for them.

``layer-cost`` (the default) is ridge regression on physically motivated terms. Latency is close to a sum
of per-layer costs, so the features are sums over layers: for every per-layer knob a piecewise-linear
("tent") encoding of its value, alone and multiplied by the widths it interacts with, plus global terms
(embedding widths, which also set the size of the vocabulary projection) and the layer-count products of
HAT's averaged features. Two kinds of term are not sums over layers: a tent encoding of the numbers one
decoder step reads (layer weights, output projection, attended encoder keys and values) -- once they outgrow
the GPU's cache every step streams them from memory, so latency bends with the decoder's total size -- and
flags for joining 2 or 3 encoder layers' outputs, which happens once per model, and one term per (decoder
depth, decoder width) pair seen in training (a pair the training rows lack is predicted by the same fit
without those terms, stored alongside). On an H200 these cut the error on fresh samples from 0.051 to
0.022 ms, together with less noisy measurements (bench/RESULTS.md). When a CSV has only HAT's 10 averaged features,
the averaged terms alone are used. The ridge strength is chosen by exact leave-one-out error on the training
rows, and rows the fit misses by far (a measurement disturbed by another process) are left out of a refit;
fitting takes milliseconds.

``hat-mlp`` is HAT's recipe: 10 features / feature-norm, 400x3 hidden ReLU MLP, Adam lr 1e-5, 5000 steps
of batch 128, MSE on latency / lat-norm.

Saved as a directory: ``predictor.safetensors`` (the numbers) + ``predictor.json`` (kind, unit,
normalisation, feature layout, training record).
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from hat_cli.errors import HatError
from hat_cli.space import DECODER_LIST_FIELDS, ENCODER_LIST_FIELDS, SubTransformerConfig

FEATURE_NORM = (640.0, 6.0, 2048.0, 6.0, 640.0, 6.0, 2048.0, 6.0, 6.0, 2.0)  # HAT-SPEC §5
MODEL_KINDS = ("layer-cost", "hat-mlp")
DEFAULT_MODEL = "layer-cost"
FORMAT = "hat-cli-latency-predictor"
WEIGHTS_FILE = "predictor.safetensors"
META_FILE = "predictor.json"
PLOT_FILE = "predicted_vs_measured.png"
RIDGE_ALPHAS = tuple(10.0**k for k in range(-6, 4))
OUTLIER_SIGMAS = 5.0


# ======================================================================================= data
@dataclass(frozen=True)
class TimedShape:
    """What the latency protocol fed the timed model, known from a CSV's task: the vocabulary of the output
    projection and the dummy source length. Zeros when unknown (HAT's CSVs name no task)."""

    output_vocab: int = 0
    source_tokens: int = 0

    @classmethod
    def of_task(cls, name: Optional[str]) -> "TimedShape":
        from hat_cli.latency import TASK_VOCAB
        from hat_cli.tasks import TASKS

        if name not in TASK_VOCAB or name not in TASKS:
            return cls()
        return cls(TASK_VOCAB[name][1], TASKS[name].dummy_length)


@dataclass
class LatencyRows:
    """Architectures (10 HAT features, and the full config when known) with measured latency in ms."""

    features: np.ndarray  # [n, 10]
    configs: list[Optional[SubTransformerConfig]]
    encoder_ms: np.ndarray
    decoder_ms: np.ndarray
    timed: TimedShape = TimedShape()

    @property
    def total_ms(self) -> np.ndarray:
        return self.encoder_ms + self.decoder_ms

    @property
    def has_layers(self) -> bool:
        return bool(self.configs) and all(c is not None for c in self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def subset(self, index: Sequence[int]) -> "LatencyRows":
        index = np.asarray(index, dtype=int)
        return LatencyRows(self.features[index], [self.configs[i] for i in index], self.encoder_ms[index],
                           self.decoder_ms[index], self.timed)

    @classmethod
    def from_table(cls, table) -> "LatencyRows":
        """Sampled rows of a :class:`hat_cli.latency_dataset.LatencyTable` (reference rows left out)."""
        from hat_cli.latency_dataset import config_from_row
        from hat_cli.space import FEATURE_NAMES

        rows = table.samples()
        if not rows:
            raise HatError(f"{table.path} holds no sampled architectures (only reference rows).")
        features = np.array([[float(r[c]) for c in FEATURE_NAMES] for r in rows], dtype=np.float64)
        try:
            configs = [config_from_row(r) for r in rows]
        except (KeyError, ValueError):
            raise HatError(f"{table.path} has per-layer columns that do not match its layer counts.") from None
        enc = np.array([float(r["latency_mean_encoder"]) for r in rows])
        dec = np.array([float(r["latency_mean_decoder"]) for r in rows])
        if not np.all(np.isfinite(enc + dec)) or np.any(enc + dec <= 0):
            raise HatError(f"{table.path} has latencies that are not positive finite numbers.")
        tasks = {r.get("task") for r in rows}
        return cls(features, configs, enc, dec, TimedShape.of_task(tasks.pop() if len(tasks) == 1 else None))

    @classmethod
    def from_configs(cls, configs: Sequence[SubTransformerConfig]) -> "LatencyRows":
        configs = list(configs)
        feats = np.array([c.features() for c in configs], dtype=np.float64).reshape(len(configs), 10)
        zeros = np.zeros(len(configs))
        return cls(feats, configs, zeros, zeros)


def split_indices(n: int, seed: int, fractions=(0.8, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded shuffle cut 80/10/10 into train / valid / test (HAT's split, but reproducible)."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_valid = int(round(fractions[1] * n))
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


def metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = predicted - measured
    relative = np.abs(error) / measured
    return {
        "rmse_ms": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(relative)),
        "within_10pct": float(np.mean(relative <= 0.10)),
        "n": int(len(measured)),
    }


# ======================================================================================= features
def averaged_terms(x: np.ndarray) -> np.ndarray:
    """Cost terms from HAT's 10 averaged features: per-layer averages times layer counts."""
    E, LE, Fe, He, D, L, Fd, Hs, Hd, A = (x[:, i] for i in range(10))
    E, D, Fe, Fd = E / 640, D / 640, Fe / 2048, Fd / 2048
    He, Hs, Hd, A, LE = He / 8, Hs / 8, Hd / 8, A / 3, LE / 6
    cols = [
        E, E * E, LE * E * Fe, LE * Fe, LE * He, LE * He * E, LE * E * E,
        D, D * D, L, L * D, L * D * D, L * Fd, L * Fd * D, L * Hs, L * Hs * D,
        L * Hd, L * Hd * D, L * Hd * E, L * A, L * A * E, L * A * Hd, L * A * D, L * L, L * L * D,
    ]
    return np.stack(cols, axis=1)


def _tent(values: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """Piecewise-linear encoding: one column per knot; a value at a knot is one-hot, between knots it is
    split between the two neighbours, outside the range it is clamped to the end knot."""
    knots = np.asarray(sorted(knots), dtype=float)
    out = np.zeros((len(values), len(knots)))
    v = np.clip(values, knots[0], knots[-1])
    if len(knots) == 1:
        out[:, 0] = 1.0
        return out
    pos = np.interp(v, knots, np.arange(len(knots)))
    low = np.floor(pos).astype(int).clip(0, len(knots) - 2)
    frac = pos - low
    out[np.arange(len(v)), low] = 1.0 - frac
    out[np.arange(len(v)), low + 1] += frac
    return out


def _attended(a: int) -> int:
    return 1 if a == -1 else a + 1


def layer_knots(configs: Sequence[SubTransformerConfig]) -> dict[str, list[float]]:
    """The values every per-layer knob takes in the training data (the tent knots)."""
    knots: dict[str, set] = {f: set() for f in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS}
    for c in configs:
        for f in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS:
            values = getattr(c, f)
            knots[f].update(_attended(v) for v in values) if f == "decoder_arbitrary_ende_attn" else knots[f].update(values)
    return {f: sorted(float(v) for v in vs) for f, vs in knots.items()}


QKV_DIM = 512  # HAT's spaces project attention to 512 at every width (only the shape of a feature here)
TIMED_BEAM = 5  # hypotheses the latency protocol decodes at once (hardware.Protocol.beam)
STEP_WEIGHT_KNOTS = 8


def _attended_counts(config: SubTransformerConfig) -> list[int]:
    return [_attended(a) for a in config.decoder_arbitrary_ende_attn[: config.decoder_layer_num]]


def decoder_step_weights(config: SubTransformerConfig, timed: TimedShape) -> float:
    """Numbers one incremental decoder step reads: the attention projections and FFN of every layer, the
    output projection, and the encoder keys and values each layer attends to."""
    d = config.decoder_embed_dim
    layers = config.decoder_ffn_embed_dim[: config.decoder_layer_num]
    weights = d * timed.output_vocab + sum(6 * QKV_DIM * d + 2 * d * f for f in layers)
    encoder_cache = TIMED_BEAM * timed.source_tokens * QKV_DIM * 2 * sum(_attended_counts(config))
    return float(weights + encoder_cache)


def depth_width_code(config: SubTransformerConfig) -> float:
    """One number per (decoder depth, decoder width) pair, for a one-hot term per pair."""
    return float(config.decoder_layer_num * 10000 + config.decoder_embed_dim)


def step_weight_knots(configs: Sequence[SubTransformerConfig], timed: TimedShape) -> list[float]:
    values = [decoder_step_weights(c, timed) for c in configs]
    return sorted({float(v) for v in np.quantile(values, np.linspace(0, 1, STEP_WEIGHT_KNOTS))})


def layer_terms(configs: Sequence[SubTransformerConfig], knots: dict[str, list[float]],
                timed: TimedShape = TimedShape()) -> np.ndarray:
    """Per-layer cost terms summed over layers (see the module docstring)."""
    rows = []
    for c in configs:
        E, D = c.encoder_embed_dim / 640, c.decoder_embed_dim / 640
        enc_f = _tent(np.array(c.encoder_ffn_embed_dim, float), knots["encoder_ffn_embed_dim"])
        enc_h = _tent(np.array(c.encoder_self_attention_heads, float), knots["encoder_self_attention_heads"])
        dec_f = _tent(np.array(c.decoder_ffn_embed_dim, float), knots["decoder_ffn_embed_dim"])
        dec_s = _tent(np.array(c.decoder_self_attention_heads, float), knots["decoder_self_attention_heads"])
        dec_e = _tent(np.array(c.decoder_ende_attention_heads, float), knots["decoder_ende_attention_heads"])
        dec_a = _tent(np.array([_attended(a) for a in c.decoder_arbitrary_ende_attn], float), knots["decoder_arbitrary_ende_attn"])
        ea = (dec_a[:, :, None] * dec_e[:, None, :]).reshape(len(dec_a), -1)  # keys length x heads, per layer
        parts = [
            enc_f.sum(0), E * enc_f.sum(0), enc_h.sum(0), E * enc_h.sum(0),
            dec_f.sum(0), D * dec_f.sum(0), dec_s.sum(0), D * dec_s.sum(0),
            dec_e.sum(0), D * dec_e.sum(0), E * dec_e.sum(0),
            dec_a.sum(0), E * dec_a.sum(0), D * dec_a.sum(0), ea.sum(0),
            np.array([E, D, E * E, D * D, E * D]),
        ]
        if "decoder_step_weights" in knots:  # (absent from predictors saved before these terms existed)
            parts.append(_tent(np.array([decoder_step_weights(c, timed)]), knots["decoder_step_weights"])[0])
            # The joined memory of 2 or 3 encoder layers is built once per decode for each count any layer
            # uses: a cost per model, not per layer.
            used = set(_attended_counts(c))
            parts.append(np.array([float(a in used) * x for a in (2, 3) for x in (1.0, E, E * E)]))
        if "decoder_depth_width" in knots:  # (absent from predictors saved before this term existed)
            code = depth_width_code(c)
            parts.append(np.array([float(code == k) for k in knots["decoder_depth_width"]]))
        rows.append(np.concatenate(parts))
    return np.array(rows, dtype=np.float64)


# ======================================================================================= predictors
class Predictor:
    kind: str = ""
    lat_norm: float = 1.0
    feature_norm: tuple[float, ...] = FEATURE_NORM
    training: dict[str, Any]

    def predict(self, configs: Sequence[SubTransformerConfig]) -> np.ndarray:
        """Total latency in ms, one per architecture."""
        return self.predict_rows(LatencyRows.from_configs(configs))

    def predict_rows(self, rows: LatencyRows) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def tensors(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1,
            "kind": self.kind,
            "unit": "ms",
            "target": "latency_mean_encoder + latency_mean_decoder",
            "feature_norm": list(self.feature_norm),
            "lat_norm": self.lat_norm,
            "training": getattr(self, "training", {}),
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``predictor.safetensors`` + ``predictor.json`` into ``directory`` (atomically)."""
        from safetensors.numpy import save

        from hat_cli.atomic import atomic_write_bytes, atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v, dtype=np.float32 if self.kind == "hat-mlp" else np.float64) for k, v in self.tensors().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": FORMAT, "kind": self.kind}))
        atomic_write_text(directory / META_FILE, json.dumps(self.meta(), indent=2) + "\n")
        return directory


class HatMlpPredictor(Predictor):
    """HAT's latency MLP (HAT-SPEC §5), state-dict names as HAT's ``Net``."""

    kind = "hat-mlp"

    def __init__(self, state: dict[str, np.ndarray], lat_norm: float, feature_norm: Sequence[float] = FEATURE_NORM, training=None):
        expected = {"first_layer.weight", "first_layer.bias", "predict.weight", "predict.bias"}
        if not expected <= set(state):
            raise HatError(f"A HAT latency predictor needs the keys {sorted(expected)} and layers.N.*; got {sorted(state)[:6]}.")
        self.state = {k: np.asarray(v, dtype=np.float64) for k, v in state.items()}
        self.hidden = sorted(int(k.split(".")[1]) for k in self.state if k.startswith("layers.") and k.endswith(".weight"))
        if self.state["first_layer.weight"].shape[1] != 10 or len(feature_norm) != 10:
            raise HatError("A HAT latency predictor takes exactly 10 features (first_layer.weight [hidden, 10]).")
        self.lat_norm = float(lat_norm)
        self.feature_norm = tuple(float(v) for v in feature_norm)
        self.training = training or {}

    def predict_rows(self, rows: LatencyRows) -> np.ndarray:
        s = self.state
        h = np.maximum(rows.features / np.array(self.feature_norm) @ s["first_layer.weight"].T + s["first_layer.bias"], 0)
        for i in self.hidden:
            h = np.maximum(h @ s[f"layers.{i}.weight"].T + s[f"layers.{i}.bias"], 0)
        return (h @ s["predict.weight"].T + s["predict.bias"])[:, 0] * self.lat_norm

    def tensors(self) -> dict[str, np.ndarray]:
        return dict(self.state)

    @classmethod
    def fit(cls, train: LatencyRows, lat_norm: float, seed: int, steps: int = 5000, batch: int = 128, lr: float = 1e-5, hidden: int = 400, layers: int = 3, progress=None) -> "HatMlpPredictor":
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


class LayerCostPredictor(Predictor):
    """Ridge regression on summed per-layer cost terms (or HAT's averaged terms when that is all there is)."""

    kind = "layer-cost"

    def __init__(self, feature_set: str, knots: dict[str, list[float]], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float, alpha: float, lat_norm: float = 1.0, training=None, timed: TimedShape = TimedShape()):
        if feature_set not in ("layers", "averages"):
            raise HatError(f"Unknown layer-cost feature set '{feature_set}'.")
        self.feature_set = feature_set
        self.knots = knots
        self.timed = timed
        self.mean, self.scale, self.coef = (np.asarray(a, dtype=np.float64) for a in (mean, scale, coef))
        self.intercept = float(intercept)
        self.alpha = float(alpha)
        self.lat_norm = float(lat_norm)
        self.training = training or {}
        self.fallback: Optional[LayerCostPredictor] = None  # without pair terms, for pairs never seen (fit)

    @staticmethod
    def design(rows: LatencyRows, feature_set: str, knots: dict[str, list[float]], timed: TimedShape) -> np.ndarray:
        terms = averaged_terms(rows.features)
        if feature_set == "layers":
            if not rows.has_layers:
                raise HatError("This predictor uses per-layer architecture columns, which these rows lack.")
            terms = np.concatenate([terms, layer_terms(rows.configs, knots, timed)], axis=1)
        return terms

    def predict_rows(self, rows: LatencyRows) -> np.ndarray:
        # The timed shape is the predictor's own (its training task's), not the rows'.
        z = (self.design(rows, self.feature_set, self.knots, self.timed) - self.mean) / self.scale
        predicted = z @ self.coef + self.intercept
        if self.fallback is not None:
            # A (decoder depth, width) pair the fit never saw has no term of its own, and the other terms
            # were fitted alongside the pair terms: the model fitted without them predicts it better.
            seen = set(self.knots["decoder_depth_width"])
            unseen = np.nonzero([depth_width_code(c) not in seen for c in rows.configs])[0]
            if len(unseen):
                predicted[unseen] = self.fallback.predict_rows(rows.subset(unseen))
        return predicted

    def tensors(self) -> dict[str, np.ndarray]:
        own = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": np.array([self.intercept])}
        if self.fallback is not None:
            own |= {f"fallback.{k}": v for k, v in self.fallback.tensors().items()}
        return own

    def meta(self) -> dict[str, Any]:
        meta = super().meta() | {"feature_set": self.feature_set, "knots": self.knots, "alpha": self.alpha,
                                 "timed_shape": dataclasses.asdict(self.timed)}
        if self.fallback is not None:
            meta["fallback_alpha"] = self.fallback.alpha
        return meta

    @classmethod
    def fit(cls, train: LatencyRows, lat_norm: float = 1.0, seed: int = 0) -> "LayerCostPredictor":
        """Fit, then refit without rows the first fit misses by more than OUTLIER_SIGMAS robust standard
        deviations: one measurement disturbed by another process would otherwise pull every coefficient."""
        first = cls._fit(train, lat_norm, seed)
        residual = first.predict_rows(train) - train.total_ms
        sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        outliers = np.abs(residual) > OUTLIER_SIGMAS * max(sigma, 1e-12)
        if not outliers.any() or outliers.sum() > 0.05 * len(train):  # many "outliers" means a poor model, not bad rows
            outliers[:] = False
        rows = train.subset(np.nonzero(~outliers)[0])
        model = cls._fit(rows, lat_norm, seed) if outliers.any() else first
        model.training["outliers_dropped"] = int(outliers.sum())
        if "decoder_depth_width" in model.knots:
            model.fallback = cls._fit(rows, lat_norm, seed, pair_terms=False)
        return model

    @classmethod
    def _fit(cls, train: LatencyRows, lat_norm: float, seed: int, pair_terms: bool = True) -> "LayerCostPredictor":
        feature_set = "layers" if train.has_layers else "averages"
        knots = layer_knots(train.configs) if feature_set == "layers" else {}
        if feature_set == "layers":
            knots["decoder_step_weights"] = step_weight_knots(train.configs, train.timed)
            # With 4 placements per sample the residuals still grouped by decoder depth x width (2-layer
            # 256-wide decoders 0.02 ms slow on an H200, more than the tent above explains).
            if pair_terms:
                knots["decoder_depth_width"] = sorted({depth_width_code(c) for c in train.configs})
        X = cls.design(train, feature_set, knots, train.timed)
        y = train.total_ms
        mean = X.mean(0)
        scale = X.std(0)
        scale[scale < 1e-12] = 1.0  # constant columns (e.g. encoder depth) carry nothing
        Z = (X - mean) / scale
        alpha, coef, intercept = _ridge_loo(Z, y)
        return cls(feature_set, knots, mean, scale, coef, intercept, alpha, lat_norm, {"alpha": alpha, "rows": len(train), "seed": seed},
                   train.timed)


def _ridge_loo(Z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Ridge on centred data with the strength of least exact leave-one-out error (one SVD)."""
    y_mean = y.mean()
    Zc, yc = Z - Z.mean(0), y - y_mean
    U, s, Vt = np.linalg.svd(Zc, full_matrices=False)
    Uty = U.T @ yc
    n = len(y)
    best = None
    for alpha in RIDGE_ALPHAS:
        shrink = s**2 / (s**2 + alpha)
        fitted = U @ (shrink * Uty)
        leverage = (U**2) @ shrink + 1.0 / n  # + intercept's leverage
        loo = (yc - fitted) / np.maximum(1.0 - leverage, 1e-9)
        score = float(np.mean(loo**2))
        if best is None or score < best[0]:
            best = (score, alpha)
    alpha = best[1]
    coef = Vt.T @ ((s / (s**2 + alpha)) * Uty)
    intercept = float(y_mean - Z.mean(0) @ coef)
    return alpha, coef, intercept


# ======================================================================================= public API
def fit_predictor(train: LatencyRows, kind: str = DEFAULT_MODEL, lat_norm: float = 1.0, seed: int = 1, progress=None) -> Predictor:
    if kind not in MODEL_KINDS:
        raise HatError(f"Unknown predictor model '{kind}'; choose one of: {', '.join(MODEL_KINDS)}.")
    if len(train) < 2:
        raise HatError(f"A predictor needs at least 2 training rows, got {len(train)}.")
    if kind == "hat-mlp":
        return HatMlpPredictor.fit(train, lat_norm, seed, progress=progress)
    return LayerCostPredictor.fit(train, lat_norm, seed)


def from_published_hat_state_dict(state_dict: dict, lat_norm: float, feature_norm: Sequence[float] = FEATURE_NORM) -> HatMlpPredictor:
    """One of HAT's 8 shipped MLP predictors (torch or numpy tensors) as a hat predictor."""
    state = {k: (v.detach().cpu().double().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state_dict.items()}
    return HatMlpPredictor(state, lat_norm, feature_norm, {"source": "published HAT predictor"})


def load_predictor(path: str | Path) -> Predictor:
    """A predictor directory (or its .json / .safetensors), or a zoo-pulled HAT predictor .safetensors."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    if path.is_dir():
        directory = path
    elif path.suffix in (".json", ".safetensors") and path.parent.joinpath(META_FILE).is_file() and path.name in (META_FILE, WEIGHTS_FILE):
        directory = path.parent
    elif path.suffix == ".safetensors" and path.is_file():
        # A shipped HAT predictor as the zoo stores it: HAT's names, lat_norm / feature_norm in metadata
        # or in the record next to it.
        with safe_open(str(path), "np") as handle:
            metadata = handle.metadata() or {}
        record = path.with_suffix(".json")
        if "lat_norm" not in metadata and record.is_file():
            metadata = {**json.loads(record.read_text()), **metadata}
        if "lat_norm" not in metadata:
            raise HatError(f"{path} holds no lat_norm; it is not a hat or HAT latency predictor.")
        norm = metadata.get("feature_norm", list(FEATURE_NORM))
        norm = json.loads(norm) if isinstance(norm, str) else norm
        return from_published_hat_state_dict(load_file(str(path)), float(metadata["lat_norm"]), norm)
    else:
        raise HatError(f"Latency predictor {path} does not exist (expected a directory with {META_FILE} and {WEIGHTS_FILE}).")
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise HatError(f"{directory} is not a latency predictor: it needs {META_FILE} and {WEIGHTS_FILE}.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise HatError(f"{meta_path} is not valid JSON.") from None
    if meta.get("format") != FORMAT:
        raise HatError(f"{meta_path} is not a hat latency predictor (format {meta.get('format')!r}).")
    tensors = load_file(str(weights_path))
    if meta["kind"] == "hat-mlp":
        return HatMlpPredictor(tensors, meta["lat_norm"], meta["feature_norm"], meta.get("training"))
    if meta["kind"] == "layer-cost":
        timed = TimedShape(**meta.get("timed_shape", {}))
        predictor = LayerCostPredictor(
            meta["feature_set"], meta["knots"], tensors["mean"], tensors["scale"], tensors["coef"], float(tensors["intercept"][0]),
            meta["alpha"], meta.get("lat_norm", 1.0), meta.get("training"), timed,
        )
        if "fallback.coef" in tensors:
            knots = {k: v for k, v in meta["knots"].items() if k != "decoder_depth_width"}
            predictor.fallback = LayerCostPredictor(
                meta["feature_set"], knots, tensors["fallback.mean"], tensors["fallback.scale"], tensors["fallback.coef"],
                float(tensors["fallback.intercept"][0]), meta["fallback_alpha"], meta.get("lat_norm", 1.0), None, timed,
            )
        return predictor
    raise HatError(f"{meta_path}: unknown predictor kind '{meta['kind']}'.")


def plot_predictions(predicted: np.ndarray, measured: np.ndarray, path: str | Path, title: str) -> bool:
    """Predicted-vs-measured scatter as PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from hat_cli.atomic import temporary_sibling

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, predicted, s=8, alpha=0.6)
    lo, hi = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="exact")
    ax.plot([lo, hi], [lo * 1.1, hi * 1.1], color="gray", lw=0.8, ls="--", label="±10%")
    ax.plot([lo, hi], [lo * 0.9, hi * 0.9], color="gray", lw=0.8, ls="--")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left")
    fig.tight_layout()
    tmp = temporary_sibling(path)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        Path(tmp).replace(path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return True


@dataclass
class FitReport:
    predictor: Predictor
    test: dict[str, float]
    holdout: Optional[dict[str, float]]  # the held-out 10%; None when tested on another file
    split: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    test_predicted: np.ndarray | None = None
    test_measured: np.ndarray | None = None


def fit_and_evaluate(rows: LatencyRows, kind: str, seed: int, lat_norm: float, test_rows: Optional[LatencyRows] = None, progress=None) -> FitReport:
    """Without ``test_rows``: the seeded 80/10/10 split, fit on the train part, metrics on the held-out test
    part. With ``test_rows`` (fresh samples measured apart): fit on every row, metrics on ``test_rows``;
    holding rows back would only weaken the predictor being judged."""
    import time

    if len(rows) < 10:
        raise HatError(f"A predictor needs at least 10 measured architectures, the dataset has {len(rows)}.")
    if test_rows is not None:
        train, held = rows, test_rows
        split = {"train": len(rows), "test": len(test_rows)}
        how = "all rows; tested on another file"
    else:
        train_idx, valid_idx, test_idx = split_indices(len(rows), seed)
        train, held = rows.subset(train_idx), rows.subset(test_idx)
        split = {"train": len(train_idx), "valid": len(valid_idx), "test": len(test_idx)}
        how = "seeded 80/10/10"
    start = time.perf_counter()
    predictor = fit_predictor(train, kind, lat_norm, seed, progress)
    seconds = time.perf_counter() - start
    pred = predictor.predict_rows(held)
    test = metrics(pred, held.total_ms)
    predictor.training.update({"split": how, "train_rows": len(train), "fit_seconds": seconds})
    holdout = None if test_rows is not None else test
    return FitReport(predictor, test, holdout, split, seconds, pred, held.total_ms)


def repeat_spread(values: Sequence[float]) -> dict[str, float]:
    """Repeatability of one architecture: std and relative std of repeated measurements."""
    values = np.asarray(values, float)
    return {"mean_ms": float(values.mean()), "std_ms": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "rel_std": float(values.std(ddof=1) / values.mean()) if len(values) > 1 else 0.0, "n": int(len(values))}


__all__ = [
    "FEATURE_NORM", "MODEL_KINDS", "DEFAULT_MODEL", "LatencyRows", "Predictor", "HatMlpPredictor", "LayerCostPredictor",
    "fit_predictor", "fit_and_evaluate", "from_published_hat_state_dict", "load_predictor", "metrics", "split_indices",
    "plot_predictions", "repeat_spread",
]
