"""`hat test` end to end on real IWSLT'14 test sentences (binarized here with the real fairseq
dictionaries) and a random-weight model directory: references, hypothesis files, scores, JSON, and
the bad-input paths (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hat_cli.evaluation.bleu import sacre_bleu, tokenized_bleu
from hat_cli import resolve
from hat_cli.cli.app import app
from hat_cli.core.errors import HatError
from hat_cli.data.batching import collate, load_split
from hat_cli.data.dictionary import Dictionary, remove_bpe
from hat_cli.data.indexed import write_indexed
from hat_cli.evaluation import translate
from hat_cli.evaluation.translate import sentence_batches, to_text
from hat_cli.model.decoding import SearchSettings, beam_search
from hat_cli.model.directory import load_model, save_model
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import TransformerModel, extract_subtransformer

IWSLT = Path(__file__).resolve().parents[2] / "shared" / "data" / "iwslt14-de-en"
TASK = "iwslt14.de-en"
SENTENCES = 24


def evaluate(model, task, data_dir, arch=None, output=None, **options):
    """`hat test`'s path through the library: words resolved (hat_cli.resolve), then evaluate."""
    the_task = resolve.task(task)
    model_dir, label = resolve.model_dir(model)
    return translate.evaluate(model_dir, the_task, resolve.data_dir(data_dir, the_task),
                              arch=resolve.architecture(arch) if arch else None, output=output, label=label, **options)


def _lines(name: str) -> list[str]:
    path = IWSLT / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The first IWSLT'14 test sentences, binarized with the real dictionaries (what `hat data` writes)."""
    if not (IWSLT / "data-bin").exists():
        pytest.skip(f"{IWSLT / 'data-bin'} is missing")
    out = tmp_path_factory.mktemp("iwslt")
    for lang in ("de", "en"):
        dictionary = Dictionary.load(IWSLT / "data-bin" / f"dict.{lang}.txt")
        dictionary.save(out / f"dict.{lang}.txt")
        # Sentence 0 is long; keep a mix of lengths, and one sentence with an out-of-vocabulary word.
        lines = _lines(f"test.{lang}")[:SENTENCES]
        if lang == "en":
            lines[3] = lines[3] + " zzyzxqq"
        write_indexed(out / f"test.de-en.{lang}", [dictionary.encode_line(line) for line in lines], len(dictionary))
        write_indexed(out / f"valid.de-en.{lang}", [dictionary.encode_line(line) for line in _lines(f"valid.{lang}")[:8]], len(dictionary))
    return out


