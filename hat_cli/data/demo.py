"""The offline ``demo`` task: a toy language pair generated from a fixed lexicon.

Source sentences are 4-12 words from a 60-word vocabulary; the target is the word-for-word
translation through a fixed one-to-one lexicon, with one local reordering rule: an adjective is
moved after the word that follows it (like English -> French "red car" -> "voiture rouge").
The lexicon never changes; the sentences depend only on the seed. A tiny Transformer learns it to a
high BLEU in a couple of CPU minutes.
"""

from __future__ import annotations

import random

N_ADJECTIVES = 15
N_OTHERS = 45
SPLIT_SIZES = {"train": 20000, "valid": 500, "test": 500}
MIN_WORDS, MAX_WORDS = 4, 12

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]


def _words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    words = []
    while len(words) < count:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((2, 3))))
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def lexicon() -> tuple[list[str], list[str], dict[str, str]]:
    """(source adjectives, other source words, source -> target map); fixed, independent of any seed."""
    rng = random.Random(20200705)  # HAT's ACL 2020 publication date; any constant works
    taken: set[str] = set()
    adjectives = _words(rng, N_ADJECTIVES, taken)
    others = _words(rng, N_OTHERS, taken)
    # Target words are upper-case syllable strings so the two sides never share a symbol by accident.
    targets = [w.upper() for w in _words(rng, N_ADJECTIVES + N_OTHERS, taken)]
    mapping = dict(zip(adjectives + others, targets))
    return adjectives, others, mapping


def translate(words: list[str], adjectives: set[str], mapping: dict[str, str]) -> list[str]:
    out = [mapping[w] for w in words]
    i = 0
    while i < len(words) - 1:
        if words[i] in adjectives and words[i + 1] not in adjectives:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


def generate(seed: int = 1, sizes: dict[str, int] | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """{split: (source lines, target lines)}; splits do not share sentences."""
    sizes = sizes or SPLIT_SIZES
    adjectives, others, mapping = lexicon()
    adjective_set = set(adjectives)
    vocab = adjectives + others
    rng = random.Random(seed)
    seen: set[str] = set()
    result = {}
    for split, count in sizes.items():
        src, tgt = [], []
        while len(src) < count:
            words = [rng.choice(vocab) for _ in range(rng.randint(MIN_WORDS, MAX_WORDS))]
            line = " ".join(words)
            if line in seen:
                continue
            seen.add(line)
            src.append(line)
            tgt.append(" ".join(translate(words, adjective_set, mapping)))
        result[split] = (src, tgt)
    return result
