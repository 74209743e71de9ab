"""The published preprocessing recipes (docs/METHOD.md §10), one function per task, reading like the
original shell scripts: which files, which Moses steps, cleaning, splits, BPE merges, dictionaries.

Each ``build_*`` function turns the source files (found through ``Workspace``) into the final BPE'd
text ``{split: {lang: lines}}``; ``prepare.py`` does dictionaries, binarization and the summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hat_cli.data import demo
from hat_cli.data.archive import extract, find_file, is_archive, read_lines
from hat_cli.data.download import Source
from hat_cli.data.text import MosesSteps, clean_corpus
from hat_cli.core.errors import HatError

SplitText = dict[str, dict[str, list[str]]]


@dataclass(frozen=True)
class Recipe:
    task: str
    sources: tuple[Source, ...] = ()
    preprocessed: Source | None = None  # HAT's binarized tarball (`--preprocessed`)
    published_dict: Source | None = None  # the authors' joined dictionary, so ids match released models
    bpe_merges: int | None = None
    joined_dictionary: bool = False
    nwords: int = -1
    threshold: int = 0
    raw_markers: tuple[str, ...] = ()  # any of these in --from-dir means "raw sources"
    build: Callable | None = field(default=None, compare=False)
    # seed -> {split: (source lines, target lines)}: text made offline instead of downloaded (the demo task)
    generate: Callable | None = field(default=None, compare=False)
    notes: str = ""


class Workspace:
    """Finds a recipe's source files in --from-dir or the download folder, extracting archives on demand
    into the (writable) download folder; --from-dir itself is never written to."""

    def __init__(self, roots: list[Path], extract_dir: Path, ctx) -> None:
        self.roots = roots
        self.extract_dir = extract_dir
        self.ctx = ctx

    def path(self, relative: str) -> Path:
        found = find_file(self.roots + [self.extract_dir], relative)
        if found is None:
            for root in self.roots + [self.extract_dir]:
                for archive in sorted(p for p in root.glob("*") if p.is_file() and is_archive(p)):
                    extract(archive, self.extract_dir)
            found = find_file(self.roots + [self.extract_dir], relative)
        if found is None:
            raise HatError(f"Source file '{relative}' was not found in {', '.join(map(str, self.roots))} (nor in their archives).")
        return found

    def lines(self, relative: str) -> list[str]:
        return read_lines(self.path(relative))


# -- shared steps of the scripts ---------------------------------------------------------------------
_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_CLOSE = re.compile(r"\s*</seg>\s*")


def sgm_segments(lines: list[str]) -> list[str]:
    """``grep '<seg id' | sed 's/<seg id="[0-9]*">\\s*//g' | sed 's/\\s*<\\/seg>\\s*//g' | sed "s/’/'/g"``."""
    out = []
    for line in lines:
        if "<seg id" in line:
            out.append(_SEG_CLOSE.sub("", _SEG_OPEN.sub("", line)).replace("\u2019", "'"))
    return out


def every_nth(lines: list[str], n: int) -> tuple[list[str], list[str]]:
    """awk ``NR%n == 0`` (held out) and ``NR%n != 0`` (kept), 1-based like awk."""
    held = [line for i, line in enumerate(lines, start=1) if i % n == 0]
    kept = [line for i, line in enumerate(lines, start=1) if i % n != 0]
    return held, kept


def tsv_column(lines: list[str], column: int) -> list[str]:
    """``cut -f N``: a line without a tab is printed whole."""
    out = []
    for line in lines:
        if "\t" in line:
            fields = line.split("\t")
            out.append(fields[column - 1] if column <= len(fields) else "")
        else:
            out.append(line)
    return out


# -- IWSLT'14 De-En (fairseq prepare-iwslt14.sh) -----------------------------------------------------
IWSLT_TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011", "IWSLT14.TED.tst2012")
_DROP_TAGS = ("<url>", "<talkid>", "<keywords>")
_STRIP_TAGS = ("<title>", "</title>", "<description>", "</description>")


def build_iwslt14(ws: Workspace, ctx) -> SplitText:
    src, tgt = "de", "en"
    raw = {}
    for lang in (src, tgt):
        lines = [line for line in ws.lines(f"de-en/train.tags.de-en.{lang}") if not any(t in line for t in _DROP_TAGS)]
        for tag in _STRIP_TAGS:
            lines = [line.replace(tag, "") for line in lines]
        raw[lang] = lines
    test_raw = {lang: [ws.lines(f"de-en/{name}.de-en.{lang}.xml") for name in IWSLT_TEST_SETS] for lang in (src, tgt)}
    jobs = [(MosesSteps(lang), raw[lang]) for lang in (src, tgt)]
    for lang in (src, tgt):
        jobs.append((MosesSteps(lang, lowercase=True), [s for doc in test_raw[lang] for s in sgm_segments(doc)]))
    tok_src, tok_tgt, test_src, test_tgt = ctx.moses(jobs)
    clean_src, clean_tgt = clean_corpus(tok_src, tok_tgt, 1, 175, 1.5)
    text: SplitText = {"train": {}, "valid": {}, "test": {src: test_src, tgt: test_tgt}}
    for lang, lines in ((src, clean_src), (tgt, clean_tgt)):
        lowered = [line.lower() for line in lines]
        text["valid"][lang], text["train"][lang] = every_nth(lowered, 23)
    return ctx.bpe(text, merges=10000)


# -- WMT'14 En-De (Google's BPE'd wmt16_en_de) --------------------------------------------------------
def build_wmt14_en_de(ws: Workspace, ctx) -> SplitText:
    names = {"train": "train.tok.clean.bpe.32000", "valid": "newstest2013.tok.bpe.32000", "test": "newstest2014.tok.bpe.32000"}
    return {split: {lang: ws.lines(f"{name}.{lang}") for lang in ("en", "de")} for split, name in names.items()}


# -- WMT'14 En-Fr ---------------------------------------------------------------------------------------
WMT14_FR_CORPORA = (
    "training/europarl-v7.fr-en",
    "commoncrawl.fr-en",
    "un/undoc.2000.fr-en",
    "training/news-commentary-v9.fr-en",
    "giga-fren.release2.fixed",
)


def _wmt_train_steps(lang: str) -> MosesSteps:
    # normalize-punctuation.perl LANG | remove-non-printing-char.perl | tokenizer.perl -a -l LANG
    return MosesSteps(lang, normalize_punctuation=True, remove_non_printing=True, aggressive=True)


def _clean_after_bpe(text: SplitText, src: str, tgt: str) -> SplitText:
    for split in ("train", "valid"):
        text[split][src], text[split][tgt] = clean_corpus(text[split][src], text[split][tgt], 1, 250, 1.5)
    return text


def build_wmt14_en_fr(ws: Workspace, ctx) -> SplitText:
    src, tgt = "en", "fr"
    train_raw = {lang: [line for corpus in WMT14_FR_CORPORA for line in ws.lines(f"{corpus}.{lang}")] for lang in (src, tgt)}
    test_raw = {
        src: sgm_segments(ws.lines(f"test-full/newstest2014-fren-src.{src}.sgm")),
        tgt: sgm_segments(ws.lines(f"test-full/newstest2014-fren-ref.{tgt}.sgm")),
    }
    tok = ctx.moses([(_wmt_train_steps(lang), train_raw[lang]) for lang in (src, tgt)]
                    + [(MosesSteps(lang, aggressive=True), test_raw[lang]) for lang in (src, tgt)])
    text: SplitText = {"train": {}, "valid": {}, "test": {src: tok[2], tgt: tok[3]}}
    for lang, lines in ((src, tok[0]), (tgt, tok[1])):
        text["valid"][lang], text["train"][lang] = every_nth(lines, 1333)
    return _clean_after_bpe(ctx.bpe(text, merges=40000), src, tgt)


# -- WMT'19 En-De -----------------------------------------------------------------------------------
# (corpus file, column of English, column of German) for the tab-separated corpora, `cut -f` style.
WMT19_TSV = (
    ("en-de.bicleaner07.txt", 1, 2),
    ("news-commentary-v14.de-en.tsv", 2, 1),
    ("wikititles-v1.de-en.tsv", 2, 1),
    ("europarl-v9.de-en.tsv", 2, 1),
)
WMT19_PARALLEL = ("commoncrawl.de-en", "rapid2019.de-en")


def build_wmt19_en_de(ws: Workspace, ctx) -> SplitText:
    src, tgt = "en", "de"
    train_raw: dict[str, list[str]] = {src: [], tgt: []}
    for name, en_col, de_col in WMT19_TSV:
        lines = ws.lines(name)
        train_raw[src] += tsv_column(lines, en_col)
        train_raw[tgt] += tsv_column(lines, de_col)
    for name in WMT19_PARALLEL:
        for lang in (src, tgt):
            train_raw[lang] += ws.lines(f"{name}.{lang}")
    dev = {}
    for split, year in (("valid", 2017), ("test", 2018)):
        dev[split] = {
            src: sgm_segments(ws.lines(f"dev/newstest{year}-ende-src.{src}.sgm")),
            tgt: sgm_segments(ws.lines(f"dev/newstest{year}-ende-ref.{tgt}.sgm")),
        }
    tok = ctx.moses([(_wmt_train_steps(lang), train_raw[lang]) for lang in (src, tgt)]
                    + [(MosesSteps(lang, aggressive=True), dev[split][lang]) for split in ("valid", "test") for lang in (src, tgt)])
    text: SplitText = {
        "train": {src: tok[0], tgt: tok[1]},  # all training text is used (no held-out part)
        "valid": {src: tok[2], tgt: tok[3]},
        "test": {src: tok[4], tgt: tok[5]},
    }
    return _clean_after_bpe(ctx.bpe(text, merges=40000), src, tgt)


# -- Multi30k task 1 De-En ----------------------------------------------------------------------------
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test": "test_2016_flickr"}
MULTI30K_MERGES = 8000


def build_multi30k(ws: Workspace, ctx) -> SplitText:
    # Lowercased, punctuation-normalised, Moses-tokenised exactly like the dataset's own
    # `lc.norm.tok` files (the variant most Multi30k results are reported on), then joint BPE.
    langs = ("de", "en")
    jobs, keys = [], []
    for split, name in MULTI30K_SPLITS.items():
        for lang in langs:
            steps = MosesSteps(lang, lowercase_first=True, normalize_punctuation=True)
            jobs.append((steps, ws.lines(f"{name}.{lang}")))
            keys.append((split, lang))
    text: SplitText = {split: {} for split in MULTI30K_SPLITS}
    for (split, lang), lines in zip(keys, ctx.moses(jobs)):
        text[split][lang] = lines
    return ctx.bpe(text, merges=MULTI30K_MERGES)


# sha256 and size of the files at the pinned commit (verified against byte-identical copies).
MULTI30K_CHECKSUMS = {
    "train.de.gz": ("726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6", 637044),
    "train.en.gz": ("d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f", 568929),
    "val.de.gz": ("f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a", 24681),
    "val.en.gz": ("14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28", 21650),
    "test_2016_flickr.de.gz": ("9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8", 22890),
    "test_2016_flickr.en.gz": ("611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9", 21077),
}

# -- the registry ----------------------------------------------------------------------------------------
_DROPBOX = "https://www.dropbox.com/s"
_MULTI30K = "https://github.com/multi30k/dataset/raw/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1/raw"

RECIPES: dict[str, Recipe] = {
    r.task: r
    for r in (
        Recipe(
            "iwslt14.de-en",
            # WIT3's published link is offline nowadays; fairseq hosts the same archive.
            sources=(Source("https://wit3.fbk.eu/archive/2014-01/texts/de/en/de-en.tgz", "de-en.tgz",
                            alternates=("http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",)),),
            preprocessed=Source(f"{_DROPBOX}/t5dqiamjdzahhfc/iwslt14_de_en.preproessed.tgz?dl=0", "iwslt14_de_en.preproessed.tgz"),
            bpe_merges=10000,
            joined_dictionary=False,
            raw_markers=("de-en.tgz", "de-en/train.tags.de-en.de", "train.tags.de-en.de"),
            build=build_iwslt14,
            notes="Moses tokenizer (not aggressive), clean 1-175 ratio 1.5, lowercase, valid = every 23rd train line, "
            "test = dev2010+TEDX.dev2012+tst2010-2012, joint BPE 10k, separate dictionaries",
        ),
        Recipe(
            "wmt14.en-de",
            sources=(Source("https://drive.google.com/uc?export=download&id=0B_bZck-ksdkpM25jRUN2X2UxMm8", "wmt16_en_de.tar.gz"),),
            preprocessed=Source(f"{_DROPBOX}/axfwl1vawper8yk/wmt16_en_de.preprocessed.tgz?dl=0", "wmt16_en_de.preprocessed.tgz"),
            joined_dictionary=True,
            nwords=32768,
            raw_markers=("wmt16_en_de.tar.gz", "train.tok.clean.bpe.32000.en"),
            build=build_wmt14_en_de,
            notes="Google's tokenized + BPE-32k WMT'16 En-De; valid newstest2013, test newstest2014; joined dictionary 32768",
        ),
        Recipe(
            "wmt14.en-fr",
            sources=(
                Source("http://statmt.org/wmt13/training-parallel-europarl-v7.tgz", "training-parallel-europarl-v7.tgz"),
                Source("http://statmt.org/wmt13/training-parallel-commoncrawl.tgz", "training-parallel-commoncrawl.tgz"),
                Source("http://statmt.org/wmt13/training-parallel-un.tgz", "training-parallel-un.tgz"),
                Source("http://statmt.org/wmt14/training-parallel-nc-v9.tgz", "training-parallel-nc-v9.tgz"),
                Source("http://statmt.org/wmt10/training-giga-fren.tar", "training-giga-fren.tar"),
                Source("http://statmt.org/wmt14/test-full.tgz", "test-full.tgz"),
            ),
            preprocessed=Source(f"{_DROPBOX}/mrs8efjrrnc61xi/wmt14_en_fr.preprocessed.tgz?dl=0", "wmt14_en_fr.preprocessed.tgz"),
            published_dict=Source(f"{_DROPBOX}/sgx2z11oo5mgube/wmt14enfr_dict.txt?dl=0", "wmt14enfr_dict.txt"),
            bpe_merges=40000,
            joined_dictionary=True,
            raw_markers=("training-parallel-europarl-v7.tgz", "training/europarl-v7.fr-en.en", "test-full.tgz"),
            build=build_wmt14_en_fr,
            notes="normalize + remove non-printing + aggressive Moses; valid = every 1333rd train line; joint BPE 40k; "
            "clean 1-250 ratio 1.5 after BPE (train, valid); authors' joined dictionary",
        ),
        Recipe(
            "wmt19.en-de",
            sources=(
                Source("http://www.statmt.org/europarl/v9/training/europarl-v9.de-en.tsv.gz", "europarl-v9.de-en.tsv.gz"),
                Source("https://s3.amazonaws.com/web-language-models/paracrawl/release3/en-de.bicleaner07.txt.gz", "en-de.bicleaner07.txt.gz"),
                Source("http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz", "training-parallel-commoncrawl.tgz"),
                Source("http://data.statmt.org/news-commentary/v14/training/news-commentary-v14.de-en.tsv.gz", "news-commentary-v14.de-en.tsv.gz"),
                Source("http://data.statmt.org/wikititles/v1/wikititles-v1.de-en.tsv.gz", "wikititles-v1.de-en.tsv.gz"),
                Source("https://s3-eu-west-1.amazonaws.com/tilde-model/rapid2019.de-en.zip", "rapid2019.de-en.zip"),
                Source("http://data.statmt.org/wmt19/translation-task/dev.tgz", "dev.tgz"),
            ),
            preprocessed=Source(f"{_DROPBOX}/q2st4ox2na9z5z2/wmt19_en_de.preprocessed.tgz?dl=0", "wmt19_en_de.preprocessed.tgz"),
            published_dict=Source(f"{_DROPBOX}/u9h8ns6xe8ux91d/wmt19ende_dict.txt?dl=0", "wmt19ende_dict.txt"),
            bpe_merges=40000,
            joined_dictionary=True,
            threshold=1,
            raw_markers=("europarl-v9.de-en.tsv.gz", "europarl-v9.de-en.tsv", "dev.tgz"),
            build=build_wmt19_en_de,
            notes="normalize + remove non-printing + aggressive Moses; valid newstest2017, test newstest2018; joint BPE 40k; "
            "clean 1-250 ratio 1.5 after BPE (train, valid); authors' joined dictionary",
        ),
        Recipe(
            "multi30k.de-en",
            sources=tuple(Source(f"{_MULTI30K}/{name}.{lang}.gz", f"{name}.{lang}.gz", *MULTI30K_CHECKSUMS[f"{name}.{lang}.gz"])
                          for name in MULTI30K_SPLITS.values() for lang in ("de", "en")),
            bpe_merges=MULTI30K_MERGES,
            joined_dictionary=True,
            raw_markers=("val.de.gz", "val.de", "test_2016_flickr.de.gz", "train.de.gz"),
            build=build_multi30k,
            notes="lowercase + normalize punctuation + Moses (the dataset's lc.norm.tok), joint BPE 8k, joined dictionary; "
            "valid = val, test = test_2016_flickr",
        ),
        Recipe("demo", joined_dictionary=True, generate=demo.generate, notes="generated offline (hat_cli/data/demo.py)"),
    )
}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise HatError(f"Unknown data recipe '{name}'; known recipes: {', '.join(RECIPES)}.") from None
