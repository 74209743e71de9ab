"""`hat train-super` / `hat train-sub` on CPU with real Multi30k sentences (a few hundred pairs).

The resume test is the contract of issue 7: a run killed with SIGKILL after some checkpoints and then
resumed ends with weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hat_cli.cli.app import app

MULTI30K_TOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k" / "tok"

# A deliberately tiny space so a CPU update takes a few milliseconds.
TINY_SPACE = """\
share-all-embeddings: True
encoder-embed-dim: 32
decoder-embed-dim: 32
encoder-ffn-embed-dim: 64
decoder-ffn-embed-dim: 64
encoder-layers: 2
decoder-layers: 2
encoder-attention-heads: 4
decoder-attention-heads: 4
qkv-dim: 32

encoder-embed-choice: [32, 16]
decoder-embed-choice: [32, 16]
encoder-layer-num-choice: [2, 1]
decoder-layer-num-choice: [2, 1]
encoder-ffn-embed-dim-choice: [64, 32]
decoder-ffn-embed-dim-choice: [64, 32]
encoder-self-attention-heads-choice: [4, 2]
decoder-self-attention-heads-choice: [4, 2]
decoder-ende-attention-heads-choice: [4, 2]
decoder-arbitrary-ende-attn-choice: [-1, 1]
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HAT_NO_PROGRESS": "1"}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    """Binarized data named like the `demo` task (src -> tgt) from real Multi30k German-English captions."""
    if not MULTI30K_TOK.is_dir():
        pytest.skip(f"real data {MULTI30K_TOK} is not available on this machine")
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.indexed import write_indexed

    out = tmp_path_factory.mktemp("demo-data")
    sizes = {"train": ("train", 160), "val": ("valid", 24)}
    dictionary = None
    for split, (name, n) in sizes.items():
        de = gzip.decompress((MULTI30K_TOK / f"{split}.lc.norm.tok.de.gz").read_bytes()).decode().splitlines()[:n]
        en = gzip.decompress((MULTI30K_TOK / f"{split}.lc.norm.tok.en.gz").read_bytes()).decode().splitlines()[:n]
        if dictionary is None:
            dictionary = Dictionary.build(de + en)
            dictionary.save(out / "dict.src.txt")
            dictionary.save(out / "dict.tgt.txt")
        for lang, lines in (("src", de), ("tgt", en)):
            write_indexed(out / f"{name}.src-tgt.{lang}", [dictionary.encode_line(line) for line in lines], len(dictionary))
    return out


@pytest.fixture(scope="module")
def generated_demo(tmp_path_factory) -> Path:
    """The offline `demo` task exactly as `hat data --task demo` prepares it."""
    out = tmp_path_factory.mktemp("hat-data-demo")
    result = CliRunner().invoke(app, ["data", "--task", "demo", "--data-dir", str(out), "--json"], env=_env())
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def tiny_space(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("space") / "tiny.yml"
    path.write_text(TINY_SPACE)
    return path


def _super_args(data: Path, save: Path, space: Path, updates: int) -> list[str]:
    return ["train-super", "--task", "demo", "--data-dir", str(data), "--save-dir", str(save), "--space", str(space),
            "--max-updates", str(updates), "--max-tokens", "300", "--update-freq", "2", "--save-interval", "3",
            "--validate-every", "6", "--keep-last", "10", "--json"]


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "weights.safetensors"))


@pytest.fixture
def one_thread():
    """CPU kernels are deterministic for a fixed thread count; the subprocess runs with one thread too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run_in_process(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args, env=_env())
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_kill_minus_9_then_resume_gives_bit_identical_weights(demo_data, tiny_space, tmp_path, one_thread):
    updates = 18
    # 1. uninterrupted reference run
    ref_doc = _run_in_process(_super_args(demo_data, tmp_path / "ref", tiny_space, updates))
    assert ref_doc["updates"] == updates and ref_doc["resumed_from"] is None

    # 2. the same run in another process, killed with SIGKILL once a few checkpoints exist
    save = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "hat_cli.cli.app", *_super_args(demo_data, save, tiny_space, updates)],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (save / "checkpoint_0000006" / "state.json").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(p.name for p in save.glob("checkpoint_*") if (p / "state.json").exists())
    assert saved and saved[-1] < f"checkpoint_{updates:07d}", saved
    assert not (save / "model").exists()

    # 3. resume (the default when a checkpoint exists) and finish
    doc = _run_in_process(_super_args(demo_data, save, tiny_space, updates))
    assert doc["updates"] == updates
    assert doc["resumed_from"] is not None and 6 <= doc["resumed_from"] < updates

    final = f"checkpoint_{updates:07d}"
    a, b = _weights(tmp_path / "ref" / final), _weights(save / final)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    # the optimizer state and the final model directory agree too
    oa = load_file(str(tmp_path / "ref" / final / "optimizer.safetensors"))
    ob = load_file(str(save / final / "optimizer.safetensors"))
    for name in oa:
        if name.startswith("state."):
            assert torch.equal(oa[name], ob[name]), name
    ma = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    mb = load_file(str(save / "model" / "model.safetensors"))
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert doc["valid_loss"] == ref_doc["valid_loss"]


