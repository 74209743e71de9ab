"""Every default path hat reads or writes, in one place.

Working-directory defaults follow HAT's layout (data/, checkpoints/, latency_dataset/) plus runs/ for our
outputs; hat's own cache (pulled models and predictors, downloads) lives under $HAT_HOME. Functions take
names (strings), not records, so any layer may ask.
"""

from __future__ import annotations

import os
from pathlib import Path

import hat_configs  # the top-level configs/ folder, installed as a package

HAT_HOME_ENV = "HAT_HOME"
ZOO_FILE_ENV = "HAT_ZOO_FILE"  # another zoo table (a lab's own mirror of the zoo, or a test's)
FINAL_MODEL_DIR = "model"  # <save_dir>/model: a training run's final model, as a model directory

CONFIG_DIR = Path(hat_configs.__file__).resolve().parent  # built-in search spaces and model_zoo.toml


def budget_label(budget_ms: float) -> str:
    """``200ms``-style label of a latency budget, for file and folder names."""
    return f"{budget_ms:g}ms"


# ------------------------------------------------------------------------------ the working directory
def data_dir(task: str) -> Path:
    """Where `hat data --task T` writes and every other command reads (HAT's data/binary/<task>)."""
    return Path("data") / task


def supernet_dir(task: str) -> Path:
    """Where `hat train-super --task T` saves its checkpoints."""
    return Path("checkpoints") / task / "supertransformer"


def supernet_model(task: str) -> Path:
    """The SuperTransformer `hat train-super --task T` leaves behind, where `hat search` looks first."""
    return supernet_dir(task) / FINAL_MODEL_DIR


def subtransformer_dir(task: str, name: str) -> Path:
    """Where `hat train-sub --task T --arch NAME` saves its checkpoints."""
    return Path("checkpoints") / task / "subtransformer" / name


def latency_csv(task: str, hardware: str) -> Path:
    """The latency dataset of `hat collect-latency --hw H --task T` (HAT's ./latency_dataset/)."""
    return Path("latency_dataset") / f"{task}_{hardware}.csv"


def latency_predictor(task: str, hardware: str) -> Path:
    """The predictor `hat fit-predictor --hw H --task T` fits, and `hat search --hw H` uses first."""
    return Path("latency_dataset") / f"{task}_{hardware}.predictor"


def search_dir(task: str, hardware: str, budget_ms: float) -> Path:
    """The output folder of `hat search`."""
    return Path("runs") / "search" / f"{task}-{hardware}-{budget_label(budget_ms)}"


def test_output(model_label: str, task: str, subset: str, tgt: str) -> Path:
    """The hypothesis file of `hat test`."""
    name = Path(model_label).name or "model"
    return Path("runs") / "test" / f"{name}.{task}.{subset}.hyp.{tgt}"


def demo_dir() -> Path:
    """The working folder of `hat demo`."""
    return Path("runs") / "demo"


# ------------------------------------------------------------------------------ hat's own files
def zoo_file() -> Path:
    """The model zoo table: $HAT_ZOO_FILE, else the shipped configs/model_zoo.toml."""
    override = os.environ.get(ZOO_FILE_ENV)
    return Path(override) if override else CONFIG_DIR / "model_zoo.toml"


def hat_home() -> Path:
    """$HAT_HOME, else ~/.cache/hat."""
    return Path(os.environ.get(HAT_HOME_ENV) or Path.home() / ".cache" / "hat")


def models_dir() -> Path:
    """Pulled published models, one model directory per name."""
    return hat_home() / "models"


def predictors_dir() -> Path:
    """Pulled published latency predictors."""
    return hat_home() / "predictors"


def downloads_dir() -> Path:
    """Original checkpoints while they are converted (removed afterwards)."""
    return hat_home() / "downloads"
