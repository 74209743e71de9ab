"""fairseq's binarized datasets: ``.bin`` (token ids back to back) + ``.idx`` (sizes and offsets).

The mmap format (``--dataset-impl mmap``, docs/METHOD.md §9.4) is what we write:
``.idx`` = magic ``MMIDIDX\\x00\\x00``, u64 version 1, u8 dtype code, u64 count, int32 sizes[count],
int64 byte offsets[count]. The older "cached"/"lazy" format (magic ``TNTIDX\\x00\\x00``) is read too,
so any fairseq data directory loads; it stores every id plus one (a Lua-era convention fairseq's
loader undoes with ``fix_lua_indexing``), and so do we.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

from hat_cli.core.files import naming, temporary_sibling
from hat_cli.core.errors import HatError

MMAP_MAGIC = b"MMIDIDX\x00\x00"
LEGACY_MAGIC = b"TNTIDX\x00\x00"
DTYPE_CODES: dict[int, type] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.double,
    8: np.uint16,
    9: np.uint32,
    10: np.uint64,
}
_CODE_OF = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
            np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.uint16): 8, np.dtype(np.uint32): 9,
            np.dtype(np.uint64): 10}


def best_dtype(vocab_size: int) -> np.dtype:
    """fairseq's choice: uint16 when the vocabulary fits comfortably, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


def index_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(prefix)}.idx")


def data_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(prefix)}.bin")


def dataset_exists(prefix: str | os.PathLike) -> bool:
    return index_path(prefix).is_file() and data_path(prefix).is_file()


class IndexedDatasetWriter:
    """Streams sentences into ``prefix.bin``/``prefix.idx``; both appear (atomically) on ``close``."""

    def __init__(self, prefix: str | os.PathLike, vocab_size: int) -> None:
        self.prefix = Path(prefix)
        self.dtype = best_dtype(vocab_size)
        self._tmp_bin = temporary_sibling(data_path(prefix))
        self._bin = open(self._tmp_bin, "wb")
        self._sizes: list[int] = []

    def add(self, ids: Iterable[int] | np.ndarray) -> None:
        array = np.asarray(ids, dtype=self.dtype)
        try:
            self._bin.write(array.tobytes(order="C"))
        except OSError as exc:  # a full disk: name the file being written, not the temporary one
            raise naming(exc, data_path(self.prefix)) from None
        self._sizes.append(int(array.size))

    def close(self) -> None:
        tmp_idx = None
        try:
            self._bin.flush()
            os.fsync(self._bin.fileno())
            self._bin.close()
            sizes = np.asarray(self._sizes, dtype=np.int32)
            pointers = np.zeros(len(sizes), dtype=np.int64)
            if len(sizes) > 1:
                np.cumsum(sizes[:-1].astype(np.int64) * self.dtype.itemsize, out=pointers[1:])
            header = MMAP_MAGIC + struct.pack("<Q", 1) + struct.pack("<B", _CODE_OF[self.dtype]) + struct.pack("<Q", len(sizes))
            tmp_idx = temporary_sibling(index_path(self.prefix))
            try:
                with open(tmp_idx, "wb") as handle:
                    handle.write(header)
                    handle.write(sizes.tobytes(order="C"))
                    handle.write(pointers.tobytes(order="C"))
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise naming(exc, index_path(self.prefix)) from None
            # .bin first: a reader checks for .idx, which only appears once .bin is complete.
            os.replace(self._tmp_bin, data_path(self.prefix))
            os.replace(tmp_idx, index_path(self.prefix))
        except OSError as exc:
            self.abort(tmp_idx)
            if exc.filename is None:
                raise naming(exc, data_path(self.prefix)) from None
            raise
        except BaseException:
            self.abort(tmp_idx)
            raise

    def abort(self, *others) -> None:
        if not self._bin.closed:
            with contextlib.suppress(OSError):  # closing flushes, and the disk may be full
                self._bin.close()
        for tmp in (self._tmp_bin, *others):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def __enter__(self) -> "IndexedDatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_indexed(prefix: str | os.PathLike, sentences: Iterable[Iterable[int]], vocab_size: int) -> None:
    with IndexedDatasetWriter(prefix, vocab_size) as writer:
        for ids in sentences:
            writer.add(ids)


def read_index(path: str | os.PathLike) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """(dtype, sizes, element offsets) of an ``.idx`` file in either fairseq format."""
    dtype, sizes, offsets, _ = _read_index(path)
    return dtype, sizes, offsets


