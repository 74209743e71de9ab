"""Scoring candidates (hat_cli/search/fitness.py) on real Multi30k validation sentences with a small SuperTransformer.

The reference is computed independently: one sentence at a time, unpadded, with torch's own
label-smoothed cross entropy (which is HAT's formula: (1-eps)*NLL + eps/V * sum(-log p)).
"""

from __future__ import annotations

import gzip
import math
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hat_cli.core.errors import HatError
from hat_cli.model.directory import check_data_matches as check_dictionaries
from hat_cli.model.space import SearchSpace
from hat_cli.search.fitness import ValidationLoss, prepare_validation

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K_TOK = SHARED_DATA / "multi30k" / "tok"
VALID_SENTENCES = 120


def build_valid_dir(root: Path, sentences: int = VALID_SENTENCES) -> Path:
    """A fairseq-layout data dir holding the first Multi30k val sentences (joint dictionary, de->en)."""
    from hat_cli.data.dictionary import Dictionary
    from hat_cli.data.indexed import write_indexed

    src_file, tgt_file = MULTI30K_TOK / "val.lc.norm.tok.de.gz", MULTI30K_TOK / "val.lc.norm.tok.en.gz"
    if not src_file.exists() or not tgt_file.exists():
        pytest.skip(f"real data {MULTI30K_TOK} is not available on this machine")
    src = gzip.decompress(src_file.read_bytes()).decode("utf-8").splitlines()[:sentences]
    tgt = gzip.decompress(tgt_file.read_bytes()).decode("utf-8").splitlines()[:sentences]
    dictionary = Dictionary.build(src + tgt, nwords=600)  # a capped vocabulary keeps some <unk>s, like real data
    root.mkdir(parents=True, exist_ok=True)
    for lang, lines in (("de", src), ("en", tgt)):
        dictionary.save(root / f"dict.{lang}.txt")
        write_indexed(root / f"valid.de-en.{lang}", [dictionary.encode_line(line) for line in lines], len(dictionary))
    return root


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory):
    return build_valid_dir(tmp_path_factory.mktemp("multi30k-valid"))


@pytest.fixture(scope="module")
def data(valid_dir):
    from hat_cli.data.batching import load_split

    return load_split(valid_dir, "valid", "de", "en")


@pytest.fixture(scope="module")
def demo_space():
    return SearchSpace.builtin("demo")


def make_supernet(space: SearchSpace, vocab: int, seed: int = 0):
    from hat_cli.model.transformer import TransformerModel

    torch.manual_seed(seed)
    return TransformerModel.supertransformer(space.shape, vocab, vocab, True).eval()


def reference_loss(model, data, config, eps: float = 0.1) -> float:
    """Sentence by sentence, no padding at all, torch's label smoothing."""
    total, tokens = 0.0, 0
    eos = data.tgt_dict.eos()
    with torch.no_grad():
        for i in range(len(data)):
            src = torch.from_numpy(data.src[i].astype("int64"))[None]
            tgt = torch.from_numpy(data.tgt[i].astype("int64"))
            prev = torch.cat([torch.tensor([eos]), tgt[:-1]])[None]
            logits = model(src, prev, config)[0].float()
            total += F.cross_entropy(logits, tgt, label_smoothing=eps, reduction="sum").item()
            tokens += len(tgt)
    return total / tokens / math.log(2)


def test_loss_equals_an_unbatched_reference(data, demo_space):
    model = make_supernet(demo_space, len(data.tgt_dict))
    valid = prepare_validation(data, max_tokens=512, device="cpu")
    assert valid.sentences == len(data) == VALID_SENTENCES
    assert valid.target_tokens == int(data.tgt_sizes.sum())
    assert len(valid.batches) > 1  # padding and batching are really exercised
    fitness = ValidationLoss(model, valid, precision="fp32")
    rng = random.Random(0)
    configs = [demo_space.sample(rng), demo_space.largest(), demo_space.smallest(-1)]
    losses = fitness(configs)
    for config, loss in zip(configs, losses):
        assert loss == pytest.approx(reference_loss(model, data, config), rel=1e-5)
    # an untrained model sits near log2(V) bits per token; different architectures score differently
    assert all(abs(loss - math.log2(len(data.tgt_dict))) < 3 for loss in losses)
    assert len(set(round(v, 6) for v in losses)) == len(losses)
    assert fitness.evaluations == len(configs)


def test_batch_size_does_not_change_the_loss(data, demo_space):
    model = make_supernet(demo_space, len(data.tgt_dict), seed=1)
    config = demo_space.sample(random.Random(3))
    small = ValidationLoss(model, prepare_validation(data, 128, "cpu"), "fp32")([config])[0]
    large = ValidationLoss(model, prepare_validation(data, 4096, "cpu"), "fp32")([config])[0]
    assert small == pytest.approx(large, rel=1e-6)


def test_valid_subset_keeps_the_first_sentences(data, demo_space):
    valid = prepare_validation(data, 1024, "cpu", subset=10)
    assert valid.sentences == 10
    assert valid.target_tokens == int(data.tgt_sizes[:10].sum())
    ids = sorted(int(i) for b in valid.batches for i in b.ids)
    assert ids == list(range(10))
    with pytest.raises(HatError, match="--valid-subset"):
        prepare_validation(data, 1024, "cpu", subset=0)


