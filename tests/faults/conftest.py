"""Fixtures of the fault suite: small real artefacts of the `demo` task, made once per session by the
`hat` commands themselves, in this process (data, a 4-update SuperTransformer, a latency CSV, a fitted
predictor)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _hat import invoke

TINY = ("--repetitions", "1", "--warmup", "0", "--reference-every", "0")


def _ok(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fault-assets")
    _ok(invoke("data", "--task", "demo", "--data-dir", root / "data", cwd=root))
    _ok(invoke("train-super", "--task", "demo", "--data-dir", root / "data", "--save-dir", root / "super",
               "--max-updates", "4", "--save-interval", "2", "--validate-every", "4", "--device", "cpu", cwd=root))
    _ok(invoke("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "12", "--csv", root / "latency.csv",
               *TINY, cwd=root))
    _ok(invoke("fit-predictor", "--dataset", root / "latency.csv", "--out", root / "predictor", cwd=root))
    return root


@pytest.fixture
def demo_data(assets) -> Path:
    return assets / "data"


@pytest.fixture
def supernet(assets) -> Path:
    return assets / "super" / "model"


@pytest.fixture
def latency_csv(assets) -> Path:
    return assets / "latency.csv"


@pytest.fixture
def predictor(assets, tmp_path) -> Path:
    """A copy of the fitted predictor that a test may damage."""
    return Path(shutil.copytree(assets / "predictor", tmp_path / "predictor"))


def small_search(task_args=("--task", "demo"), **options) -> list[str]:
    args = [*task_args, "--population", "8", "--parents", "3", "--mutations", "3", "--crossovers", "2",
            "--iterations", "2", "--valid-subset", "20", "--device", "cpu"]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return ["search", *args]


_NAMESPACES: list[bool] = []


def namespaces_work() -> bool:
    """Whether this machine lets us mount a small tmpfs in a private mount namespace (unshare -rm).
    HAT_FAULT_SHIM=1 pretends it does not, to exercise the failing-write shim instead."""
    if os.environ.get("HAT_FAULT_SHIM", "") not in ("", "0"):
        return False
    if not _NAMESPACES:
        try:
            done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt"],
                                  capture_output=True, timeout=20)
            _NAMESPACES.append(done.returncode == 0)
        except (OSError, subprocess.TimeoutExpired):
            _NAMESPACES.append(False)
    return _NAMESPACES[0]
