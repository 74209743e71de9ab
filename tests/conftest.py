"""Shared fixtures: where the real data lives, and the published zoo facts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAT_SHARED_DIR", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
ZOO_JSON = SHARED / "design" / "hat-zoo.json"

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
    """The 44 published SubTransformers of hat-zoo.json."""
    entries = json.loads(require(ZOO_JSON).read_text())
    return [e for e in entries if e["kind"] == "subtransformer"]
