"""Shared fixtures: where the real data lives, and the published zoo facts (from model_zoo.toml)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from hat_cli.core import paths

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAT_SHARED_DIR", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"

# Keep test subprocesses quiet and deterministic.
os.environ.setdefault("HAT_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared next to the checkout)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require(SHARED_DATA)


@pytest.fixture(scope="session")
def published_models() -> list[dict]:
    """The 44 published SubTransformers of the shipped model_zoo.toml, by name: name, task, yaml (HAT's 10
    keys as published), params (non-embedding) and flops (without the last layer)."""
    table = tomllib.loads((paths.CONFIG_DIR / "model_zoo.toml").read_text(encoding="utf-8"))["models"]
    return [{"name": name, "task": m["task"], "yaml": m["arch"], "params": m["params"], "flops": m["flops"]}
            for name, m in sorted(table.items()) if m["kind"] == "subtransformer"]
