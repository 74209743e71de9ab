"""OS errors are sentences that name the path (exit 2), and leave what was on disk intact: a read-only
target, a full disk (a small tmpfs in a private mount namespace), a file where a folder belongs and the
reverse; and written files follow the umask."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from _hat import assert_refused, digest_tree, hat_command, hat_env, invoke, run_hat, temporary_leftovers
from conftest import TINY, namespaces_work, small_search

QUICK_TEST = ("--subset", "valid", "--max-len-b", "5")  # a 4-update model translates for long otherwise
SHIM = Path(__file__).with_name("failing_writes")


def run_with_mount(args, cwd: Path, *, readonly: Path | None = None, full: Path | None = None, size: str = "64k",
                   stage: Path | None = None, keep: Path | None = None):
    """Run `hat ARGS` where ``readonly`` is read-only, or ``full`` is a disk of ``size`` (first filled with a
    copy of ``stage``; afterwards copied to ``keep``): a tmpfs in a private mount namespace where the machine
    allows one, else the failing-write shim (failing_writes/sitecustomize.py) with the same errno."""
    if not namespaces_work():
        return _run_with_shim(args, cwd, readonly=readonly, full=full, stage=stage, keep=keep)
    out, err, rc = cwd / ".hat.out", cwd / ".hat.err", cwd / ".hat.rc"
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    steps = []
    if readonly is not None:
        steps += [f"mount --bind {q(readonly)} {q(readonly)}", f"mount -o remount,bind,ro {q(readonly)}"]
    if full is not None:
        full.mkdir(parents=True, exist_ok=True)
        steps.append(f"mount -t tmpfs -o size={size} tmpfs {q(full)}")
        if stage is not None:
            steps.append(f"cp -a {q(stage)}/. {q(full)}/")
    command = " ".join(shlex.quote(str(a)) for a in hat_command(*args))
    script = " && ".join(steps + [f"{{ {command} >{q(out)} 2>{q(err)}; echo $? >{q(rc)}; }}"])
    if full is not None and keep is not None:
        script += f"; mkdir -p {q(keep)} && cp -a {q(full)}/. {q(keep)}/"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=cwd, env=hat_env(), capture_output=True, text=True, timeout=300)
    assert rc.exists(), done.stderr
    return SimpleNamespace(returncode=int(rc.read_text()), stdout=out.read_text(), stderr=err.read_text())


def _run_with_shim(args, cwd: Path, *, readonly, full, stage, keep):
    import errno
    import shutil

    target = readonly if readonly is not None else full
    target.mkdir(parents=True, exist_ok=True)
    if full is not None and stage is not None:
        shutil.copytree(stage, full, dirs_exist_ok=True)
    env = hat_env(PYTHONPATH=os.pathsep.join([str(SHIM), os.environ.get("PYTHONPATH", "")]), HAT_TEST_FAIL_UNDER=str(target),
                  HAT_TEST_FAIL_ERRNO=str(errno.EROFS if readonly is not None else errno.ENOSPC))
    result = subprocess.run(hat_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if full is not None and keep is not None:
        shutil.copytree(full, keep, dirs_exist_ok=True)
    return result


def sub_arch(path: Path) -> Path:
    from hat_cli.model.space import SearchSpace

    SearchSpace.builtin("demo").smallest().save_yaml(path)
    return path


# --------------------------------------------------------------------------------------- read-only
def _readonly_cases(assets: Path, ro: Path, tmp: Path) -> dict[str, list]:
    data = assets / "data"
    return {
        "data": ["data", "--task", "demo", "--data-dir", ro / "d"],
        "train-super": ["train-super", "--task", "demo", "--data-dir", data, "--save-dir", ro / "s", "--max-updates", "2", "--device", "cpu"],
        "train-sub": ["train-sub", "--task", "demo", "--arch", sub_arch(tmp / "a.yml"), "--data-dir", data, "--save-dir", ro / "s",
                      "--max-updates", "2", "--device", "cpu"],
        "collect-latency": ["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "2", "--csv", ro / "c.csv", *TINY],
        "fit-predictor": ["fit-predictor", "--dataset", assets / "latency.csv", "--out", ro / "p"],
        "search": small_search(hw="cpu", latency="1000ms", predictor=assets / "predictor", supernet=assets / "super" / "model",
                               data_dir=data, out=ro / "o"),
        "test": ["test", assets / "super" / "model", "--task", "demo", "--data-dir", data, "--output", ro / "h.txt", *QUICK_TEST],
        "demo": ["demo", "--workdir", ro / "w"],
    }


@pytest.mark.parametrize("command", ["data", "train-super", "train-sub", "collect-latency", "fit-predictor", "search", "test", "demo"])
def test_read_only_target_is_one_sentence(tmp_path, assets, command):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("already here\n")
    args = _readonly_cases(assets, ro, tmp_path)[command]
    before = digest_tree(ro)
    result = run_with_mount(args, tmp_path, readonly=ro)
    assert_refused(result, "read-only", str(ro))
    assert digest_tree(ro) == before


# --------------------------------------------------------------------------------------- disk full
@pytest.mark.slow
def test_full_disk_during_data_is_one_sentence(tmp_path):
    full = tmp_path / "full"
    result = run_with_mount(["data", "--task", "demo", "--data-dir", full / "d"], tmp_path, full=full, size="256k", keep=tmp_path / "after")
    assert_refused(result, "space", str(full))
    assert not temporary_leftovers(tmp_path / "after")


@pytest.mark.slow
def test_full_disk_during_training_keeps_the_earlier_checkpoint(tmp_path, assets):
    stage = tmp_path / "stage"
    stage.mkdir()
    full = tmp_path / "full"
    # room for one checkpoint (4.2 MB) and the log, not for a second one
    result = run_with_mount(["train-super", "--task", "demo", "--data-dir", assets / "data", "--save-dir", full / "s",
                             "--max-updates", "2", "--save-interval", "1", "--validate-every", "2", "--keep-last", "5", "--device", "cpu"],
                            tmp_path, full=full, size="6m", stage=stage, keep=tmp_path / "after")
    assert_refused(result, "space", str(full))
    after = tmp_path / "after" / "s"
    assert not temporary_leftovers(tmp_path / "after")
    if not namespaces_work():
        return  # the shim fails the first write; the rest needs a disk that fills up part way
    from hat_cli.training.checkpoint import latest_checkpoint, read_state

    latest = latest_checkpoint(after)
    assert latest is not None and read_state(latest)["updates"] == 1
    pointer = json.loads((after / "last.json").read_text())
    assert (after / pointer["checkpoint"]).is_dir()  # and resuming from it is test_kill's and test_training's business


@pytest.mark.slow
def test_full_disk_during_collection_keeps_every_whole_row(tmp_path, latency_csv):
    stage = tmp_path / "stage"
    stage.mkdir()
    lines = latency_csv.read_text().splitlines(keepends=True)
    (stage / "c.csv").write_text("".join(lines[:4]))
    full = tmp_path / "full"
    result = run_with_mount(["collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "60", "--csv", full / "c.csv", *TINY],
                            tmp_path, full=full, size="8k", stage=stage, keep=tmp_path / "after")
    assert_refused(result, "space", str(full / "c.csv"))
    kept = (tmp_path / "after" / "c.csv").read_text()
    assert kept.startswith("".join(lines[:4]))
    from hat_cli.latency.dataset import read_latency_csv

    written = len(read_latency_csv(tmp_path / "after" / "c.csv").samples())
    assert 3 < written < 60 or not namespaces_work()  # some rows fitted before the disk was full, not all
    # once there is space, the run continues after the last whole row: every index once
    result = run_hat("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", str(written + 3), "--csv",
                     tmp_path / "after" / "c.csv", *TINY, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    indices = [int(r["sample_index"]) for r in read_latency_csv(tmp_path / "after" / "c.csv").samples()]
    assert sorted(indices) == list(range(written + 3))


@pytest.mark.slow
def test_full_disk_during_search_and_test_is_one_sentence(tmp_path, assets):
    full = tmp_path / "full"
    result = run_with_mount(small_search(hw="cpu", latency="1000ms", predictor=assets / "predictor", supernet=assets / "super" / "model",
                                         data_dir=assets / "data", out=full / "o"), tmp_path, full=full, size="8k", keep=tmp_path / "a1")
    assert_refused(result, "space", str(full))
    assert not temporary_leftovers(tmp_path / "a1")
    result = run_with_mount(["test", assets / "super" / "model", "--task", "demo", "--data-dir", assets / "data", "--output", full / "h.txt",
                             *QUICK_TEST],
                            tmp_path, full=full, size="4k", keep=tmp_path / "a2")
    assert_refused(result, "space", str(full))
    assert not temporary_leftovers(tmp_path / "a2")


# ------------------------------------------------------------------------------- file vs directory
def test_a_file_where_a_directory_belongs(tmp_path, assets):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file\n")
    data = assets / "data"
    cases = [
        ["data", "--task", "demo", "--data-dir", blocker],
        ["train-super", "--task", "demo", "--data-dir", data, "--save-dir", blocker, "--max-updates", "2", "--device", "cpu"],
        ["train-sub", "--task", "demo", "--arch", sub_arch(tmp_path / "a.yml"), "--data-dir", data, "--save-dir", blocker,
         "--max-updates", "2", "--device", "cpu"],
        small_search(hw="cpu", latency="1000ms", predictor=assets / "predictor", supernet=assets / "super" / "model", data_dir=data, out=blocker),
        ["fit-predictor", "--dataset", assets / "latency.csv", "--out", blocker],
        ["demo", "--workdir", blocker],
        ["data", "--task", "demo", "--data-dir", blocker / "below"],
    ]
    for args in cases:
        assert_refused(invoke(*args, cwd=tmp_path), str(blocker))
        assert blocker.read_text() == "a file\n"


def test_a_directory_where_a_file_belongs(tmp_path, assets):
    folder = tmp_path / "folder"
    folder.mkdir()
    result = invoke("collect-latency", "--hw", "cpu", "--task", "demo", "--samples", "2", "--csv", folder, *TINY, cwd=tmp_path)
    assert_refused(result, str(folder))
    result = invoke("test", assets / "super" / "model", "--task", "demo", "--data-dir", assets / "data", "--output", folder,
                     *QUICK_TEST, cwd=tmp_path)
    assert_refused(result, str(folder))
    assert not temporary_leftovers(tmp_path)
    assert list(folder.iterdir()) == []


# ---------------------------------------------------------------------------------------- umask
@pytest.mark.slow
@pytest.mark.parametrize("mask", [0o027])  # not the usual 022: a file written with a fixed mode shows
def test_written_files_follow_the_umask(tmp_path, assets, mask):
    def run(*args):
        done = subprocess.run(hat_command(*args), cwd=tmp_path, env=hat_env(), capture_output=True, text=True,
                              preexec_fn=lambda: os.umask(mask), timeout=300)
        assert done.returncode == 0, done.stderr
    run("data", "--task", "demo", "--data-dir", tmp_path / "d")
    run("train-super", "--task", "demo", "--data-dir", tmp_path / "d", "--save-dir", tmp_path / "s", "--max-updates", "2", "--device", "cpu")
    run("fit-predictor", "--dataset", assets / "latency.csv", "--out", tmp_path / "p")
    expected = 0o666 & ~mask
    wrong = [(str(p.relative_to(tmp_path)), oct(stat.S_IMODE(p.stat().st_mode)))
             for p in tmp_path.rglob("*") if p.is_file() and stat.S_IMODE(p.stat().st_mode) != expected and not p.name.endswith(".lock")]
    assert not wrong, f"expected {oct(expected)}: {wrong[:8]}"
