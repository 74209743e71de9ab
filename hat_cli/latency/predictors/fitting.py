"""Fitting, evaluating, saving and loading latency predictors of any registered kind.

The built-in kinds are ``layer-cost`` (the default, ``layer_cost.py``) and ``hat-mlp`` (HAT's MLP,
``hat_mlp.py``); importing them here registers them. ``fit_and_evaluate`` is `hat fit-predictor`:
a seeded 80/10/10 split (or every row, tested on another file), held-out RMSE, MAPE and within-10%.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from hat_cli.core.checks import positive
from hat_cli.core.errors import HatError
from hat_cli.core.files import replacing
from hat_cli.core.tensors import load_tensors, read_metadata
from hat_cli.latency.predictors.base import (
    FEATURE_NORM, FORMAT, META_FILE, PREDICTOR_KINDS, WEIGHTS_FILE, LatencyRows, Predictor, metrics, predictor_kind, split_indices,
)
from hat_cli.latency.predictors.hat_mlp import from_published_hat_state_dict
from hat_cli.latency.predictors.layer_cost import LayerCostPredictor

DEFAULT_MODEL = LayerCostPredictor.kind
MIN_ROWS = 10  # measured architectures `hat fit-predictor` needs (an 80/10/10 split leaves one to test on)
PLOT_FILE = "predicted_vs_measured.png"


def fit_predictor(train: LatencyRows, kind: str = DEFAULT_MODEL, lat_norm: float = 1.0, seed: int = 1, progress=None) -> Predictor:
    """A predictor of ``kind`` fitted on ``train``; it records the task the rows were measured for."""
    kind_class = predictor_kind(kind)
    positive(lat_norm, "The latency normalisation (--lat-norm)")
    if len(train) < 2:
        raise HatError(f"A predictor needs at least 2 training rows, got {len(train)}.")
    predictor = kind_class.fit(train, lat_norm, seed, progress=progress)
    if train.task:
        predictor.training["task"] = train.task
    if train.hardware:
        predictor.training["hardware"] = train.hardware
    return predictor


def load_predictor(path: str | Path) -> Predictor:
    """A predictor directory (or its .json / .safetensors), or a zoo-pulled HAT predictor .safetensors.

    The files come from outside (a download, a colleague, a damaged disk): the answer is a predictor with a
    positive finite normalisation and finite numbers, or a HatError naming the file."""
    path = Path(path)
    if path.is_dir():
        directory = path
    elif path.suffix in (".json", ".safetensors") and path.parent.joinpath(META_FILE).is_file() and path.name in (META_FILE, WEIGHTS_FILE):
        directory = path.parent
    elif path.suffix == ".safetensors" and path.is_file():
        # A shipped HAT predictor as the zoo stores it: HAT's names, lat_norm / feature_norm in metadata
        # or in the record next to it.
        metadata = read_metadata(path, "Latency predictor")
        record = path.with_suffix(".json")
        if "lat_norm" not in metadata and record.is_file():
            metadata = {**_read_json(record), **metadata}
        if "lat_norm" not in metadata:
            raise HatError(f"{path} holds no lat_norm; it is not a hat or HAT latency predictor.")
        try:
            norm = metadata.get("feature_norm", list(FEATURE_NORM))
            norm = json.loads(norm) if isinstance(norm, str) else norm
            found = from_published_hat_state_dict(load_tensors(path, "np", "Latency predictor"), _number(metadata["lat_norm"]), norm)
        except (ValueError, TypeError, KeyError) as exc:
            raise HatError(f"{path} is not a usable HAT latency predictor ({exc}).") from None
        found.training.update({k: metadata[k] for k in ("task", "hardware") if isinstance(metadata.get(k), str)})
        return _checked(found, path)
    else:
        raise HatError(f"Latency predictor {path} does not exist (expected a directory with {META_FILE} and {WEIGHTS_FILE}).")
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise HatError(f"{directory} is not a latency predictor: it needs {META_FILE} and {WEIGHTS_FILE}.")
    meta = _read_json(meta_path)
    if meta.get("format") != FORMAT:
        raise HatError(f"{meta_path} is not a hat latency predictor (format {meta.get('format')!r}).")
    if not isinstance(meta.get("kind"), str) or meta["kind"] not in PREDICTOR_KINDS:
        raise HatError(f"{meta_path}: unknown predictor kind {meta.get('kind')!r}.")
    tensors = load_tensors(weights_path, "np", "Latency predictor")
    try:
        found = PREDICTOR_KINDS[meta["kind"]].from_saved(meta, tensors)
        found.lat_norm = _number(found.lat_norm)
        if not isinstance(found.training, dict):
            raise TypeError("training is not a JSON object")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise HatError(f"{meta_path} does not describe a usable latency predictor ({type(exc).__name__}: {exc}).") from None
    return _checked(found, meta_path)


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HatError(f"{path} is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise HatError(f"{path} is not a latency predictor record (a JSON object).")
    return meta


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _checked(found: Predictor, source: Path) -> Predictor:
    """Finite numbers and a positive finite normalisation, or a HatError naming ``source``: a NaN here
    would make every latency NaN, which passes every budget."""
    if not (math.isfinite(found.lat_norm) and found.lat_norm > 0):
        raise HatError(f"{source}: lat_norm is {found.lat_norm}; a latency predictor needs a positive finite normalisation.")
    for name, values in found.tensors().items():
        if not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
            raise HatError(f"{source}: tensor '{name}' holds NaN or infinite numbers; refit the predictor.")
    return found


def plot_predictions(predicted: np.ndarray, measured: np.ndarray, path: str | Path, title: str) -> bool:
    """Predicted-vs-measured scatter as PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
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
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
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
    if len(rows) < MIN_ROWS:
        raise HatError(f"A predictor needs at least {MIN_ROWS} measured architectures, the dataset has {len(rows)}.")
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


CV_FOLDS = 5


def cross_validated_error(rows: LatencyRows, kind: str, seed: int, lat_norm: float, folds: int = CV_FOLDS,
                          progress=None) -> dict[str, float]:
    """Out-of-fold errors of ``kind`` over every row (seeded ``folds``-fold split): a steadier estimate of
    how far a prediction may miss than the 10% held-out rows of a small collection, which the search's
    safety margin relies on. ``folds`` more fits: ``progress(fold, done, total)`` reports each one's steps
    (hat-mlp's 5,000 steps take seconds per fit; layer-cost's one step, milliseconds)."""
    folds = max(2, min(folds, len(rows)))
    order = np.random.default_rng(seed + 7919).permutation(len(rows))
    predicted = np.empty(len(rows))
    for k in range(folds):
        held = order[k::folds]
        train = np.setdiff1d(order, held)
        report = None if progress is None else (lambda done, total, k=k: progress(k, done, total))
        predicted[held] = fit_predictor(rows.subset(train), kind, lat_norm, seed, report).predict_rows(rows.subset(held))
    return {**metrics(predicted, rows.total_ms), "folds": folds}


def repeat_spread(values: Sequence[float]) -> dict[str, float]:
    """Repeatability of one architecture: std and relative std of repeated measurements."""
    values = np.asarray(values, float)
    return {"mean_ms": float(values.mean()), "std_ms": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "rel_std": float(values.std(ddof=1) / values.mean()) if len(values) > 1 else 0.0, "n": int(len(values))}
