"""``layer-cost``, hat's default latency predictor: ridge regression on per-layer cost terms.

``layer-cost`` is ridge regression on physically motivated terms. Latency is close to a sum
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
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from hat_cli.core.errors import HatError
from hat_cli.latency.predictors.base import LatencyRows, Predictor, TimedShape, register_predictor_kind
from hat_cli.model.space import DECODER_LIST_FIELDS, ENCODER_LIST_FIELDS, SubTransformerConfig

RIDGE_ALPHAS = tuple(10.0**k for k in range(-6, 4))
OUTLIER_SIGMAS = 5.0


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
TIMED_BEAM = 5  # hypotheses the latency protocol decodes at once (backends.MeasurementProtocol.beam)
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


# ======================================================================================= the kind
@register_predictor_kind
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
        if not (self.coef.ndim == 1 and self.mean.shape == self.scale.shape == self.coef.shape):
            raise HatError(f"A layer-cost predictor needs mean, scale and coef of one length; got shapes "
                           f"{list(self.mean.shape)}, {list(self.scale.shape)} and {list(self.coef.shape)}.")
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
    def from_saved(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "LayerCostPredictor":
        timed = TimedShape(**meta.get("timed_shape", {}))
        knots = {str(k): [float(v) for v in values] for k, values in meta["knots"].items()}
        predictor = cls(
            meta["feature_set"], knots, tensors["mean"], tensors["scale"], tensors["coef"], float(tensors["intercept"][0]),
            meta["alpha"], meta.get("lat_norm", 1.0), meta.get("training"), timed,
        )
        if "fallback.coef" in tensors:
            knots = {k: v for k, v in knots.items() if k != "decoder_depth_width"}
            predictor.fallback = cls(
                meta["feature_set"], knots, tensors["fallback.mean"], tensors["fallback.scale"], tensors["fallback.coef"],
                float(tensors["fallback.intercept"][0]), meta["fallback_alpha"], meta.get("lat_norm", 1.0), None, timed,
            )
        return predictor

    @classmethod
    def fit(cls, train: LatencyRows, lat_norm: float = 1.0, seed: int = 0, progress=None) -> "LayerCostPredictor":
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
