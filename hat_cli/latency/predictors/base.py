"""What every latency predictor kind shares: the rows it learns from, the interface, and the registry.

A predictor maps architectures to total latency (encoder + decoder) in ms and predicts with numpy only, so
the search loop never needs torch for it. Saved as a directory: ``predictor.safetensors`` (the numbers) +
``predictor.json`` (kind, unit, normalisation, feature layout, training record). Kinds register with
:func:`register_predictor_kind`; ``fitting.py`` imports the built-in ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from hat_cli.core.errors import HatError
from hat_cli.core.registry import Registry
from hat_cli.core.files import atomic_write_text, make_parent
from hat_cli.core.tensors import save_tensors
from hat_cli.latency.dataset import config_from_row
from hat_cli.model.space import FEATURE_NAMES, SubTransformerConfig
from hat_cli.tasks import TASKS

FEATURE_NORM = (640.0, 6.0, 2048.0, 6.0, 640.0, 6.0, 2048.0, 6.0, 6.0, 2.0)  # docs/METHOD.md §5.1
FORMAT = "hat-cli-latency-predictor"
WEIGHTS_FILE = "predictor.safetensors"
META_FILE = "predictor.json"


# ======================================================================================= data
@dataclass(frozen=True)
class TimedShape:
    """What the latency protocol fed the timed model, known from a CSV's task: the vocabulary of the output
    projection and the dummy source length. Zeros when unknown (HAT's CSVs name no task)."""

    output_vocab: int = 0
    source_tokens: int = 0

    @classmethod
    def of_task(cls, name: Optional[str]) -> "TimedShape":
        task = TASKS.get(name) if name else None
        if task is None:
            return cls()
        return cls(task.timed_vocab[1], task.dummy_length)


@dataclass
class LatencyRows:
    """Architectures (10 HAT features, and the full config when known) with measured latency in ms."""

    features: np.ndarray  # [n, 10]
    configs: list[Optional[SubTransformerConfig]]
    encoder_ms: np.ndarray
    decoder_ms: np.ndarray
    timed: TimedShape = TimedShape()
    task: Optional[str] = None  # the task the rows were measured for, when the CSV says (HAT's do not)
    hardware: Optional[str] = None  # the backend that measured them, when the CSV says

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
                           self.decoder_ms[index], self.timed, self.task, self.hardware)

    @classmethod
    def from_table(cls, table) -> "LatencyRows":
        """Sampled rows of a :class:`hat_cli.latency.dataset.LatencyTable` (reference rows left out)."""
        rows = table.samples()
        if not rows:
            raise HatError(f"{table.path} holds no sampled architectures (only reference rows).")
        features = np.array([[float(r[c]) for c in FEATURE_NAMES] for r in rows], dtype=np.float64)
        try:
            configs = [config_from_row(r) for r in rows]
        except KeyError as exc:
            raise HatError(f"{table.path} has per-layer columns that do not match its layer counts (no column {exc}).") from None
        except ValueError as exc:
            raise HatError(f"{table.path} has a row whose architecture is damaged ({exc}).") from None
        enc = np.array([float(r["latency_mean_encoder"]) for r in rows])
        dec = np.array([float(r["latency_mean_decoder"]) for r in rows])
        if not np.all(np.isfinite(enc + dec)) or np.any(enc + dec <= 0):
            raise HatError(f"{table.path} has latencies that are not positive finite numbers.")
        tasks = {r.get("task") for r in rows}
        task = tasks.pop() if len(tasks) == 1 else None
        hardware = {r.get("hardware") for r in rows}
        return cls(features, configs, enc, dec, TimedShape.of_task(task), task or None,
                   (hardware.pop() or None) if len(hardware) == 1 else None)

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
        # The search's safety margin scales with this (search/budget.py): errors as fractions of the latency.
        "relative_rmse": float(np.sqrt(np.mean((error / measured) ** 2))),
        "mape": float(np.mean(relative)),
        "within_10pct": float(np.mean(relative <= 0.10)),
        "n": int(len(measured)),
    }


# ======================================================================================= the interface
class Predictor:
    """A latency predictor kind: architectures -> total latency (encoder + decoder) in ms.

    A kind is a subclass registered with :func:`register_predictor_kind`: it names itself (``kind``),
    predicts from :class:`LatencyRows`, fits itself on them, and saves and restores its numbers.
    """

    kind: ClassVar[str] = ""
    tensor_dtype: ClassVar[Any] = np.float64  # how save() stores the numbers
    fit_steps: ClassVar[int] = 1  # progress steps fit() reports (what a progress bar counts to)
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

    @classmethod
    def fit(cls, train: LatencyRows, lat_norm: float, seed: int, progress=None) -> "Predictor":  # pragma: no cover - abstract
        """A predictor of this kind fitted on ``train``; ``progress(done, fit_steps)`` may be called along the way."""
        raise NotImplementedError

    @classmethod
    def from_saved(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "Predictor":  # pragma: no cover - abstract
        """The predictor :meth:`save` wrote (its predictor.json document and its tensors)."""
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
        directory = Path(directory)
        make_parent(directory / META_FILE)
        tensors = {k: np.ascontiguousarray(v, dtype=self.tensor_dtype) for k, v in self.tensors().items()}
        save_tensors(tensors, directory / WEIGHTS_FILE, {"format": FORMAT, "kind": self.kind}, framework="np")
        atomic_write_text(directory / META_FILE, json.dumps(self.meta(), indent=2, allow_nan=False) + "\n")
        return directory


PREDICTOR_KINDS: Registry[type[Predictor]] = Registry("predictor model")


def register_predictor_kind(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator: make ``cls`` available by its ``kind`` (``hat fit-predictor --model KIND``, saved files)."""
    return PREDICTOR_KINDS.add(cls.kind, cls)


def predictor_kind(kind: str) -> type[Predictor]:
    return PREDICTOR_KINDS.lookup(kind)
