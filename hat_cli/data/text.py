"""Text steps of the Moses-based recipes, in Python: punctuation normalisation, removal of non-printing
characters, tokenisation (sacremoses, optional aggressive hyphen splitting), lowercasing, and
``clean-corpus-n.perl``'s length/ratio filter. Tokenisation runs in worker processes, one chunk each.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

from hat_cli.core.errors import HatError


@dataclass(frozen=True)
class MosesSteps:
    """What a recipe does to each line, in this order (each flag = one Moses script)."""

    lang: str
    normalize_punctuation: bool = False  # normalize-punctuation.perl -l LANG
    remove_non_printing: bool = False  # remove-non-printing-char.perl
    tokenize: bool = True  # tokenizer.perl -l LANG (escaping on, like the script's default)
    aggressive: bool = False  # tokenizer.perl -a
    lowercase: bool = False  # lowercase.perl (after tokenising, as the IWSLT recipe does)
    lowercase_first: bool = False  # Multi30k lowercases before normalising and tokenising


@lru_cache(maxsize=1)
def _non_printing() -> re.Pattern:
    # Perl's \p{C}: every code point of a "C*" general category (control, format, surrogate, private, unassigned).
    ranges, start = [], None
    for cp in range(sys.maxunicode + 2):
        is_c = cp <= sys.maxunicode and unicodedata.category(chr(cp))[0] == "C"
        if is_c and start is None:
            start = cp
        elif not is_c and start is not None:
            ranges.append((start, cp - 1))
            start = None
    body = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges
    )
    return re.compile(f"[{body}]")


def remove_non_printing(line: str) -> str:
    return _non_printing().sub(" ", line)


class MosesPipeline:
    def __init__(self, steps: MosesSteps) -> None:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer

        self.steps = steps
        self._normalizer = MosesPunctNormalizer(steps.lang) if steps.normalize_punctuation else None
        self._tokenizer = MosesTokenizer(steps.lang) if steps.tokenize else None

    def __call__(self, line: str) -> str:
        s = self.steps
        line = line.rstrip("\r\n")
        if s.lowercase_first:
            line = line.lower()
        if self._normalizer is not None:
            # The perl script sees the line with its newline, which lets `."` -> `".` fire at the end of
            # a German/French sentence; feeding the newline too reproduces its output exactly.
            line = self._normalizer.normalize(line + "\n").rstrip("\n")
        if s.remove_non_printing:
            line = remove_non_printing(line)
        if self._tokenizer is not None:
            line = self._tokenizer.tokenize(line, aggressive_dash_splits=s.aggressive, return_str=True, escape=True)
        if s.lowercase:
            line = line.lower()
        return line


def _run_chunk(args: tuple[MosesSteps, list[str]]) -> list[str]:
    steps, lines = args
    pipeline = MosesPipeline(steps)
    return [pipeline(line) for line in lines]


def process_lines(
    jobs: Sequence[tuple[MosesSteps, list[str]]],
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 2000,
) -> list[list[str]]:
    """Run each (steps, lines) job; chunks of all jobs share one process pool. Order is preserved."""
    workers = workers or max(1, os.cpu_count() or 1)
    chunks = []
    for job_id, (steps, lines) in enumerate(jobs):
        for start in range(0, len(lines), chunk_size):
            chunks.append((job_id, (steps, lines[start : start + chunk_size])))
    results: list[list[str]] = [[] for _ in jobs]
    if workers == 1 or len(chunks) <= 1:
        outputs = map(_run_chunk, (c for _, c in chunks))
        for (job_id, _), out in zip(chunks, outputs):
            results[job_id].extend(out)
            if progress:
                progress(len(out))
        return results
    import multiprocessing

    # fork keeps start-up cheap (no re-import); the workers only run sacremoses on strings.
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(workers) as pool:
        for (job_id, _), out in zip(chunks, pool.imap(_run_chunk, (c for _, c in chunks))):
            results[job_id].extend(out)
            if progress:
                progress(len(out))
    return results


_PIPE = re.compile(r"\|")
_SPACES = re.compile(r"\s+")


def clean_corpus(
    src: Sequence[str], tgt: Sequence[str], min_len: int, max_len: int, ratio: float, max_word_length: int = 1000
) -> tuple[list[str], list[str]]:
    """``clean-corpus-n.perl -ratio R``: normalised whitespace, both sides within [min, max] words and
    within the length ratio, no word over ``max_word_length`` characters; '|' removed unless the first
    line looks factored."""
    if len(src) != len(tgt):
        raise HatError(f"Parallel text has {len(src)} source lines but {len(tgt)} target lines.")
    factored = bool(src) and ("|" in src[0] or "|" in tgt[0])
    too_long = re.compile(r"[^\s|]{%d}" % (max_word_length + 1))
    out_src, out_tgt = [], []
    for f, e in zip(src, tgt):
        if not factored:
            f, e = _PIPE.sub("", f), _PIPE.sub("", e)
        f = _SPACES.sub(" ", f).strip(" ")
        e = _SPACES.sub(" ", e).strip(" ")
        if not f or not e:
            continue
        nf, ne = len(f.split(" ")), len(e.split(" "))
        if nf > max_len or ne > max_len or nf < min_len or ne < min_len:
            continue
        if ne / nf > ratio or nf / ne > ratio:
            continue
        if too_long.search(f) or too_long.search(e):
            continue
        out_src.append(f)
        out_tgt.append(e)
    return out_src, out_tgt
