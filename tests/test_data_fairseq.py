"""Interoperability with fairseq itself (the optional extra `fairseq-fixed`): our dictionaries and
binaries load in fairseq's classes with identical tokens, fairseq's load in ours, and fairseq's own
batching and collation agree with ours. Runs on real IWSLT'14 text and dictionaries."""

from __future__ import annotations

import numpy as np
import pytest

fairseq = pytest.importorskip(
    "fairseq", reason="fairseq is not installed (optional extra: pip install --no-build-isolation fairseq-fixed)"
)
torch = pytest.importorskip("torch")

from fairseq.data import Dictionary as FairseqDictionary  # noqa: E402
from fairseq.data import LanguagePairDataset, data_utils, indexed_dataset  # noqa: E402

from hat_cli.data.batching import collate, load_split, token_batches  # noqa: E402
from hat_cli.data.dictionary import Dictionary  # noqa: E402
from hat_cli.data.indexed import IndexedDataset, write_indexed  # noqa: E402
from tests._data_helpers import IWSLT, require  # noqa: E402

N = 1500  # sentences of IWSLT'14 valid used per test (keeps the file fast)


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """IWSLT'14 valid (first N lines) binarized by us with the published dictionaries."""
    out = tmp_path_factory.mktemp("ours")
    for lang in ("de", "en"):
        d = Dictionary.load(require(IWSLT / "data-bin" / f"dict.{lang}.txt"))
        d.save(out / f"dict.{lang}.txt")
        lines = (IWSLT / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:N]
        write_indexed(out / f"valid.de-en.{lang}", (d.encode_line(l) for l in lines), len(d))
    return out


def test_dictionaries_agree(tmp_path):
    for lang in ("de", "en"):
        path = require(IWSLT / "data-bin" / f"dict.{lang}.txt")
        theirs, mine = FairseqDictionary.load(str(path)), Dictionary.load(path)
        assert theirs.symbols == mine.symbols and (theirs.pad(), theirs.eos(), theirs.unk(), theirs.bos()) == (1, 2, 3, 0)
        for line in (IWSLT / f"test.{lang}").read_text(encoding="utf-8").splitlines()[:300]:
            assert theirs.encode_line(line, add_if_not_exist=False).tolist() == mine.encode_line(line)
    # Building from counts: same order, same madeupword padding, same file.
    lines = (IWSLT / "valid.en").read_text(encoding="utf-8").splitlines()[:2000]
    theirs = FairseqDictionary()
    for line in lines:
        for word in line.split():
            theirs.add_symbol(word)
    theirs.finalize(padding_factor=8)
    theirs.save(str(tmp_path / "theirs.txt"))
    Dictionary.build(lines).save(tmp_path / "mine.txt")
    assert (tmp_path / "mine.txt").read_bytes() == (tmp_path / "theirs.txt").read_bytes()


def test_our_binaries_load_in_fairseq(ours):
    for lang in ("de", "en"):
        theirs = indexed_dataset.MMapIndexedDataset(str(ours / f"valid.de-en.{lang}"))
        mine = IndexedDataset(ours / f"valid.de-en.{lang}")
        assert len(theirs) == len(mine) == N and np.array_equal(theirs.sizes, mine.sizes)
        for i in range(N):
            assert theirs[i].tolist() == mine[i].tolist()


def test_fairseq_binaries_load_in_ours_byte_identical(ours, tmp_path):
    for lang in ("de", "en"):
        d = FairseqDictionary.load(str(ours / f"dict.{lang}.txt"))
        prefix = str(tmp_path / f"valid.de-en.{lang}")
        builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(d))
        for line in (IWSLT / f"valid.{lang}").read_text(encoding="utf-8").splitlines()[:N]:
            builder.add_item(d.encode_line(line, add_if_not_exist=False))
        builder.finalize(prefix + ".idx")
        mine = IndexedDataset(prefix)
        assert [mine[i].tolist() for i in range(N)] == [IndexedDataset(ours / f"valid.de-en.{lang}")[i].tolist() for i in range(N)]
        for ext in ("bin", "idx"):
            assert (tmp_path / f"valid.de-en.{lang}.{ext}").read_bytes() == (ours / f"valid.de-en.{lang}.{ext}").read_bytes()


def test_fairseq_legacy_indexed_format_loads_in_ours(tmp_path):
    # Older fairseq data directories (--dataset-impl lazy/cached, magic TNTIDX) must load too.
    d = FairseqDictionary.load(str(require(IWSLT / "data-bin" / "dict.en.txt")))
    lines = (IWSLT / "test.en").read_text(encoding="utf-8").splitlines()[:200]
    prefix = str(tmp_path / "test.de-en.en")
    builder = indexed_dataset.make_builder(prefix + ".bin", impl="lazy", vocab_size=len(d))
    for line in lines:
        builder.add_item(d.encode_line(line, add_if_not_exist=False))
    builder.finalize(prefix + ".idx")
    mine = IndexedDataset(prefix)
    assert [mine[i].tolist() for i in range(len(lines))] == [d.encode_line(l, add_if_not_exist=False).tolist() for l in lines]


def test_batches_and_collation_match_fairseq(ours):
    data = load_split(ours, "valid", "de", "en")
    src = indexed_dataset.MMapIndexedDataset(str(ours / "valid.de-en.de"))
    tgt = indexed_dataset.MMapIndexedDataset(str(ours / "valid.de-en.en"))
    pair = LanguagePairDataset(src, src.sizes, data.src_dict, tgt, tgt.sizes, data.tgt_dict,
                               left_pad_source=True, left_pad_target=False, shuffle=False)
    fairseq_batches = data_utils.batch_by_size(pair.ordered_indices(), pair.num_tokens, max_tokens=2048,
                                               required_batch_size_multiple=8)
    mine = token_batches(data.src_sizes, data.tgt_sizes, 2048)
    theirs = [[int(i) for i in b] for b in fairseq_batches]
    # Identical batches, except that fairseq 0.12 (unlike HAT's fairseq 0.8) rounds the last batch down
    # to a multiple of 8 and drops the rest; we keep every sentence (evaluation must see all of them).
    assert theirs[:-1] == [b.tolist() for b in mine[:-1]]
    assert theirs[-1] == mine[-1].tolist()[: len(theirs[-1])] and len(theirs[-1]) % 8 == 0
    for indices in mine[:5] + mine[-5:]:
        sample = pair.collater([pair[int(i)] for i in indices])
        batch = collate(data, indices)
        order = {int(i): row for row, i in enumerate(batch.ids)}
        for row, i in enumerate(sample["id"].tolist()):
            r = order[i]
            assert sample["net_input"]["src_tokens"][row].tolist() == batch.src_tokens[r].tolist()
            assert sample["net_input"]["prev_output_tokens"][row].tolist() == batch.prev_output_tokens[r].tolist()
            assert sample["target"][row].tolist() == batch.target[r].tolist()
        assert sample["ntokens"] == batch.ntokens
