"""Original HAT checkpoints: the traps around a numerically exact conversion."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from test_convert import SMALL_IWSLT, SMALL_WMT, fp16_rounded, small_arch, wmt_super  # noqa: E402,F401 (a fixture)
from test_convert_fixtures import write_original_checkpoint, write_zoo_table  # noqa: E402

from _hat import assert_refused, invoke  # noqa: E402
from hat_cli.model.transformer import TransformerModel  # noqa: E402
from hat_cli.model.space import SubTransformerConfig  # noqa: E402


def test_file_name_and_checkpoint_args_must_agree(tmp_path, wmt_super):
    """A 45.6 ms run saved under the 74.5 ms model's name: the args recorded in the file win the argument."""
    name = "HAT_small_xeon@74.5ms_bleu@1.0"
    named = small_arch(arbitrary=(2, 1, -1))
    trained = small_arch(arbitrary=(-1, -1, -1), ffn=32)
    env = {"HAT_ZOO_FILE": str(write_zoo_table(tmp_path, name, named, SMALL_WMT))}
    ckpt = write_original_checkpoint(tmp_path / f"{name}.pt", wmt_super, legacy=True, sub_config=trained)
    result = invoke("zoo", "convert", ckpt, "-o", tmp_path / "out", cwd=tmp_path, env=env)
    assert_refused(result, name, "--arch")
    assert not (tmp_path / "out").exists()
    # naming the architecture explicitly settles it
    yml = tmp_path / "trained.yml"
    trained.save_yaml(yml)
    result = invoke("zoo", "convert", ckpt, "--arch", yml, "-o", tmp_path / "out", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert SubTransformerConfig.from_dict(json.loads((tmp_path / "out" / "config.json").read_text())["arch"]) == trained


def test_converting_the_largest_architecture_records_a_subtransformer_that_profile_takes(tmp_path, wmt_super):

    full = SubTransformerConfig(
        encoder_embed_dim=64, decoder_embed_dim=64, encoder_layer_num=6, decoder_layer_num=6,
        encoder_ffn_embed_dim=(96,) * 6, encoder_self_attention_heads=(8,) * 6, decoder_ffn_embed_dim=(96,) * 6,
        decoder_self_attention_heads=(8,) * 6, decoder_ende_attention_heads=(8,) * 6, decoder_arbitrary_ende_attn=(1,) * 6,
    )
    yml = tmp_path / "full.yml"
    full.save_yaml(yml)
    ckpt = write_original_checkpoint(tmp_path / "c.pt", wmt_super, legacy=False)
    result = invoke("zoo", "convert", ckpt, "--arch", yml, "-o", tmp_path / "out", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "subtransformer"
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["kind"] == "subtransformer"
    from hat_cli.model.directory import load_model

    model, _ = load_model(tmp_path / "out")
    assert SubTransformerConfig.from_dict(meta["arch"]) == full
    result = invoke("profile", tmp_path / "out", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["task"] == "wmt14.en-de"


def test_profile_of_a_model_directory_uses_its_recorded_task(tmp_path):
    torch.manual_seed(1)
    iwslt = fp16_rounded(TransformerModel.supertransformer(SMALL_IWSLT, 37, 29, False))
    ckpt = write_original_checkpoint(tmp_path / "i.pt", iwslt, legacy=False, fp16=False, data="data/binary/iwslt14_de_en",
                                     arch_name="transformersuper_iwslt_de_en")
    yml = tmp_path / "a.yml"
    small_arch(heads=(4, 4, 4), ffn=64).save_yaml(yml)
    assert invoke("zoo", "convert", ckpt, "--arch", yml, "-o", tmp_path / "out", cwd=tmp_path).returncode == 0
    result = invoke("profile", tmp_path / "out", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["task"] == "iwslt14.de-en" and doc["length"] == 23


def test_converted_checkpoints_record_the_original_dropout_quirk(tmp_path, wmt_super):
    ckpt = write_original_checkpoint(tmp_path / "c.pt", wmt_super, legacy=True)
    yml = tmp_path / "a.yml"
    small_arch().save_yaml(yml)
    assert invoke("zoo", "convert", ckpt, "--arch", yml, "-o", tmp_path / "out", cwd=tmp_path).returncode == 0
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["hyperparameters"]["hat_dropout_quirk"] is True


def test_dictionaries_are_recorded_at_conversion_and_a_swapped_one_is_refused(tmp_path, assets):
    """The demo data's joined dictionary, a SuperTransformer of its size converted from the original format."""
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.model.space import SearchSpace

    data = assets / "data"
    vocab = len(Dictionary.load(data / "dict.src.txt"))
    space = SearchSpace.builtin("demo")
    torch.manual_seed(3)
    model = fp16_rounded(TransformerModel.supertransformer(space.shape, vocab, vocab, True))
    ckpt = write_original_checkpoint(tmp_path / "demo.pt", model, legacy=False, data="data/binary/demo")
    result = invoke("zoo", "convert", ckpt, "--task", "demo", "--data-dir", data, "-o", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert set(meta["dictionaries"]) == {"src", "tgt"} and all(len(v) == 64 for v in meta["dictionaries"].values())
    # the same data works; a dictionary whose first entries were swapped is refused before translating
    swapped = Path(shutil.copytree(data, tmp_path / "swapped"))
    for lang in ("src", "tgt"):
        lines = (swapped / f"dict.{lang}.txt").read_text().splitlines(keepends=True)
        lines[0], lines[1] = lines[1], lines[0]
        (swapped / f"dict.{lang}.txt").write_text("".join(lines))
    result = invoke("test", tmp_path / "out", "--task", "demo", "--data-dir", swapped, "--output", tmp_path / "h.txt",
                     "--subset", "valid", cwd=tmp_path)
    assert_refused(result, "dictionary")
    assert not (tmp_path / "h.txt").exists()
    # converted without dictionaries: the test runs, and says that nothing could be checked
    result = invoke("zoo", "convert", ckpt, "--task", "demo", "-o", tmp_path / "bare", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "bare" / "config.json").read_text())["dictionaries"] == {}
    result = invoke("test", tmp_path / "bare", "--task", "demo", "--data-dir", data, "--output", tmp_path / "h2.txt",
                     "--subset", "valid", "--max-len-b", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dictionar" in result.stderr and "warning" in result.stderr
