"""Token-bucketed batches and collation on real binarized IWSLT'14 valid data."""

from __future__ import annotations

import numpy as np
import pytest

from hat_cli.data.batching import collate, load_split, token_batches
from hat_cli.data.dictionary import Dictionary
from hat_cli.data.indexed import write_indexed
from hat_cli.core.errors import HatError
from tests._data_helpers import IWSLT, require


@pytest.fixture(scope="module")
def iwslt_valid(tmp_path_factory):
    out = tmp_path_factory.mktemp("iwslt")
    for lang in ("de", "en"):
        d = Dictionary.load(require(IWSLT / "data-bin" / f"dict.{lang}.txt"))
        d.save(out / f"dict.{lang}.txt")
        lines = (IWSLT / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:2000]
        write_indexed(out / f"valid.de-en.{lang}", (d.encode_line(l) for l in lines), len(d))
    return load_split(out, "valid", "de", "en")


def test_batches_cover_every_sentence_once_within_budget(iwslt_valid):
    data = iwslt_valid
    batches = token_batches(data.src_sizes, data.tgt_sizes, max_tokens=1024, shuffle=True, seed=3, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(data)))
    longest = np.maximum(data.src_sizes, data.tgt_sizes)
    for b in batches:
        assert longest[b].max() * len(b) <= 1024
    # Most batches are multiples of 8 sentences (fairseq's rounding), and are length-homogeneous.
    assert sum(len(b) % 8 == 0 for b in batches) >= len(batches) - 2
    # fairseq sorts by source length (then target): source lengths within a batch are nearly equal.
    src = data.src_sizes
    assert np.mean([src[b].max() - src[b].min() for b in batches]) < 2


def test_shuffle_is_deterministic_in_seed_and_epoch(iwslt_valid):
    s, t = iwslt_valid.src_sizes, iwslt_valid.tgt_sizes
    a = token_batches(s, t, 2048, shuffle=True, seed=1, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, token_batches(s, t, 2048, shuffle=True, seed=1, epoch=1)))
    b = token_batches(s, t, 2048, shuffle=True, seed=1, epoch=2)
    assert [x.tolist() for x in a] != [x.tolist() for x in b]
    plain = token_batches(s, t, 2048)
    assert np.maximum(s, t)[plain[0]].max() <= np.maximum(s, t)[plain[-1]].max()


def test_collate_pads_like_fairseq(iwslt_valid):
    data = iwslt_valid
    batch = collate(data, [0, 1, 2, 3])
    pad, eos = data.src_dict.pad(), data.tgt_dict.eos()
    lengths = batch.src_lengths.tolist()
    assert lengths == sorted(lengths, reverse=True)
    for row, i in enumerate(batch.ids.tolist()):
        src = data.src[i]
        assert batch.src_tokens[row, -len(src):].tolist() == src.tolist()  # left-padded
        assert (batch.src_tokens[row, : batch.src_tokens.shape[1] - len(src)] == pad).all()
        tgt = data.tgt[i]
        assert batch.target[row, : len(tgt)].tolist() == tgt.tolist()  # right-padded
        assert batch.prev_output_tokens[row, : len(tgt)].tolist() == [eos] + tgt[:-1].tolist()
    assert batch.ntokens == int((batch.target != pad).sum()) == int(data.tgt_sizes[[0, 1, 2, 3]].sum())
    # The first valid sentence reads back as the BPE'd text.
    first = (IWSLT / "valid.de").read_text(encoding="utf-8").splitlines()[0]
    assert data.src_dict.string(data.src[0]) == first


def test_oversized_sentence_is_a_clear_error():
    with pytest.raises(HatError, match="max_tokens"):
        token_batches(np.array([3, 50]), np.array([3, 4]), max_tokens=20)
    assert token_batches(np.array([3, 50]), np.array([3, 4]), max_tokens=20, max_positions=20)[0].tolist() == [0]


def test_missing_split_names_the_files(tmp_path):
    with pytest.raises(HatError, match="valid.de-en.de"):
        load_split(tmp_path, "valid", "de", "en")
