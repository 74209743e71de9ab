"""`hat data` end to end on real inputs: the IWSLT'14 must-show, Multi30k, the demo task, errors."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from hat_cli.cli.app import app
from hat_cli.data.batching import load_split
from hat_cli.data.demo import generate, lexicon, translate
from hat_cli.data.dictionary import Dictionary
from hat_cli.data.indexed import IndexedDataset
from hat_cli.data.prepare import prepare_task
from tests._data_helpers import IWSLT, MULTI30K_RAW, require

runner = CliRunner()


def _fairseq_log_counts(log_text: str) -> dict:
    """{(split, lang): (sentences, tokens, unk percent string)} from a fairseq preprocess.log."""
    pattern = re.compile(r"\[(\w+)\] \S*/(\w+)\.(\w+): (\d+) sents, (\d+) tokens, ([0-9.e-]+)% replaced")
    return {(m[2], m[1]): (int(m[4]), int(m[5]), m[6]) for m in pattern.finditer(log_text)}


def test_iwslt14_binarization_reproduces_fairseq_preprocess_log(tmp_path):
    """The must-show: our counts equal fairseq-preprocess's own log for the same text and dictionaries."""
    data_bin = require(IWSLT / "data-bin")
    out = tmp_path / "iwslt"
    result = runner.invoke(app, [
        "data", "--task", "iwslt14.de-en", "--from-dir", str(IWSLT),
        "--srcdict", str(data_bin / "dict.de.txt"), "--tgtdict", str(data_bin / "dict.en.txt"),
        "--data-dir", str(out), "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    expected = _fairseq_log_counts((data_bin / "preprocess.log").read_text())
    assert set(summary["splits"]) == {"valid", "test"}  # train text is not in the shared data
    for split in ("valid", "test"):
        info = summary["splits"][split]
        for lang in ("de", "en"):
            sents, tokens, unk_percent = expected[(split, lang)]
            assert info["sentences"] == sents
            assert info["tokens"][lang] == tokens
            # fairseq prints 100 * replaced / tokens with 3 significant digits
            assert f"{100 * info['unk_rate'][lang]:.3}" == unk_percent
    # The dictionaries are copied byte for byte and the binaries read back as the input text.
    assert (out / "dict.de.txt").read_bytes() == (data_bin / "dict.de.txt").read_bytes()
    data = load_split(out, "test", "de", "en")
    lines = (IWSLT / "test.en").read_text(encoding="utf-8").splitlines()
    for i in (0, 100, 6749):
        assert data.tgt_dict.string(data.tgt[i]) == " ".join(lines[i].split()) or "<unk>" in data.tgt_dict.string(data.tgt[i])
    assert json.loads((out / "summary.json").read_text())["splits"] == summary["splits"]


def test_demo_task_is_deterministic_and_follows_its_grammar(tmp_path):
    a = prepare_task("demo", data_dir=tmp_path / "a", seed=3)
    b = prepare_task("demo", data_dir=tmp_path / "b", seed=3)
    assert a["splits"] == b["splits"]
    for name in ("train.src-tgt.src.bin", "test.src-tgt.tgt.bin", "dict.src.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["splits"]["train"]["sentences"] == 20000 and a["splits"]["test"]["sentences"] == 500
    assert a["dictionaries"]["src"]["size"] == 128  # 120 words + 4 specials, a multiple of 8
    data = load_split(tmp_path / "a", "valid", "src", "tgt")
    adjectives, _, mapping = lexicon()
    for i in range(20):
        src = data.src_dict.string(data.src[i]).split()
        assert 4 <= len(src) <= 12
        assert data.tgt_dict.string(data.tgt[i]).split() == translate(src, set(adjectives), mapping)
    settings = json.loads((tmp_path / "a" / "prepare.json").read_text())
    assert settings["seed"] == 3
    other = generate(4, sizes={"train": 50})
    assert other["train"][0] != generate(3, sizes={"train": 50})["train"][0]


def test_reordering_rule():
    adjectives = {"red"}
    mapping = {"red": "ROUGE", "car": "VOITURE", "go": "ALLER"}
    assert translate(["red", "car", "go"], adjectives, mapping) == ["VOITURE", "ROUGE", "ALLER"]


@pytest.mark.slow
def test_multi30k_from_raw_files(tmp_path):
    require(MULTI30K_RAW / "train.de.gz")
    summary = prepare_task("multi30k.de-en", data_dir=tmp_path / "m30k", from_dir=MULTI30K_RAW, workers=2)
    assert {k: v["sentences"] for k, v in summary["splits"].items()} == {"train": 29000, "valid": 1014, "test": 1000}
    assert summary["dictionaries"]["de"] == summary["dictionaries"]["en"]  # joined (shared embeddings)
    assert 7000 < summary["dictionaries"]["de"]["size"] < 9000 and summary["dictionaries"]["de"]["size"] % 8 == 0
    assert summary["splits"]["train"]["unk_rate"] == {"de": 0.0, "en": 0.0}
    assert summary["splits"]["test"]["unk_rate"]["en"] < 0.001
    code = (tmp_path / "m30k" / "code").read_text().splitlines()
    assert code[0] == "#version: 0.2" and len(code) == 8001
    text = (tmp_path / "m30k" / "text" / "train.en").read_text(encoding="utf-8").splitlines()
    assert text[0].replace("@@ ", "") == "two young , white males are outside near many bushes ."


def test_text_mode_builds_dictionaries_from_train(tmp_path):
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    (src_dir / "train.de").write_text("ein haus\nein auto\n", encoding="utf-8")
    (src_dir / "train.en").write_text("a house\na car\n", encoding="utf-8")
    (src_dir / "test.de").write_text("ein boot\n", encoding="utf-8")
    (src_dir / "test.en").write_text("a boat\n", encoding="utf-8")
    summary = prepare_task("iwslt14.de-en", data_dir=tmp_path / "out", from_dir=src_dir)
    # one unknown word among 3 tokens (fairseq counts the </s> of each line)
    assert summary["splits"]["test"]["unk_rate"] == {"de": 1 / 3, "en": 1 / 3}
    d = Dictionary.load(tmp_path / "out" / "dict.de.txt")
    assert d.symbols[4:7] == ["ein", "auto", "haus"] and len(d) == 8
    assert IndexedDataset(tmp_path / "out" / "test.de-en.de")[0].tolist() == [d.index("ein"), d.unk(), d.eos()]


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "Unknown task"),
    (["--task", "iwslt14.de-en", "--from-dir", "/does/not/exist"], "not a directory"),
    (["--task", "iwslt14.de-en", "--srcdict", "/does/not/exist.txt"], "does not exist"),
    (["--task", "multi30k.de-en", "--preprocessed"], "no published preprocessed"),
])
def test_bad_input_exits_2_with_one_sentence(tmp_path, args, message):
    result = runner.invoke(app, ["data", *args, "--data-dir", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_joined_task_rejects_two_different_dictionaries(tmp_path):
    data_bin = require(IWSLT / "data-bin")
    result = runner.invoke(app, ["data", "--task", "multi30k.de-en", "--from-dir", str(IWSLT), "--srcdict", str(data_bin / "dict.de.txt"),
                                 "--tgtdict", str(data_bin / "dict.en.txt"), "--data-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "differ" in result.output


def test_half_a_split_is_rejected(tmp_path):
    (tmp_path / "valid.de").write_text("a\n")
    result = runner.invoke(app, ["data", "--task", "iwslt14.de-en", "--from-dir", str(tmp_path), "--data-dir", str(tmp_path / "o")])
    assert result.exit_code == 2 and "valid.en" in result.output
