"""`model_zoo.toml`, name resolution, `hat zoo list/info` (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hat_cli import resolve
from hat_cli.cli.app import app
from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.latency.backends import load_hardware
from hat_cli.model.counting import count_flops, count_params
from hat_cli.tasks import get_task
from hat_cli.zoo import catalogue as zoo

REPO = Path(__file__).resolve().parents[1]
HARDWARE = {"raspberrypi", "xeon", "titanxp"}


@pytest.fixture(autouse=True)
def shipped_zoo(monkeypatch):
    monkeypatch.delenv(paths.ZOO_FILE_ENV, raising=False)


def test_shipped_table_lists_all_48_models_and_its_facts_agree():
    """model_zoo.toml is the source of truth; its facts must agree with each other: the name spells the task,
    device, latency and BLEU; the architecture lies in the task's space; parameters and FLOPs follow from it."""
    table = zoo.load_zoo()
    assert len(table.models) == 48
    assert sum(m.kind == "subtransformer" for m in table.models.values()) == 44
    assert sum(m.kind == "supertransformer" for m in table.models.values()) == 4
    for name, entry in table.models.items():
        task = get_task(entry.task)
        assert entry.super_shape == resolve.search_space(None, task).shape or entry.kind == "subtransformer"
        assert entry.share_all_embeddings == task.share_all_embeddings
        assert entry.original_url.startswith("https://www.dropbox.com/") and name in entry.original_url
        assert "@" not in entry.hub.repo and entry.hub.filename == "model.safetensors"
        assert entry.hub.sha256 == ""  # honest: nothing is published on the Hub yet
        if entry.kind == "supertransformer":
            assert name == f"HAT_{task.zoo_key}_super_{entry.search_space}"
            continue
        assert entry.hardware in HARDWARE
        assert name == f"HAT_{task.zoo_key}_{entry.hardware}@{entry.labels['latency_label']}_bleu@{entry.bleu}"
        seconds = entry.labels["latency_label"].endswith("s") and not entry.labels["latency_label"].endswith("ms")
        assert entry.latency_ms == pytest.approx(float(entry.labels["latency_label"].rstrip("ms")) * (1000 if seconds else 1))
        arch = entry.architecture()
        arch.validate(resolve.search_space(None, task))
        assert dict(entry.arch_keys) == arch.to_hat_keys()
        assert (entry.params, entry.flops) == (count_params(arch), count_flops(arch, task.dummy_length))
        assert entry.sacrebleu < entry.bleu


def test_super_params_follow_hat_accounting():
    # docs/METHOD.md §9.2: WMT 70,900,992 and IWSLT 55,160,064 parameters without embeddings
    assert zoo.resolve("HAT_wmt14ende_super_space0").params == 70_900_992
    assert zoo.resolve("HAT_iwslt14deen_super_space1").params == 55_160_064


def test_eight_published_predictors():
    predictors = zoo.load_zoo().predictors
    assert len(predictors) == 8
    p = zoo.published_predictor("xeon", "wmt14.en-de")
    assert p.name == "wmt14ende_cpu_xeon" and p.lat_norm == 300
    assert p.feature_norm == (640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2)
    assert p.original_url.endswith("/latency_dataset/predictors/wmt14ende_cpu_xeon.pt")
    assert zoo.published_predictor("raspberrypi", "wmt14enfr").lat_norm == 5000
    for entry in zoo.models(kind="subtransformer"):  # each model names the predictor of its device and task
        assert entry.predictor == zoo.published_predictor(entry.hardware, entry.task).name
    with pytest.raises(HatError, match="no latency predictor for raspberrypi on iwslt14.de-en"):
        zoo.published_predictor("raspberrypi", "iwslt14.de-en")


def test_backends_name_the_published_predictors_of_their_device():
    """What a backend's published_predictors names is what resolve falls back to (docs/ARCHITECTURE.md)."""
    for backend in load_hardware().backends.values():
        for task, name in backend.published_predictors.items():
            entry = zoo.predictor_entry(name)
            assert (entry.hardware, entry.task) == (backend.name, task)


def test_prefix_resolution():
    assert zoo.resolve("HAT_wmt14ende_xeon@204.2ms").name == "HAT_wmt14ende_xeon@204.2ms_bleu@27.6"
    assert zoo.resolve("wmt14ende_xeon@204.2ms").name == "HAT_wmt14ende_xeon@204.2ms_bleu@27.6"
    exact = "HAT_wmt14ende_titanxp@57.1ms_bleu@25.8"
    assert zoo.resolve(exact).name == exact
    with pytest.raises(HatError) as info:
        zoo.resolve("HAT_wmt14ende_xeon")
    message = str(info.value)
    assert "matches 6 published models" in message and "HAT_wmt14ende_xeon@450.9ms_bleu@28.5" in message
    with pytest.raises(HatError, match="not a published model name"):
        zoo.resolve("HAT_wmt14ende_tpu")