def test_bad_precision_is_a_sentence(data, demo_space):
    model = make_supernet(demo_space, len(data.tgt_dict))
    with pytest.raises(HatError, match="--precision"):
        ValidationLoss(model, prepare_validation(data, 1024, "cpu", subset=4), precision="fp16")


def test_pure_bf16_and_compiled_norms_score_close_to_the_exact_loss(data, demo_space):
    """The search's GPU options on the CPU: bf16 without autocast (residual stream in bf16 too) and the compiled
    residual norms each score within bf16 rounding of the exact fp32 loss; pure bf16 needs bf16."""
    import copy

    model = make_supernet(demo_space, len(data.tgt_dict), seed=4)
    valid = prepare_validation(data, 1024, "cpu", subset=40)
    configs = [demo_space.sample(random.Random(5)), demo_space.largest()]
    exact = ValidationLoss(copy.deepcopy(model), valid, "fp32")(configs)
    shared = copy.deepcopy(model)  # one model, two scorers, as the search's benches share it
    pure = ValidationLoss(shared, valid, "bf16", pure_bf16=True, compiled_norms=False)
    compiled = ValidationLoss(shared, valid, "bf16", compiled_norms=True)
    assert pure(configs) == pytest.approx(exact, rel=1e-2)
    assert not shared.compiled_norms  # each scorer sets its own choice when it scores
    assert compiled(configs) == pytest.approx(exact, rel=1e-2)
    assert shared.compiled_norms
    with pytest.raises(HatError, match="bf16"):
        ValidationLoss(copy.deepcopy(model), valid, "fp32", pure_bf16=True)


@pytest.mark.slow
def test_scoring_compiled_once_per_width_gives_the_exact_losses(data, demo_space):
    """The search's GPU default compiles the loss and the residual norms with static widths and dynamic batch
    and time (hat_cli/core/compiled.py). In fp32 on the CPU it must give the eager scorer's losses, over batches
    of several shapes and candidates of both widths, and compile per width, not per batch shape."""
    import copy

    from torch._dynamo.utils import counters

    model = make_supernet(demo_space, len(data.tgt_dict), seed=6)
    valid = prepare_validation(data, 512, "cpu")
    shapes = {tuple(b.src_tokens.shape) for b in valid.batches} | {tuple(b.target.shape) for b in valid.batches}
    assert len(shapes) > 4  # batch and time really vary
    rng = random.Random(8)
    configs = [demo_space.sample(rng) for _ in range(4)] + [demo_space.largest(), demo_space.smallest(-1)]
    assert {c.encoder_embed_dim for c in configs} == {32, 64}
    exact = ValidationLoss(copy.deepcopy(model), valid, "fp32")(configs)
    graphs_before = counters["stats"]["unique_graphs"]
    static = ValidationLoss(copy.deepcopy(model), valid, "fp32", fused_loss=True, compiled_norms=True,
                            static_widths=True)
    assert static(configs) == pytest.approx(exact, rel=1e-5)
    # eval without dropout: one norm graph per embedding width and one loss graph, whatever the batch shapes
    # (compiled for all shapes it would be 2, per batch shape 15)
    assert counters["stats"]["unique_graphs"] - graphs_before == 3
    assert static.loss_function.static_widths
    assert static.compile_warning() is None


def test_dictionary_mismatch_is_refused(data):
    good = {"dictionaries": {"de": data.src_dict.sha256(), "en": data.tgt_dict.sha256()}}
    check_dictionaries(good, data, "supernet")
    check_dictionaries({}, data, "supernet")  # nothing recorded: nothing to check
    with pytest.raises(HatError, match="dictionary"):
        check_dictionaries({"dictionaries": {"de": "0" * 64}}, data, "supernet")


def test_search_with_real_fitness_is_reproducible(data, demo_space):
    from hat_cli.search.evolution import EvolutionSettings, evolutionary_search

    model = make_supernet(demo_space, len(data.tgt_dict), seed=2)
    valid = prepare_validation(data, 1024, "cpu", subset=40)

    def predict(configs):  # a stand-in device: latency grows with every feature
        return [sum(f * w for f, w in zip(c.features(), (0.02, 1, 0.004, 0.2, 0.03, 4, 0.01, 0.3, 0.3, 1))) for c in configs]

    settings = EvolutionSettings(population=8, parents=3, mutations=3, crossovers=2, iterations=3, seed=11)
    results = [evolutionary_search(demo_space, ValidationLoss(model, valid, "fp32"), predict, 25.0, settings) for _ in range(2)]
    assert results[0].best == results[1].best
    assert results[0].best_loss == results[1].best_loss
    assert predict([results[0].best])[0] <= 25.0


def test_bf16_mode_stays_close_to_fp32(data, demo_space):
    import copy

    model = make_supernet(demo_space, len(data.tgt_dict), seed=4)
    valid = prepare_validation(data, 1024, "cpu", subset=30)
    configs = [demo_space.largest(), demo_space.smallest(2)]
    exact = ValidationLoss(copy.deepcopy(model), valid, "fp32")(configs)
    fast = ValidationLoss(model, valid, "bf16")
    assert next(fast.model.parameters()).dtype == torch.bfloat16  # weights cast once, not per batch
    approx = fast(configs)
    for a, b in zip(exact, approx):
        assert abs(a - b) < 5e-3  # bits per token; measured ~7e-4 here
