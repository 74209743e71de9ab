"""BLEU as HAT computed it: fairseq's tokenized scorer with the compound split, and SacreBLEU on
sacremoses-detokenized text. Checked against sacrebleu and the sacremoses/sacrebleu command lines on
real sentences, and against a hand-computed case with hyphenated compounds."""

from __future__ import annotations

import gzip
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from hat_cli.evaluation.bleu import corpus_stats, detokenize, sacre_bleu, split_compounds, tokenized_bleu
from hat_cli.core.errors import HatError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IWSLT_TEST_EN = DATA / "iwslt14-de-en" / "tmp" / "test.en"
NEWSTEST_DE = DATA / "wmt-newstest" / "en-de" / "newstest2014.de.gz"


def _perturb(lines: list[str], seed: int = 0) -> list[str]:
    """Plausible system output: drop, swap and substitute words in some of the references."""
    rng = random.Random(seed)
    out = []
    for line in lines:
        words = line.split()
        action = rng.random()
        if len(words) > 3 and action < 0.3:
            del words[rng.randrange(len(words))]
        elif len(words) > 3 and action < 0.55:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif words and action < 0.8:
            words[rng.randrange(len(words))] = "the"
        if rng.random() < 0.2:
            words = words[: max(1, len(words) * 2 // 3)]  # too short: exercises the brevity penalty
        out.append(" ".join(words))
    return out


def _read_iwslt(n: int) -> list[str]:
    if not IWSLT_TEST_EN.exists():
        pytest.skip(f"{IWSLT_TEST_EN} is missing")
    return IWSLT_TEST_EN.read_text(encoding="utf-8").splitlines()[:n]


def _read_newstest(n: int) -> list[str]:
    if not NEWSTEST_DE.exists():
        pytest.skip(f"{NEWSTEST_DE} is missing")
    with gzip.open(NEWSTEST_DE, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(n)]


def test_split_compounds_is_perls_non_overlapping_rewrite():
    assert split_compounds("state-of-the-art") == "state ##AT##-##AT## of ##AT##-##AT## the ##AT##-##AT## art"
    # perl's /g does not re-use the consumed "b": the second hyphen stays.
    assert split_compounds("a-b-c") == "a ##AT##-##AT## b-c"
    assert split_compounds("x - y -- z e-") == "x - y -- z e-"
    assert split_compounds("B 33-Fußgängerampel") == "B 33 ##AT##-##AT## Fußgängerampel"


def test_normal_bleu_hand_computed_case_with_hyphenated_compounds():
    hyps = ["a well-known fact", "e-mail me"]
    refs = ["a well-known fact .", "e-mail him"]
    stats = tokenized_bleu(hyps, refs)
    # After the rewrite: hyp1 has 5 tokens all inside ref1 (6 tokens), hyp2 "e ##AT##-##AT## mail me"
    # shares its first three tokens with ref2.
    assert (stats.predlen, stats.reflen) == (9, 10)
    assert stats.match == (8, 6, 4, 2)
    assert stats.count == (9, 7, 5, 3)
    expected = math.exp(1 - 10 / 9) * (8 / 9 * 6 / 7 * 4 / 5 * 2 / 3) ** 0.25 * 100
    assert stats.score() == pytest.approx(expected, abs=1e-12)
    assert stats.score() == pytest.approx(71.44, abs=0.01)
    assert stats.result_string().startswith("BLEU4 = 71.44, 88.9/85.7/80.0/66.7 (BP=0.895, ratio=0.900, syslen=9, reflen=10)")
    # Without the rewrite no 4-gram exists at all, so BLEU is 0: the rewrite changes the metric.
    assert tokenized_bleu(hyps, refs, split_hyphens=False).score() == 0.0


def test_fairseq_scorer_quirks():
    # An empty line is encoded as a lone </s>, which bleu_trim keeps: it counts as one matching token.
    stats = corpus_stats([""], [""])
    assert (stats.predlen, stats.reflen, stats.match[0], stats.count[0]) == (1, 1, 1, 1)
    # A reference <unk> never matches (fairseq maps it to -999); the escaped <<unk>> is an ordinary word.
    assert corpus_stats(["<unk> b"], ["<unk> b"]).match[0] == 1
    assert corpus_stats(["<<unk>> b"], ["<<unk>> b"]).match[0] == 2
    # Case-sensitive, whitespace-normalised.
    assert corpus_stats(["The  cat\t"], ["the cat"]).match[0] == 1
    with pytest.raises(HatError):
        corpus_stats(["a"], ["a", "b"])


def test_tokenized_bleu_agrees_with_sacrebleu_none_on_real_text_without_hyphens():
    refs = [line for line in _read_iwslt(2000) if "-" not in line and line.strip()]
    hyps = _perturb(refs)
    ours = tokenized_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none")
    assert len(refs) > 1500
    assert 20 < ours.score() < 95
    assert ours.score() == pytest.approx(theirs.score, abs=1e-9)
    assert list(ours.match) == list(theirs.counts)
    assert list(ours.count) == list(theirs.totals)
    assert (ours.predlen, ours.reflen) == (theirs.sys_len, theirs.ref_len)


def test_normal_bleu_equals_sacrebleu_none_on_rewritten_real_text_with_hyphens():
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang="de")
    refs = [tokenizer.tokenize(line, return_str=True, aggressive_dash_splits=True) for line in _read_newstest(400)]
    hyps = _perturb(refs, seed=1)
    assert sum("@-@" in line for line in refs) > 20  # the hyphen path is really exercised
    ours = tokenized_bleu(hyps, refs)
    theirs = sacrebleu.corpus_bleu([split_compounds(h) for h in hyps], [[split_compounds(r) for r in refs]], tokenize="none")
    assert ours.score() == pytest.approx(theirs.score, abs=1e-9)
    assert ours.score() != pytest.approx(tokenized_bleu(hyps, refs, split_hyphens=False).score(), abs=1e-3)


@pytest.mark.slow
def test_sacre_bleu_equals_hat_shell_pipeline(tmp_path):
    """`sacremoses detokenize < sys > sys.detok` on both sides, then the sacrebleu command line."""
    from sacremoses import MosesTokenizer

    tokenizer = MosesTokenizer(lang="de")
    refs = [tokenizer.tokenize(line, return_str=True) for line in _read_newstest(300)]
    hyps = _perturb(refs, seed=2)
    files = {}
    for name, lines in (("sys", hyps), ("ref", refs)):
        (tmp_path / f"{name}.pre").write_text("\n".join(lines) + "\n", encoding="utf-8")
        with open(tmp_path / f"{name}.pre", "rb") as src, open(tmp_path / name, "wb") as dst:
            subprocess.run([sys.executable, "-m", "sacremoses", "detokenize"], stdin=src, stdout=dst, check=True)
        files[name] = tmp_path / name
    assert detokenize(refs) == files["ref"].read_text(encoding="utf-8").splitlines()
    cli = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(files["ref"]), "-i", str(files["sys"]), "-b", "-w", "6"],
        capture_output=True, text=True, check=True,
    )
    ours = sacre_bleu(hyps, refs)
    assert ours.score == pytest.approx(float(cli.stdout.strip()), abs=1e-6)
    assert ours.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