def test_train_super_in_process_reports_and_saves_a_loadable_supertransformer(demo_data, tiny_space, tmp_path):
    from hat_cli.model.directory import load_model

    runner = CliRunner()
    result = runner.invoke(app, ["train-super", "--task", "demo", "--data-dir", str(demo_data), "--save-dir",
                                 str(tmp_path), "--space", str(tiny_space), "--max-updates", "6", "--max-tokens", "300",
                                 "--save-interval", "3", "--keep-last", "1", "--json"], env=_env())
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"checkpoint", "updates", "valid_loss", "tokens_per_second"}
    assert doc["updates"] == 6 and doc["tokens_per_second"] > 0
    assert set(doc["valid_loss"]) == {"largest", "smallest"}
    assert all(0 < v < 20 for v in doc["valid_loss"].values())
    assert [p.name for p in tmp_path.glob("checkpoint_*")] == ["checkpoint_0000006"]  # --keep-last 1
    state = json.loads((tmp_path / "checkpoint_0000006" / "state.json").read_text())
    assert state["config"]["max_updates"] == 6 and state["position"]["epoch"] >= 1
    model, meta = load_model(doc["checkpoint"])
    assert meta["kind"] == "supertransformer" and meta["task"] == "demo"
    assert meta["training"]["updates"] == 6


def test_final_model_best_is_the_checkpoint_with_the_lowest_validation_loss(generated_demo, tmp_path):
    from hat_cli.training.checkpoint import read_state
    from hat_cli.model.space import SearchSpace

    arch = SearchSpace.builtin("demo").smallest()
    yml = tmp_path / "small.yml"
    arch.save_yaml(yml)
    run = tmp_path / "run"
    # A learning rate far too high makes the validation loss climb after the first update, so the best
    # checkpoint is an early one and "best" differs from "last".
    result = CliRunner().invoke(app, [
        "train-sub", "--task", "demo", "--arch", str(yml), "--data-dir", str(generated_demo), "--save-dir", str(run),
        "--max-updates", "6", "--max-tokens", "300", "--warmup-updates", "1", "--lr", "1.0", "--save-interval", "1",
        "--validate-every", "1", "--keep-last", "6", "--final-model", "best", "--json"], env=_env())
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    recorded = {p.name: read_state(p)["metrics"]["valid_loss"]["arch"] for p in sorted(run.glob("checkpoint_*"))}
    assert len(recorded) == 6
    best = min(recorded, key=lambda name: (recorded[name], -int(name.split("_")[1])))
    assert best != "checkpoint_0000006"
    assert doc["final_checkpoint"] == best and doc["valid_loss"] == recorded[best]
    final = load_file(str(Path(doc["checkpoint"]) / "model.safetensors"))
    chosen = _weights(run / best)
    assert all(torch.equal(final[name], chosen[name]) for name in final)
    bad = CliRunner().invoke(app, ["train-sub", "--task", "demo", "--arch", str(yml), "--data-dir", str(generated_demo),
                                   "--save-dir", str(tmp_path / "bad"), "--final-model", "median"], env=_env())
    assert bad.exit_code == 2 and "median" in bad.output


