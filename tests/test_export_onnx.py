"""`hat export` against the PyTorch model, on real Multi30k sentences, run by ONNX Runtime.

Log-probabilities of the reference translations (teacher forcing, one incremental ONNX step at a time)
must match PyTorch's within 1e-4 for the largest, the smallest and a mixed SubTransformer of the Multi30k
space; and beam search driven through the ONNX graphs must give exactly `hat test`'s hypotheses on more
than 100 real test sentences, with a model trained here for a few seconds so that its choices are real.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hat_cli.cli.app import app
from hat_cli.model.space import SearchSpace
from hat_cli.model.transformer import DecoderCache, TransformerModel

pytest.importorskip("onnxruntime", reason="ONNX Runtime is the extra hat-cli[onnx] (.ci/run installs it)")

from hat_cli.export.onnx import export_onnx, read_export_config  # noqa: E402
from hat_cli.export.runtime import OnnxTranslator  # noqa: E402

import test_fitness as fixtures  # the Multi30k data-dir builder  # noqa: E402

MULTI30K_TOK = fixtures.MULTI30K_TOK
TEST_SENTENCES = 120
ARCH = """\
encoder-embed-dim-subtransformer: 64
decoder-embed-dim-subtransformer: 64
encoder-layer-num-subtransformer: 3
decoder-layer-num-subtransformer: 2
encoder-ffn-embed-dim-all-subtransformer: [128, 128, 128]
decoder-ffn-embed-dim-all-subtransformer: [128, 128]
encoder-self-attention-heads-all-subtransformer: [4, 4, 4]
decoder-self-attention-heads-all-subtransformer: [4, 2]
decoder-ende-attention-heads-all-subtransformer: [4, 4]
decoder-arbitrary-ende-attn-all-subtransformer: [1, -1]
"""


@pytest.fixture(scope="module")
def valid_data(tmp_path_factory):
    from hat_cli.data.batching import load_split

    return load_split(fixtures.build_valid_dir(tmp_path_factory.mktemp("m30k-valid"), sentences=40), "valid", "de", "en")


def _log_probs_pytorch(model, config, src, prev):
    with torch.inference_mode():
        return torch.log_softmax(model.eval()(src, prev, config), dim=-1)


def _log_probs_onnx(directory, src, prev):
    runtime = OnnxTranslator(directory)
    enc, cache, steps = runtime.encode(src), DecoderCache(), []
    for t in range(1, prev.size(1) + 1):
        steps.append(torch.log_softmax(runtime.decode(prev[:, :t], enc, cache=cache), dim=-1))
    return torch.cat(steps, dim=1)


@pytest.mark.parametrize("which", ["largest", "smallest", "mixed"])
def test_log_probs_match_pytorch_on_real_sentences(which, valid_data, tmp_path):
    from hat_cli.data.batching import collate

    space = SearchSpace.builtin("multi30k")
    config = {"largest": space.largest(), "smallest": space.smallest(-1), "mixed": space.sample(random.Random(11))}[which]
    vocab = len(valid_data.tgt_dict)
    torch.manual_seed(3)
    supernet = TransformerModel.supertransformer(space.shape, vocab, vocab, True).eval()
    export_onnx(supernet, config, tmp_path)
    batch = collate(valid_data, list(range(16)))  # 16 real sentences, left-padded sources, padded targets
    src, prev, target = batch.src_tokens, batch.prev_output_tokens, batch.target
    assert bool(src.eq(1).any()), "the batch must exercise padding"
    # Padded target positions are not compared: fairseq's right-padded prefixes put pads inside the cache.
    keep = target.ne(1)
    expected = _log_probs_pytorch(supernet, config, src, prev)[keep]
    got = _log_probs_onnx(tmp_path, src, prev)[keep]
    assert got.shape == expected.shape and got.shape[0] > 100
    assert float((got - expected).abs().max()) < 1e-4
    meta = read_export_config(tmp_path)
    assert meta["arch"] == config.to_dict() and meta["tgt_vocab_size"] == vocab


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data_dir, model_dir): Multi30k sentences under the demo task's names, a small model trained on them."""
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.indexed import write_indexed

    if not MULTI30K_TOK.is_dir():
        pytest.skip(f"real data {MULTI30K_TOK} is not available on this machine")
    root = tmp_path_factory.mktemp("m30k-trained")
    data = root / "data"
    data.mkdir()

    def read(split, lang, n):
        return gzip.decompress((MULTI30K_TOK / f"{split}.lc.norm.tok.{lang}.gz").read_bytes()).decode().splitlines()[:n]

    splits = {"train": ("train", 3000), "valid": ("val", 60), "test": ("test_2016_flickr", TEST_SENTENCES)}
    texts = {name: (read(f, "de", n), read(f, "en", n)) for name, (f, n) in splits.items()}
    dictionary = Dictionary.build(texts["train"][0] + texts["train"][1], nwords=400)  # a small vocabulary learns fast
    for lang in ("src", "tgt"):
        dictionary.save(data / f"dict.{lang}.txt")
    for name, (de, en) in texts.items():
        for lang, lines in (("src", de), ("tgt", en)):
            write_indexed(data / f"{name}.src-tgt.{lang}", [dictionary.encode_line(line) for line in lines], len(dictionary))
    arch = root / "arch.yml"
    arch.write_text(ARCH)
    result = CliRunner().invoke(app, [
        "train-sub", "--task", "demo", "--arch", str(arch), "--data-dir", str(data), "--save-dir", str(root / "run"),
        "--max-updates", "300", "--max-tokens", "800", "--validate-every", "300", "--save-interval", "300",
        "--lr", "0.005", "--warmup-updates", "30", "--final-model", "last", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    return data, Path(json.loads(result.stdout)["checkpoint"])


@pytest.mark.slow
def test_beam_search_through_onnx_runtime_equals_hat_test(trained, tmp_path):
    from hat_cli.data.batching import load_split
    from hat_cli.evaluation.translate import sentence_batches, to_text, translate
    from hat_cli.model.decoding import SearchSettings

    data_dir, model_dir = trained
    runner = CliRunner()
    hyp = tmp_path / "hat-test.hyp"
    tested = runner.invoke(app, ["test", str(model_dir), "--task", "demo", "--data-dir", str(data_dir), "--device", "cpu",
                                 "--max-len-b", "40", "-o", str(hyp), "--json"])
    assert tested.exit_code == 0, tested.output
    exported = runner.invoke(app, ["export", str(model_dir), "--task", "demo", "-o", str(tmp_path / "onnx"), "--json"])
    assert exported.exit_code == 0, exported.output
    doc = json.loads(exported.stdout)
    assert doc["weights"] == "trained" and doc["max_abs_diff"] < 1e-4
    assert sorted(Path(f).name for f in doc["files"]) == ["config.json", "decoder.onnx", "encoder.onnx"]

    data = load_split(data_dir, "test", "src", "tgt")
    settings = SearchSettings(beam=4, lenpen=1.0, max_len_b=40)  # the demo task's beam and lenpen, as `hat test` used
    ids, _ = translate(OnnxTranslator(tmp_path / "onnx"), data, sentence_batches(data, 128, None), settings=settings)
    onnx_lines = [to_text(data.tgt_dict, sentence) for sentence in ids]
    hat_lines = hyp.read_text().splitlines()
    assert len(hat_lines) == len(onnx_lines) == TEST_SENTENCES
    assert onnx_lines == hat_lines
    assert len(set(hat_lines)) >= 20, "the model must translate sentences differently for the comparison to mean something"


def test_export_refuses_bad_input_with_one_sentence(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["export", str(tmp_path / "nope"), "--task", "demo", "-o", str(tmp_path / "out")])
    assert missing.exit_code == 2 and "neither a model directory nor a published model name" in missing.output
    arch = tmp_path / "big.yml"
    arch.write_text(ARCH.replace("encoder-embed-dim-subtransformer: 64", "encoder-embed-dim-subtransformer: 4096"))
    too_big = runner.invoke(app, ["export", str(arch), "--task", "demo", "-o", str(tmp_path / "out")])
    assert too_big.exit_code == 2 and "does not fit" in too_big.output
    assert not (tmp_path / "out").exists()


def test_an_architecture_exports_random_weights_with_dynamic_axes(tmp_path):
    import numpy as np

    arch = tmp_path / "a.yml"
    arch.write_text(ARCH)
    result = CliRunner().invoke(app, ["export", str(arch), "--task", "demo", "-o", str(tmp_path / "onnx"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["weights"] == "random"
    runtime = OnnxTranslator(tmp_path / "onnx")
    # batch x beam rows and source length other than those traced with
    for rows, length in ((1, 5), (7, 31)):
        src = torch.full((rows, length), 7)
        src[:, 0] = 2
        enc = runtime.encode(src)
        cache = DecoderCache()
        for t in range(1, 4):
            logits = runtime.decode(torch.full((rows, t), 7), enc, cache=cache)
            assert logits.shape == (rows, 1, runtime.tgt_vocab_size) and np.isfinite(logits.numpy()).all()
        assert cache.layer(0)["self_k"].shape[2] == 3


def test_the_onnxruntime_meter_times_the_protocol_on_exported_graphs():
    """`--hw onnxruntime`: each placement a fresh pair of sessions over the export, every kept run positive and
    finite, warm-up and trimming as the protocol says."""
    import math

    from hat_cli import resolve
    from hat_cli.latency.meters import LatencyMeter

    task = resolve.task("demo")
    meter = LatencyMeter(resolve.backend("onnxruntime"), task, resolve.timed_shape(task),
                         overrides={"warmup": 1, "repetitions": 5, "instances": 2})
    try:
        timings = meter.timings(SearchSpace.builtin(task.latency_space).smallest())
    finally:
        meter.close()
    kept_per_placement = 5 - 0 - 1  # floor(0.1 * 5) fastest and max(1, floor(0.1 * 5)) slowest dropped
    assert len(timings.encoder_ms) == len(timings.decoder_ms) == 2 * kept_per_placement
    assert all(math.isfinite(v) and v > 0 for v in timings.encoder_ms + timings.decoder_ms)
    assert meter.describe_device().startswith("cpu") and "onnxruntime" in meter.describe_device()