@pytest.fixture(scope="module")
def model_dir(prepared, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    src_dict, tgt_dict = Dictionary.load(prepared / "dict.de.txt"), Dictionary.load(prepared / "dict.en.txt")
    shape = SearchSpace.builtin("demo").shape
    model = TransformerModel.supertransformer(shape, len(src_dict), len(tgt_dict), False).eval()
    with torch.no_grad():
        model.decoder.embed_out[2] *= 3.0  # sentences of different lengths
    out = tmp_path_factory.mktemp("model") / "iwslt-random"
    save_model(model, out, {"task": TASK, "dictionaries": {"de": src_dict.sha256(), "en": tgt_dict.sha256()}})
    return out


def test_references_are_the_bpe_removed_targets_with_escaped_unk(prepared):
    data = load_split(prepared, "test", "de", "en")
    refs = [to_text(data.tgt_dict, data.tgt[i].tolist(), escape_unk=True) for i in range(len(data))]
    originals = [remove_bpe(line, "@@ ") for line in _lines("test.en")[:SENTENCES]]
    assert refs[:3] == originals[:3] and refs[4:] == originals[4:]
    assert refs[3] == originals[3] + " <<unk>>"
    # Hypotheses keep fairseq's plain <unk>.
    assert to_text(data.tgt_dict, [data.tgt_dict.unk(), 2]) == "<unk>"


def test_batches_cover_every_sentence_once(prepared):
    data = load_split(prepared, "test", "de", "en")
    for batches in (sentence_batches(data, 5, None), sentence_batches(data, None, 200)):
        ids = sorted(int(i) for b in batches for i in b)
        assert ids == list(range(SENTENCES))
    assert max(len(b) for b in sentence_batches(data, 5, None)) == 5


def test_evaluate_translates_scores_and_writes_files(prepared, model_dir, tmp_path):
    output = tmp_path / "out" / "hyp.en"
    result = evaluate(str(model_dir), TASK, data_dir=str(prepared), beam=3, max_len_b=12, batch_size=7, output=str(output))
    hyps = output.read_text(encoding="utf-8").splitlines()
    refs = Path(result.references).read_text(encoding="utf-8").splitlines()
    assert len(hyps) == len(refs) == result.sentences == SENTENCES
    assert refs[0] == remove_bpe(_lines("test.en")[0], "@@ ")
    assert result.bleu == pytest.approx(round(tokenized_bleu(hyps, refs).score(), 4))
    assert result.sacrebleu == pytest.approx(round(sacre_bleu(hyps, refs).score, 4))
    assert result.sacrebleu_signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert result.settings["beam"] == 3 and result.settings["lenpen"] == 1.0  # IWSLT's published lenpen
    assert json.loads((tmp_path / "out" / "hyp.en.json").read_text())["bleu"] == result.bleu

    # The file holds the best beam of each sentence in split order, BPE removed.
    data = load_split(prepared, "test", "de", "en")
    model, _ = load_model(model_dir)
    batch = collate(data, list(range(SENTENCES)))
    best = beam_search(model, batch.src_tokens, None, SearchSettings(beam=3, lenpen=1.0, max_len_b=12)).best()
    expected = {int(i): to_text(data.tgt_dict, ids) for i, ids in zip(batch.ids, best)}
    assert hyps == [expected[i] for i in range(SENTENCES)]

    # Token-budget batching and another batch size give the same translations.
    again = evaluate(str(model_dir), TASK, data_dir=str(prepared), beam=3, max_len_b=12, max_tokens=150, output=str(tmp_path / "b.en"))
    assert (tmp_path / "b.en").read_text(encoding="utf-8").splitlines() == hyps
    assert again.bleu == result.bleu


def test_cli_json_and_valid_subset(prepared, model_dir, tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["test", str(model_dir), "--task", TASK, "--data-dir", str(prepared), "--subset", "valid", "--beam", "2",
         "--max-len-b", "6", "--output", str(tmp_path / "v.en"), "--json"],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    for key in ("bleu", "sacrebleu", "sentences", "seconds", "sacrebleu_signature", "hypotheses"):
        assert key in doc
    assert doc["sentences"] == 8 and doc["subset"] == "valid"
    assert len((tmp_path / "v.en").read_text().splitlines()) == 8


def _exit_code(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["test", *args])
    return result.exit_code, " ".join(result.output.split())  # Rich wraps long lines


def test_bad_input_exits_2(prepared, model_dir, tmp_path):
    code, text = _exit_code([str(model_dir), "--task", "nope", "--data-dir", str(prepared)])
    assert code == 2 and "Unknown task" in text
    code, text = _exit_code([str(tmp_path / "missing-model"), "--task", TASK, "--data-dir", str(prepared)])
    assert code == 2 and "neither a model directory nor a published model name" in text
    code, text = _exit_code([str(model_dir), "--task", "wmt14.en-de", "--data-dir", str(prepared)])
    assert code == 2 and "trained for task" in text
    code, text = _exit_code([str(model_dir), "--task", TASK, "--data-dir", str(tmp_path / "nodata")])
    assert code == 2
    code, text = _exit_code([str(model_dir), "--task", TASK, "--data-dir", str(prepared), "--subset", "train"])
    assert code == 2


def test_dictionary_mismatches_are_refused(prepared, model_dir, tmp_path):
    # Same size, different symbols: the recorded sha256 catches it.
    other = tmp_path / "other"
    other.mkdir()
    for name in prepared.iterdir():
        (other / name.name).write_bytes(name.read_bytes())
    lines = (other / "dict.en.txt").read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (other / "dict.en.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(HatError, match="en dictionary of the data differs"):
        evaluate(str(model_dir), TASK, data_dir=str(other), beam=2, max_len_b=4, output=str(tmp_path / "x"))
    # A model without recorded hashes (e.g. converted) still needs matching vocabulary sizes.
    torch.manual_seed(1)
    small = TransformerModel.supertransformer(SearchSpace.builtin("demo").shape, 100, 100, False)
    save_model(small, tmp_path / "small", {"task": TASK, "dictionaries": {}})
    with pytest.raises(HatError, match="source dictionary has 8848 symbols but model"):
        evaluate(str(tmp_path / "small"), TASK, data_dir=str(prepared), beam=2, max_len_b=4, output=str(tmp_path / "y"))


@pytest.mark.slow
def test_arch_selects_a_subtransformer_of_a_supertransformer(prepared, model_dir, tmp_path):
    import random

    config = SearchSpace.builtin("demo").sample(random.Random(5))
    config.save_yaml(tmp_path / "arch.yml")
    result = evaluate(str(model_dir), TASK, data_dir=str(prepared), beam=2, max_len_b=6, arch=str(tmp_path / "arch.yml"),
                      output=str(tmp_path / "sub.en"))
    assert result.settings["arch"] == config.to_dict()
    model, _ = load_model(model_dir)
    compact = extract_subtransformer(model, config)
    save_model(compact, tmp_path / "compact", {"task": TASK, "dictionaries": {}})
    evaluate(str(tmp_path / "compact"), TASK, data_dir=str(prepared), beam=2, max_len_b=6, output=str(tmp_path / "compact.en"))
    assert (tmp_path / "sub.en").read_text() == (tmp_path / "compact.en").read_text()
