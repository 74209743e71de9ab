"""Shared helpers for the tests of `hat_cli/data` (not a conftest: other test files own that)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IWSLT = SHARED_DATA / "iwslt14-de-en"
MULTI30K_RAW = SHARED_DATA / "multi30k" / "raw"
MULTI30K_TOK = SHARED_DATA / "multi30k" / "tok"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} is not available on this machine")
    return path


def gunzip_to(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.decompress(src.read_bytes()))
    return dst