@pytest.mark.parametrize("inside", [False, True], ids=["compact", "inside-supernet"])
def test_train_sub_from_yaml_on_demo(generated_demo, tmp_path, inside):
    from hat_cli.model.directory import load_model
    from hat_cli.model.space import SearchSpace

    arch = SearchSpace.builtin("demo").smallest()
    yml = tmp_path / "small.yml"
    arch.save_yaml(yml)
    args = ["train-sub", "--task", "demo", "--arch", str(yml), "--data-dir", str(generated_demo), "--save-dir",
            str(tmp_path / "run"), "--max-updates", "4", "--max-tokens", "300", "--warmup-updates", "2",
            "--save-interval", "2", "--average-last", "2", "--json"]
    if inside:
        args.append("--inside-supernet")
    result = CliRunner().invoke(app, args, env=_env())
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["updates"] == 4 and isinstance(doc["valid_loss"], float)
    assert doc["averaged_checkpoints"] == ["checkpoint_0000002", "checkpoint_0000004"]
    model, meta = load_model(doc["checkpoint"])
    assert meta["kind"] == "subtransformer"
    assert model.config == arch
    assert meta["training"]["inside_supernet"] is inside
    # the averaged final model really is the mean of the two checkpoints
    w2 = _weights(tmp_path / "run" / "checkpoint_0000002")
    w4 = _weights(tmp_path / "run" / "checkpoint_0000004")
    final = load_file(str(Path(doc["checkpoint"]) / "model.safetensors"))
    name = "decoder.layers.0.fc1.weight"
    expected = (w2[name] + w4[name]) / 2
    assert torch.allclose(final[name], expected[tuple(slice(0, n) for n in final[name].shape)], atol=1e-7)
    # ... and the reported validation loss is that average's, not the last checkpoint's
    last_state = json.loads((tmp_path / "run" / "checkpoint_0000004" / "state.json").read_text())
    recorded_last = next(iter(last_state["metrics"]["valid_loss"].values()))
    assert doc["valid_loss"] != pytest.approx(recorded_last, abs=1e-6)
    assert meta["training"]["valid_loss"]["arch"] == pytest.approx(doc["valid_loss"])


def test_bad_input_exits_2_with_one_sentence(tmp_path, demo_data):
    class Runner(CliRunner):  # Rich wraps long lines: compare with whitespace collapsed
        def invoke(self, *args, **kwargs):
            result = super().invoke(*args, **kwargs)
            result.text = " ".join(result.output.split())
            return result

    runner = Runner()
    r = runner.invoke(app, ["train-super", "--task", "wmt99", "--save-dir", str(tmp_path)], env=_env())
    assert r.exit_code == 2 and "Unknown task 'wmt99'" in r.text
    r = runner.invoke(app, ["train-super", "--task", "demo", "--data-dir", str(tmp_path / "none"), "--save-dir", str(tmp_path)], env=_env())
    assert r.exit_code == 2 and "hat data --task demo" in r.text
    r = runner.invoke(app, ["train-sub", "--task", "demo", "--arch", str(tmp_path / "missing.yml"), "--data-dir", str(demo_data)], env=_env())
    assert r.exit_code == 2 and "does not exist" in r.text
    r = runner.invoke(app, ["train-super", "--task", "demo", "--data-dir", str(demo_data), "--precision", "fp8"], env=_env())
    assert r.exit_code == 2 and "precision" in r.text
    big = tmp_path / "big.yml"
    from hat_cli.model.space import SearchSpace

    SearchSpace.builtin("space0").largest().save_yaml(big)
    r = runner.invoke(app, ["train-sub", "--task", "demo", "--arch", str(big), "--data-dir", str(demo_data)], env=_env())
    assert r.exit_code == 2 and "does not fit" in r.text