def _read_index(path: str | os.PathLike) -> tuple[np.dtype, np.ndarray, np.ndarray, int]:
    """Also returns the id shift of the stored tokens (1 for the legacy format, else 0)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HatError(f"Index file {path} does not exist.") from None
    if raw[:9] == MMAP_MAGIC:
        if len(raw) < 26:
            raise HatError(f"Index file {path} is truncated.")
        (version,) = struct.unpack_from("<Q", raw, 9)
        code = raw[17]
        (count,) = struct.unpack_from("<Q", raw, 18)
        if version != 1 or code not in DTYPE_CODES:
            raise HatError(f"Index file {path} has an unsupported version ({version}) or dtype code ({code}).")
        dtype = np.dtype(DTYPE_CODES[code])
        if len(raw) < 26 + count * 12:
            raise HatError(f"Index file {path} is truncated.")
        sizes = np.frombuffer(raw, dtype=np.int32, count=count, offset=26).astype(np.int64)
        pointers = np.frombuffer(raw, dtype=np.int64, count=count, offset=26 + 4 * count)
        return dtype, sizes, pointers // dtype.itemsize, 0
    if raw[:8] == LEGACY_MAGIC:
        try:
            version, code, _element_size, count, nsizes = struct.unpack_from("<QQQQQ", raw, 8)
            if code not in DTYPE_CODES or len(raw) < 48 + 8 * (2 * (count + 1) + nsizes):
                raise ValueError("header and length disagree")
            dtype = np.dtype(DTYPE_CODES[code])
            offset = 48
            dim_offsets = np.frombuffer(raw, dtype=np.int64, count=count + 1, offset=offset)
            offset += 8 * (count + 1)
            data_offsets = np.frombuffer(raw, dtype=np.int64, count=count + 1, offset=offset)
            offset += 8 * (count + 1)
            all_sizes = np.frombuffer(raw, dtype=np.int64, count=nsizes, offset=offset)
            # One-dimensional token tensors: one size per sentence.
            sizes = all_sizes[dim_offsets[:-1]]
        except (struct.error, ValueError, IndexError):
            raise HatError(f"Index file {path} is damaged (its header does not match its length or contents).") from None
        return dtype, sizes.astype(np.int64), data_offsets[:-1].copy(), 1
    raise HatError(f"{path} is not a fairseq index file (unknown magic bytes).")


class IndexedDataset:
    """Read-only view of ``prefix.bin`` through numpy's memmap; ``ds[i]`` is an int64 array."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = Path(prefix)
        if not data_path(prefix).is_file():
            raise HatError(f"Binarized data {data_path(prefix)} does not exist.")
        self.dtype, self.sizes, self._offsets, self._shift = _read_index(index_path(prefix))
        nbytes = data_path(prefix).stat().st_size
        # Every sentence the index promises must lie inside the data file (a damaged index must not read
        # past it, or at negative offsets).
        if len(self.sizes) and (self.sizes.min() < 0 or self._offsets.min() < 0):
            raise HatError(f"Index file {index_path(prefix)} is damaged (negative sizes or offsets).")
        ends = (self._offsets.astype(np.float64) + self.sizes) * self.dtype.itemsize
        needed = int(ends.max()) if len(ends) else 0
        if nbytes < needed:
            raise HatError(f"Binarized data {data_path(prefix)} is shorter than its index says ({nbytes} < {needed} bytes).")
        usable = nbytes - nbytes % self.dtype.itemsize  # a torn last element is never indexed (checked above)
        self._data = np.memmap(data_path(prefix), dtype=self.dtype, mode="r", shape=(usable // self.dtype.itemsize,)) \
            if usable else np.zeros(0, self.dtype)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} out of range (dataset has {len(self)})")
        start = int(self._offsets[i])
        tokens = np.asarray(self._data[start : start + int(self.sizes[i])], dtype=np.int64)
        return tokens - self._shift if self._shift else tokens

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def padded(self, indices: np.ndarray, pad: int, left: bool = False) -> np.ndarray:
        """Sentences ``indices`` as one padded int64 matrix, gathered in a few vectorised numpy calls.

        Training collates tens of thousands of tokens per batch; a per-sentence Python loop there starves
        the GPU (it was the bottleneck of SuperTransformer training).
        """
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.sizes[indices]
        width = int(lengths.max()) if lengths.size else 0
        cols = np.arange(width, dtype=np.int64)[None, :]
        if left:
            cols = cols - (width - lengths)[:, None]
        valid = (cols >= 0) & (cols < lengths[:, None])
        positions = np.where(valid, self._offsets[indices][:, None] + cols, 0)
        tokens = np.asarray(self._data[positions.ravel()], dtype=np.int64).reshape(positions.shape) if positions.size else np.zeros(positions.shape, np.int64)
        return np.where(valid, tokens, pad)

    def count(self, token: int) -> int:
        """Occurrences of ``token`` in the whole dataset (one pass over the memory map)."""
        total = 0
        for start in range(0, len(self._data), 1 << 24):
            total += int((self._data[start : start + (1 << 24)] == token + self._shift).sum())
        return total

    @property
    def num_tokens(self) -> int:
        return int(self.sizes.sum())
