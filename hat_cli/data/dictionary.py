"""fairseq's ``Dictionary``: ``dict.<lang>.txt`` files, symbol <-> id, and line encoding.

Ids 0-3 are ``<s> <pad> </s> <unk>``; every other symbol is one ``"symbol count"`` line of the file.
Building from counts sorts by count (ties by symbol) and pads the size to a multiple of 8 with
``madeupwordNNNN`` exactly like ``fairseq-preprocess``, so our files and ids equal fairseq's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
_OVERWRITE_FLAG = "#fairseq:overwrite"
# fairseq's tokenize_line: collapse any whitespace run, then split on spaces.
_SPACE = re.compile(r"\s+")


def tokenize_line(line: str) -> list[str]:
    return _SPACE.sub(" ", line).strip().split()


class Dictionary:
    """Symbol table with fairseq's special symbols and file format."""

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.count: list[int] = []
        self.indices: dict[str, int] = {}
        self.bos_index = self.add_symbol(BOS)
        self.pad_index = self.add_symbol(PAD)
        self.eos_index = self.add_symbol(EOS)
        self.unk_index = self.add_symbol(UNK)
        self.nspecial = len(self.symbols)

    # -- basic protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.symbols == other.symbols

    def __getitem__(self, index: int) -> str:
        return self.symbols[index] if 0 <= index < len(self.symbols) else UNK

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.indices

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    def index(self, symbol: str) -> int:
        return self.indices.get(symbol, self.unk_index)

    def add_symbol(self, symbol: str, n: int = 1, overwrite: bool = False) -> int:
        if symbol in self.indices and not overwrite:
            idx = self.indices[symbol]
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[symbol] = idx
        self.symbols.append(symbol)
        self.count.append(n)
        return idx

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_counts(
        cls,
        counts: Counter | dict[str, int],
        threshold: int = 0,
        nwords: int = -1,
        padding_factor: int = 8,
    ) -> "Dictionary":
        """Like ``fairseq-preprocess``: most frequent first (ties by symbol), at most ``nwords``
        entries including the 4 specials, drop counts below ``threshold``, pad to ``padding_factor``."""
        d = cls()
        for symbol, n in counts.items():
            d.add_symbol(symbol, n)
        d.finalize(threshold=threshold, nwords=nwords, padding_factor=padding_factor)
        return d

    @classmethod
    def build(cls, lines: Iterable[str], **finalize_kwargs) -> "Dictionary":
        counts: Counter = Counter()
        for line in lines:
            counts.update(tokenize_line(line))
        return cls.from_counts(counts, **finalize_kwargs)

    def finalize(self, threshold: int = 0, nwords: int = -1, padding_factor: int = 8) -> None:
        if nwords <= 0:
            nwords = len(self)
        special = list(zip(self.symbols[: self.nspecial], self.count[: self.nspecial]))
        rest = sorted(zip(self.symbols[self.nspecial :], self.count[self.nspecial :]))
        # A stable sort by count keeps the alphabetical order among equal counts (fairseq's order).
        rest.sort(key=lambda item: item[1], reverse=True)
        kept = []
        for symbol, n in rest[: max(nwords - self.nspecial, 0)]:
            if n < threshold:
                break
            kept.append((symbol, n))
        self.symbols, self.count, self.indices = [], [], {}
        for symbol, n in special + kept:
            self.add_symbol(symbol, n)
        self.pad_to_multiple(padding_factor)

    def pad_to_multiple(self, padding_factor: int = 8) -> None:
        if padding_factor > 1:
            i = 0
            while len(self) % padding_factor != 0:
                self.add_symbol(f"madeupword{i:04d}", n=0)
                i += 1

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dictionary":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise HatError(f"Dictionary file {path} does not exist.") from None
        except UnicodeDecodeError:
            raise HatError(f"Dictionary file {path} is not UTF-8 text.") from None
        d = cls()
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.rstrip()
            if not line:
                continue
            overwrite = False
            if line.endswith(" " + _OVERWRITE_FLAG):
                overwrite = True
                line = line[: -len(_OVERWRITE_FLAG) - 1].rstrip()
            symbol, sep, count = line.rpartition(" ")
            if not sep or not count.lstrip("-").isdigit():
                raise HatError(f"Line {lineno} of {path} is not 'symbol count' as in a fairseq dict.<lang>.txt.")
            if symbol in d.indices and not overwrite:
                raise HatError(f"Symbol '{symbol}' appears twice in {path} (line {lineno}).")
            d.add_symbol(symbol, int(count), overwrite=overwrite)
        return d

    def to_text(self) -> str:
        return "".join(f"{s} {c}\n" for s, c in zip(self.symbols[self.nspecial :], self.count[self.nspecial :]))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_text())

    def sha256(self) -> str:
        """Hash of the saved file's bytes (what model directories record per language)."""
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()

    # -- encoding / decoding --------------------------------------------------------------------
    def encode_line(self, line: str, append_eos: bool = True) -> list[int]:
        ids = [self.indices.get(w, self.unk_index) for w in tokenize_line(line)]
        if append_eos:
            ids.append(self.eos_index)
        return ids

    def encode_tokens(self, words: Sequence[str], append_eos: bool = True) -> tuple[list[int], int]:
        """Encode already split words; also return how many were replaced by <unk> (fairseq's
        "replaced" count: words outside the dictionary other than a literal <unk>)."""
        unk = self.unk_index
        get = self.indices.get
        ids = [get(w, unk) for w in words]
        replaced = 0
        if unk in ids:
            replaced = sum(1 for w, i in zip(words, ids) if i == unk and w != UNK)
        if append_eos:
            ids.append(self.eos_index)
        return ids, replaced

    def string(self, ids: Iterable[int], bpe_symbol: str | None = None, unk_string: str | None = None) -> str:
        """Ids -> text like fairseq's ``string``: omits EOS, BOS and padding, optionally removes BPE."""
        skip = (self.eos_index, self.pad_index, self.bos_index)
        words = []
        for i in ids:
            i = int(i)
            if i in skip:
                continue
            words.append(unk_string if (i == self.unk_index and unk_string is not None) else self[i])
        return remove_bpe(" ".join(words), bpe_symbol)


def remove_bpe(text: str, bpe_symbol: str | None) -> str:
    """fairseq's ``--remove-bpe``: "@@ " joins a word piece to the next one."""
    if bpe_symbol is None:
        return text
    if bpe_symbol in ("subword_nmt", "@@ "):
        bpe_symbol = "@@ "
    return (text + " ").replace(bpe_symbol, "").rstrip()