def test_resuming_into_another_runs_directory_is_refused(generated_demo, tmp_path):
    from hat_cli.model.space import SearchSpace

    yml = tmp_path / "small.yml"
    SearchSpace.builtin("demo").smallest().save_yaml(yml)
    common = ["--task", "demo", "--data-dir", str(generated_demo), "--save-dir", str(tmp_path / "run"),
              "--max-updates", "2", "--max-tokens", "300", "--warmup-updates", "1"]
    first = CliRunner().invoke(app, ["train-sub", "--arch", str(yml), *common], env=_env())
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["train-super", *common], env=_env())
    assert second.exit_code == 2
    assert "belongs to another run" in " ".join(second.output.split())


@pytest.mark.slow
def test_two_processes_match_one_process_with_twice_the_update_freq(demo_data, tiny_space, tmp_path):
    """bench/bench_ddp.sh on CPU (gloo): 2 ranks x update-freq 1 == 1 rank x update-freq 2, bit for bit."""
    script = Path(__file__).resolve().parents[1] / "bench" / "bench_ddp.sh"
    env = {**_env(), "DEVICE": "cpu", "UPDATES": "10", "MAXTOK": "300", "DATA": str(demo_data), "SPACE": str(tiny_space),
           "TASK": "demo"}
    done = subprocess.run(["bash", str(script), "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "ddp.txt").read_text()
    assert "max |difference| of final weights: 0.00e+00" in report, report
    # the logged loss sums are added in another order across ranks: equal up to float rounding
    import re

    loss_diff = float(re.search(r"max \|diff\| of train loss \(bits/token\): (\S+);", report).group(1))
    assert loss_diff < 1e-4, report


@pytest.mark.slow
def test_two_processes_average_the_last_checkpoints_and_validate_the_average(generated_demo, tmp_path):
    """Under torchrun every rank loads the average (after the main rank wrote the checkpoints) and validates
    it together; the run neither hangs nor reports the last checkpoint's loss."""
    from hat_cli.model.space import SearchSpace

    yml = tmp_path / "largest.yml"
    SearchSpace.builtin("demo").largest().save_yaml(yml)
    save = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "hat_cli.cli.app",
            "train-sub", "--task", "demo", "--arch", str(yml), "--data-dir", str(generated_demo), "--save-dir", str(save),
            "--max-updates", "6", "--max-tokens", "300", "--save-interval", "2", "--validate-every", "2",
            "--average-last", "2", "--device", "cpu", "--json"]
    done = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["world_size"] == 2 and doc["averaged_checkpoints"] == ["checkpoint_0000004", "checkpoint_0000006"]
    last = json.loads((save / "checkpoint_0000006" / "state.json").read_text())["metrics"]["valid_loss"]["arch"]
    assert doc["valid_loss"] != pytest.approx(last, abs=1e-6)


@pytest.mark.slow
def test_compiled_functions_train_like_the_eager_ones_with_distillation(demo_data, tiny_space, tmp_path, one_thread):
    """The sandwich rule with in-place distillation, `compiled_loss` and `compiled_norms` on (the GPU defaults) and
    off, in fp32 on the CPU without dropout (compiled dropout draws other masks): the same validation losses and
    weights after a few updates, up to float rounding."""
    runs = {}
    for compiled in (False, True):
        config = tmp_path / f"compiled-{compiled}.yml"
        switch = str(compiled).lower()
        config.write_text(f"compiled_loss: {switch}\ncompiled_norms: {switch}\ndropout: 0.0\n")
        save = tmp_path / f"run-{compiled}"
        doc = _run_in_process(["train-super", "--task", "demo", "--data-dir", str(demo_data), "--save-dir", str(save),
                               "--space", str(tiny_space), "--max-updates", "4", "--max-tokens", "300",
                               "--save-interval", "4", "--keep-last", "1", "--sampling", "sandwich", "--distill", "0.5",
                               "--config", str(config), "--device", "cpu", "--precision", "fp32", "--json"])
        state = json.loads((save / "checkpoint_0000004" / "state.json").read_text())
        assert state["config"]["compiled_loss"] is state["config"]["compiled_norms"] is compiled
        runs[compiled] = (doc["valid_loss"], _weights(save / "checkpoint_0000004"))
    from hat_cli.core.compiled import compile_warnings

    assert not compile_warnings()
    (eager_loss, eager), (compiled_loss, compiled) = runs[False], runs[True]
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    # Adam turns rounding-level gradient differences of near-zero gradients into a fraction of one step (the lr
    # after 4 of the 50 warm-up updates is 4e-4), so weights agree to an absolute tolerance, not a relative one.
    assert max((compiled[k] - eager[k]).abs().max().item() for k in eager) < 1e-4


@pytest.mark.slow
def test_resuming_with_compiled_norms_switched_says_the_masks_change(demo_data, tiny_space, tmp_path, one_thread):
    """A checkpoint written with the residual norms eager (the CPU default, and every run before the switch existed)
    resumed with `compiled_norms: true`: the run goes on, and says that dropout masks are drawn differently."""
    save = tmp_path / "run"
    _run_in_process(_super_args(demo_data, save, tiny_space, 3))
    state = json.loads((save / "checkpoint_0000003" / "state.json").read_text())
    assert state["compiled_norms"] is False
    config = tmp_path / "on.yml"
    config.write_text("compiled_norms: true\n")
    result = CliRunner().invoke(app, [*_super_args(demo_data, save, tiny_space, 6), "--config", str(config)], env=_env())
    assert result.exit_code == 0, result.output
    assert "compiled_norms is on now" in result.output.replace("\n", " ")
    assert json.loads((save / "checkpoint_0000006" / "state.json").read_text())["compiled_norms"] is True


def test_resume_names_settings_an_older_checkpoint_lacked():
    """A checkpoint written before a setting existed ran with its default: resuming with another value says so,
    and HAT's rule does not mention the sandwich's own settings."""
    from hat_cli.training.config import TrainingConfig
    from hat_cli.training.loop import _changed_settings

    old = {"config": {"seed": 1, "sampling": "sandwich", "sandwich_random": 1, "distill": 0.5}}  # no hand-scaled key
    now = TrainingConfig(sampling="sandwich", sandwich_random=1, distill=0.5, sandwich_hand_scaled=1)
    notes = _changed_settings(old, now, 1, False)
    assert any("sandwich_hand_scaled changed from 0 to 1" in note for note in notes), notes
    assert not _changed_settings(old, now.replace(sandwich_hand_scaled=0), 1, False)
    hat_rule = {"config": {"seed": 1, "sampling": "random", "sandwich_random": 2}}
    assert not _changed_settings(hat_rule, TrainingConfig(sampling="random", sandwich_random=5), 1, False)


def test_hand_scaled_draws_need_a_plain_transformer_in_the_space(demo_data, tmp_path):
    """A space whose decoders never attend to the last encoder layer alone has no plain Transformer: refused with
    one sentence before the save dir is created."""
    space = tmp_path / "no-plain.yml"
    space.write_text(TINY_SPACE.replace("decoder-arbitrary-ende-attn-choice: [-1, 1]", "decoder-arbitrary-ende-attn-choice: [1]"))
    assert "decoder-arbitrary-ende-attn-choice: [1]" in space.read_text()
    save = tmp_path / "run"
    result = CliRunner().invoke(app, [*_super_args(demo_data, save, space, 3), "--sampling", "sandwich",
                                      "--sandwich-hand-scaled", "1", "--device", "cpu"], env=_env())
    assert result.exit_code == 2, result.output
    assert "no hand-scaled Transformer" in " ".join(result.output.split())
    assert not save.exists()
