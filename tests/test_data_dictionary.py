"""Dictionary: fairseq's file format, ids, building order, padding, encoding and decoding."""

from __future__ import annotations

from collections import Counter

from hat_cli.data.dictionary import Dictionary, remove_bpe
from tests._data_helpers import IWSLT, require


def test_special_ids_and_roundtrip(tmp_path):
    d = Dictionary.from_counts(Counter({"b": 3, "a": 3, "c": 5, "d": 1}))
    assert d.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    # Most frequent first, ties alphabetical, then madeupword padding to a multiple of 8.
    assert d.symbols[4:] == ["c", "a", "b", "d"]
    assert len(d) == 8
    d2 = Dictionary.from_counts(Counter({"x": 2}))
    assert d2.symbols[5:] == ["madeupword0000", "madeupword0001", "madeupword0002"]
    path = tmp_path / "dict.x.txt"
    d2.save(path)
    assert path.read_text() == "x 2\nmadeupword0000 0\nmadeupword0001 0\nmadeupword0002 0\n"
    loaded = Dictionary.load(path)
    assert loaded == d2 and loaded.sha256() == d2.sha256()


def test_threshold_and_nwords():
    counts = Counter({f"w{i}": 10 - i for i in range(10)})
    assert len(Dictionary.from_counts(counts, nwords=8, padding_factor=1)) == 8
    assert Dictionary.from_counts(counts, threshold=8, padding_factor=1).symbols[4:] == ["w0", "w1", "w2"]


def test_encode_and_string_with_bpe():
    d = Dictionary.build(["das ist ein hau@@ s .", "ein hau@@ s"])
    ids = d.encode_line("das ist ein hau@@ s ! \n")
    assert ids[-1] == d.eos() and ids[-2] == d.unk()
    assert d.string(ids) == "das ist ein hau@@ s <unk>"
    assert d.string(ids + [d.pad(), d.pad()], bpe_symbol="@@ ") == "das ist ein haus <unk>"
    assert remove_bpe("a@@ b@@", "@@ ") == "ab"  # a dangling marker goes too (fairseq)


def test_published_iwslt_dictionaries_load_and_resave_identically(tmp_path):
    for lang, size in (("de", 8848), ("en", 6632)):
        path = require(IWSLT / "data-bin" / f"dict.{lang}.txt")
        d = Dictionary.load(path)
        assert len(d) == size and len(d) % 8 == 0
        d.save(tmp_path / "copy.txt")
        assert (tmp_path / "copy.txt").read_bytes() == path.read_bytes()


def test_rebuilding_published_dictionary_from_its_counts_gives_same_order():
    # fairseq's finalize order (count desc, ties by symbol) reproduces the published file exactly.
    path = require(IWSLT / "data-bin" / "dict.de.txt")
    published = Dictionary.load(path)
    counts = Counter({s: c for s, c in zip(published.symbols[4:], published.count[4:]) if not s.startswith("madeupword")})
    rebuilt = Dictionary.from_counts(counts)
    assert rebuilt.symbols == published.symbols
