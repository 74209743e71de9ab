"""BLEU exactly as HAT reported it (docs/METHOD.md §7).

Two numbers per test run:

* "normal" BLEU: the compound-split rewrite ``(\\S)-(\\S)`` -> ``\\1 ##AT##-##AT## \\2`` on hypotheses
  and references, then fairseq's corpus BLEU-4 on whitespace tokens (``score.py``, the C scorer):
  case-sensitive, brevity penalty, clipped n-gram matches, trailing end-of-sentence trimmed.
* SacreBLEU: ``sacremoses detokenize`` (language en, XML unescape) on both sides, then
  ``sacrebleu.corpus_bleu`` with its defaults (13a, mixed case), reported with its signature.

Pure Python apart from sacrebleu/sacremoses; no torch.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from hat_cli.core.errors import HatError

_COMPOUND = re.compile(r"(\S)-(\S)")
_WHITESPACE = re.compile(r"\s+")

# fairseq's Dictionary puts these four symbols first; score.py encodes every line with such a
# dictionary, so these literal words behave specially in the C scorer (trimmed or never matched).
_BOS, _PAD, _EOS, _UNK = 0, 1, 2, 3
_SPECIALS = {"<s>": _BOS, "<pad>": _PAD, "</s>": _EOS, "<unk>": _UNK}
_REF_UNK = -999  # fairseq's Scorer.add rewrites reference <unk> to -999 so it never matches


def split_compounds(line: str) -> str:
    """The ``perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'`` of HAT's test.sh.

    Matches do not overlap, exactly like perl's /g: ``a-b-c`` -> ``a ##AT##-##AT## b-c``.
    """
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


@dataclass
class BleuStats:
    """Sufficient statistics of corpus BLEU-4, the fields of fairseq's ``bleu_stat``."""

    reflen: int = 0
    predlen: int = 0
    match: tuple[int, int, int, int] = (0, 0, 0, 0)
    count: tuple[int, int, int, int] = (0, 0, 0, 0)

    def precisions(self) -> list[float]:
        return [m / c if c > 0 else 0.0 for m, c in zip(self.match, self.count)]

    def brevity_penalty(self) -> float:
        if self.predlen == 0:
            return 0.0
        return min(1.0, math.exp(1.0 - self.reflen / self.predlen))

    def score(self) -> float:
        """BLEU-4 in percent (0 when any precision is 0, like fairseq's ``log(0) = -inf``)."""
        precisions = self.precisions()
        if min(precisions) <= 0:
            return 0.0
        log_mean = sum(math.log(p) for p in precisions) / 4
        return self.brevity_penalty() * math.exp(log_mean) * 100

    def result_string(self) -> str:
        """fairseq's ``Scorer.result_string()``, e.g. ``BLEU4 = 27.31, 58.9/33.0/20.8/13.6 (BP=...)``."""
        bleup = [p * 100 for p in self.precisions()]
        ratio = self.predlen / self.reflen if self.reflen else 0.0
        return (
            f"BLEU4 = {self.score():2.2f}, "
            + "/".join(f"{p:2.1f}" for p in bleup)
            + f" (BP={self.brevity_penalty():.3f}, ratio={ratio:.3f}, syslen={self.predlen}, reflen={self.reflen})"
        )


class _Vocabulary:
    """score.py's growing Dictionary: one id per distinct whitespace token, specials first."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = dict(_SPECIALS)

    def encode(self, line: str) -> list[int]:
        words = _WHITESPACE.sub(" ", line).strip().split()
        ids = [self.ids.setdefault(word, len(self.ids)) for word in words]
        ids.append(_EOS)  # encode_line appends </s>
        return ids


def _trim(ids: list[int]) -> list[int]:
    """libbleu's bleu_trim: drop leading pads, then trailing eos/pads but never the first token."""
    start = 0
    while start < len(ids) and ids[start] == _PAD:
        start += 1
    ids = ids[start:]
    end = len(ids) - 1
    while end > 0 and ids[end] in (_EOS, _PAD):
        end -= 1
    return ids[: end + 1]


def _ngrams(ids: Sequence[int], n: int) -> Counter:
    return Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))


def corpus_stats(hypotheses: Iterable[str], references: Iterable[str]) -> BleuStats:
    """Accumulate fairseq-scorer statistics over aligned hypothesis/reference lines."""
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise HatError(f"There are {len(hypotheses)} hypotheses but {len(references)} references; they must pair up line by line.")
    vocabulary = _Vocabulary()
    reflen = predlen = 0
    match, count = [0] * 4, [0] * 4
    for hyp_line, ref_line in zip(hypotheses, references):
        # score.py encodes the system line first, then the reference (ids depend on order only
        # through equality, which is all that matters here).
        pred = _trim(vocabulary.encode(hyp_line))
        ref = _trim([_REF_UNK if i == _UNK else i for i in vocabulary.encode(ref_line)])
        reflen += len(ref)
        predlen += len(pred)
        for n in range(1, 5):
            if len(pred) < n:
                continue
            count[n - 1] += len(pred) - n + 1
            if len(ref) < n:
                continue
            pred_counts, ref_counts = _ngrams(pred, n), _ngrams(ref, n)
            match[n - 1] += sum(min(c, ref_counts[g]) for g, c in pred_counts.items())
    return BleuStats(reflen, predlen, tuple(match), tuple(count))


def tokenized_bleu(hypotheses: Iterable[str], references: Iterable[str], split_hyphens: bool = True) -> BleuStats:
    """HAT's "normal" BLEU: compound split on both sides (unless disabled), then fairseq's scorer."""
    if split_hyphens:
        hypotheses = [split_compounds(line) for line in hypotheses]
        references = [split_compounds(line) for line in references]
    return corpus_stats(hypotheses, references)


@functools.lru_cache(maxsize=4)
def _detokenizer(lang: str):
    from sacremoses import MosesDetokenizer

    return MosesDetokenizer(lang=lang)  # slow to build (loads its character tables): build once


def detokenize(lines: Iterable[str], lang: str = "en") -> list[str]:
    """``sacremoses detokenize`` (its CLI: language en by default, XML unescape on)."""
    detokenizer = _detokenizer(lang)
    return [detokenizer.detokenize(line.split(), return_str=True, unescape=True) for line in lines]


@dataclass
class SacreBleuResult:
    score: float
    signature: str
    text: str


def sacre_bleu(hypotheses: Iterable[str], references: Iterable[str], detokenize_first: bool = True) -> SacreBleuResult:
    """SacreBLEU with default settings on (by default sacremoses-detokenized) text, as HAT's test.sh."""
    from sacrebleu.metrics import BLEU

    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise HatError(f"There are {len(hypotheses)} hypotheses but {len(references)} references; they must pair up line by line.")
    if detokenize_first:
        hypotheses, references = detokenize(hypotheses), detokenize(references)
    # sacrebleu 1.x (used by score.py) right-stripped every line read from a file.
    hypotheses = [line.rstrip() for line in hypotheses]
    references = [line.rstrip() for line in references]
    metric = BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return SacreBleuResult(result.score, str(metric.get_signature()), str(result))
