"""Helpers of the fault suite: run `hat` as a user would, and check the CLI contract on failure
(exit 2, one sentence, no traceback) and on disk (no temporary files left, nothing damaged)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

QUIET = {"HAT_NO_PROGRESS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HAT_DEBUG": "0"}


def hat_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **QUIET)
    env.update(extra)
    return env


def hat_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hat_cli.cli.entry", *map(str, args)]


def run_hat(*args, cwd=None, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(hat_command(*args), cwd=cwd, env=env or hat_env(), capture_output=True, text=True, timeout=timeout)


def start_hat(*args, cwd=None, env=None) -> subprocess.Popen:
    return subprocess.Popen(hat_command(*args), cwd=cwd, env=env or hat_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``process`` after ``seconds`` unless it finished; True when it was killed."""
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def error_line(result) -> str:
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_refused(result, *fragments: str) -> str:
    """Exit 2, no traceback, and a last line 'error: <one sentence>' containing every fragment."""
    stderr = result.stderr or ""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert result.returncode == 2, f"exit {result.returncode}\n{stderr[-3000:]}"
    line = error_line(result)
    assert line.startswith("error: "), stderr[-3000:]
    sentence = line.removeprefix("error: ")
    assert sentence.rstrip().endswith((".", ")", "?")), sentence
    for fragment in fragments:
        assert fragment.lower() in sentence.lower(), f"{fragment!r} not in {sentence!r}"
    return sentence


def temporary_leftovers(root: Path) -> list[Path]:
    """Files or folders a write left behind half-done (our temporary names)."""
    return sorted(p for p in Path(root).rglob("*") if p.name.startswith(".") and (".tmp" in p.name or ".partial" in p.name))


def digest_tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and not path.name.endswith(".lock"):
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def wait_for(predicate, timeout: float = 60.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


class Invoked:
    """What a command run in this process left: exit code, stdout, stderr (the shape of CompletedProcess)."""

    def __init__(self, result):
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            self.stderr += "Traceback (in process):\n" + "".join(traceback.format_exception(result.exception))


def invoke(*args, cwd=None, env: dict | None = None) -> Invoked:
    """Run `hat ARGS` in this process (torch is imported once, so a bad-input case costs milliseconds, not
    seconds): the same Typer app and error handling as the executable, in ``cwd`` with ``env`` added."""
    import contextlib

    from typer.testing import CliRunner

    from hat_cli.cli.app import app

    previous = os.getcwd()
    saved = {k: os.environ.get(k) for k in (env or {})}
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update({k: str(v) for k, v in (env or {}).items()})
        return Invoked(CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True))
    finally:
        os.chdir(previous)
        for key, value in saved.items():
            with contextlib.suppress(KeyError):
                del os.environ[key]
            if value is not None:
                os.environ[key] = value