def test_architecture_and_task_helpers():
    arch = zoo.architecture_of("HAT_wmt14ende_xeon@204.2ms")
    assert arch.decoder_layer_num == 2 and arch.encoder_self_attention_heads == (4, 8, 8, 4, 8, 8)
    assert resolve.architecture("HAT_wmt14ende_xeon@204.2ms") == arch  # how `--arch NAME` resolves
    with pytest.raises(HatError, match="SuperTransformer and has no single architecture"):
        zoo.architecture_of("HAT_wmt19ende_super")
    assert zoo.supernet_for_task("wmt14.en-de").name == "HAT_wmt14ende_super_space0"
    assert zoo.supernet_for_task("iwslt14deen").name == "HAT_iwslt14deen_super_space1"
    with pytest.raises(HatError, match="No SuperTransformer was published"):
        zoo.supernet_for_task("multi30k.de-en")
    assert len(zoo.models(task="wmt14.en-fr", hardware="raspberrypi")) == 6


def test_list_json_shows_all_48_with_published_numbers():
    result = CliRunner().invoke(app, ["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 48
    by_name = {r["name"]: r for r in rows}
    row = by_name["HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8"]
    assert row == {
        "name": "HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8", "kind": "subtransformer", "task": "wmt14.en-de",
        "hardware": "raspberrypi", "latency_ms": 3500.0, "bleu": 25.8, "sacrebleu": 25.6, "params": 25_217_536,
    }
    for entry in zoo.models():
        assert by_name[entry.name] == entry.summary()


def test_list_filters_and_table():
    runner = CliRunner()
    rows = json.loads(runner.invoke(app, ["zoo", "list", "--task", "wmt19.en-de", "--hw", "titanxp", "--json"]).stdout)
    assert len(rows) == 6 and {r["hardware"] for r in rows} == {"titanxp"}
    result = runner.invoke(app, ["zoo", "list", "--task", "nope"])
    assert result.exit_code == 2 and "Unknown task 'nope'" in result.output
    result = runner.invoke(app, ["zoo", "list", "--hw", "xeon"])
    assert result.exit_code == 0 and "204.2ms" in result.output


def test_info_json_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HAT_HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["zoo", "info", "HAT_wmt14enfr_xeon@208", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["name"] == "HAT_wmt14enfr_xeon@208.8ms_bleu@40.0"
    assert doc["arch"]["decoder-arbitrary-ende-attn-all-subtransformer"] == [-1, 2]
    assert doc["hub"]["repo"] == "hat-cli/HAT_wmt14enfr_xeon-208.8ms_bleu-40.0" and doc["hub"]["published"] is False
    assert doc["local"] is None
    result = runner.invoke(app, ["zoo", "info", "HAT_wmt14enfr"])
    assert result.exit_code == 2 and "give more of the name" in result.output


def test_the_table_ships_inside_hat_configs():
    shipped = REPO / "configs" / "model_zoo.toml"
    assert shipped.is_file() and not shipped.is_symlink()  # what a wheel carries
    assert paths.zoo_file() == paths.CONFIG_DIR / "model_zoo.toml"
    root = REPO / "model_zoo.toml"  # the copy at the root, for readers, is a link to it
    assert root.is_symlink() and root.resolve() == shipped.resolve()


def test_broken_table_is_a_clean_error(tmp_path, monkeypatch):
    bad = tmp_path / "zoo.toml"
    bad.write_text('[models."x"]\nkind = "subtransformer"\n')
    monkeypatch.setenv(paths.ZOO_FILE_ENV, str(bad))
    with pytest.raises(HatError, match="is incomplete"):
        zoo.resolve("x")
    bad.write_text("[models\n")
    with pytest.raises(HatError, match="not valid TOML"):
        zoo.load_zoo()


def test_model_dir_accepts_directories_and_rejects_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("HAT_HOME", str(tmp_path / "home"))
    assert resolve.model_dir(tmp_path) == (tmp_path, str(tmp_path))
    with pytest.raises(HatError, match="neither a model directory nor a published model name"):
        resolve.model_dir(tmp_path / "nope")
