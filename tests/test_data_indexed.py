"""The mmap .bin/.idx format: exact bytes, dtype choice, and the published IWSLT train index."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from hat_cli.data.indexed import IndexedDataset, read_index, write_indexed
from hat_cli.core.errors import HatError
from tests._data_helpers import IWSLT, gunzip_to, require


def test_exact_bytes_of_a_small_dataset(tmp_path):
    prefix = tmp_path / "train.a-b.a"
    write_indexed(prefix, [[5, 6, 2], [7, 2]], vocab_size=100)
    idx = (tmp_path / "train.a-b.a.idx").read_bytes()
    expected = (b"MMIDIDX\x00\x00" + struct.pack("<QBQ", 1, 8, 2) + np.array([3, 2], np.int32).tobytes()
                + np.array([0, 6], np.int64).tobytes())
    assert idx == expected
    assert (tmp_path / "train.a-b.a.bin").read_bytes() == np.array([5, 6, 2, 7, 2], np.uint16).tobytes()
    ds = IndexedDataset(prefix)
    assert len(ds) == 2 and ds.sizes.tolist() == [3, 2]
    assert ds[1].dtype == np.int64 and ds[1].tolist() == [7, 2] and ds[-1].tolist() == [7, 2]
    assert ds.count(2) == 2 and ds.count(5) == 1 and ds.num_tokens == 5
    assert not list(tmp_path.glob(".*tmp"))


def test_large_vocabulary_uses_int32(tmp_path):
    write_indexed(tmp_path / "x", [[70000, 2]], vocab_size=70001)
    dtype, sizes, _ = read_index(tmp_path / "x.idx")
    assert dtype == np.int32 and IndexedDataset(tmp_path / "x")[0].tolist() == [70000, 2]


def test_failed_write_leaves_nothing(tmp_path):
    def sentences():
        yield [4, 2]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_indexed(tmp_path / "x", sentences(), vocab_size=10)
    assert list(tmp_path.iterdir()) == []


def test_rejects_garbage(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"not an index")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(HatError, match="not a fairseq index"):
        IndexedDataset(tmp_path / "x")


def test_reads_published_fairseq_train_index(tmp_path):
    # fairseq-preprocess wrote this index for IWSLT'14 train: 160239 sentences, 4035591 de tokens (preprocess.log).
    gz = require(IWSLT / "data-bin" / "train.de-en.de.idx.gz")
    dtype, sizes, offsets = read_index(gunzip_to(gz, tmp_path / "train.de-en.de.idx"))
    assert dtype == np.uint16 and len(sizes) == 160239 and int(sizes.sum()) == 4035591
    assert offsets[0] == 0 and np.array_equal(np.diff(offsets), sizes[:-1])
    # Our writer produces a byte-identical index for the same sizes.
    write_indexed(tmp_path / "ours", (np.full(n, 2) for n in sizes), vocab_size=8848)
    assert (tmp_path / "ours.idx").read_bytes() == (tmp_path / "train.de-en.de.idx").read_bytes()
