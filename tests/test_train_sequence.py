"""A fixed seed trains the same SubTransformers on the same batches as before the speed work of issue 16.

The digests were computed with this code and, identically, with 4294b48 (the "before" of issue 16's
measurements in bench/RESULTS.md). A change that alters which architectures or sentences an update sees must
change them on purpose, and say so; a faster loss or kernel never should.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from hat_cli.data.batching import load_split, token_batches
from hat_cli.data.dictionary import Dictionary
from hat_cli.data.indexed import write_indexed
from hat_cli.model.space import SearchSpace
from hat_cli.training.loop import MAX_POSITIONS
from hat_cli.training.sampling import update_architectures
from tests._data_helpers import IWSLT, require


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]


@pytest.mark.parametrize("sampling, digest", [("random", "9d22cd6bc3533247"), ("sandwich", "4af88b506e025000")])
def test_the_first_hundred_updates_train_the_same_architectures(sampling, digest):
    space = SearchSpace.builtin("multi30k")
    drawn = [[c.to_dict() for c in update_architectures(space, sampling, u, 0, 1)] for u in range(100)]
    assert _digest(drawn) == digest


def test_seed_one_gives_the_same_batches_in_the_same_order(tmp_path):
    """Real IWSLT'14 valid sentences (2,000), 4,096-token batches, epochs 1 and 2 as training draws them."""
    for lang in ("de", "en"):
        dictionary = Dictionary.load(require(IWSLT / "data-bin" / f"dict.{lang}.txt"))
        dictionary.save(tmp_path / f"dict.{lang}.txt")
        lines = require(IWSLT / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:2000]
        write_indexed(tmp_path / f"valid.de-en.{lang}", (dictionary.encode_line(line) for line in lines), len(dictionary))
    data = load_split(tmp_path, "valid", "de", "en")
    expected = {1: "23269efef5842037", 2: "0fbf4d4e4098eddc"}
    for epoch, digest in expected.items():
        batches = token_batches(data.src_sizes, data.tgt_sizes, 4096, shuffle=True, seed=1, epoch=epoch,
                                max_positions=MAX_POSITIONS)
        assert len(batches) == 19
        assert _digest([batch.tolist() for batch in batches]) == digest


def test_the_equivalence_bench_compares_means_and_says_whether_the_runs_own_noise_covers_them(monkeypatch):
    """bench/bench_train_equivalence.py's rows, on the twelfth session's H100 runs (old 4294b48, new 86e59b7): one
    seed each fails the BLEU tolerance by where rounding sent it; four seeds' means pass; the SuperTransformer's
    means differ by more than 0.02 bits but well within two standard errors of their runs."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_train_equivalence import compare

    one_seed = compare("BLEU", [40.7336], [40.0243], 0.5)
    assert not one_seed["within"] and "within_noise" not in one_seed
    four_seeds = compare("BLEU", [40.7336, 41.3753, 40.4825, 40.5623], [40.0243, 41.2945, 41.0074, 40.2852], 0.5)
    assert four_seeds["within"] and four_seeds["within_noise"]
    assert four_seeds["difference"] == pytest.approx(-0.1356, abs=1e-4) and four_seeds["two_standard_errors"] == pytest.approx(0.721, abs=1e-3)
    largest = compare("largest", [6.1651, 6.2049, 6.2166], [6.1285, 6.3979], 0.02)
    assert not largest["within"] and largest["within_noise"] and largest["measure"] == "largest (means)"
    assert compare("x", [1.0, 1.0], [2.0, 2.0], 0.5)["within_noise"] is False  # no spread: any difference is real
