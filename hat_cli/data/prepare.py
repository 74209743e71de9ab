"""`hat data`: turn a task's sources into fairseq-format data (``dict.<lang>.txt`` + mmap ``.bin/.idx``).

Three ways in, one way out:
- raw sources (downloaded, or found in ``--from-dir``) go through the task's recipe (``recipes.py``);
- already tokenized/BPE'd ``{train,valid,test}.{src,tgt}`` text in ``--from-dir`` is binarized as is;
- ``--preprocessed`` fetches HAT's published binarized tarball.
Every way ends with ``summary.json`` (CLI.md's JSON) and ``prepare.json`` (seed, resolved settings).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, sweep_stale
from hat_cli.core.locks import exclusive
from hat_cli.data.archive import extract, find_file, read_lines, write_lines
from hat_cli.data.bpe import BpeApplier, count_words, learn_bpe, write_codes
from hat_cli.data.dictionary import Dictionary, tokenize_line
from hat_cli.data.download import download
from hat_cli.data.indexed import IndexedDataset, IndexedDatasetWriter, dataset_exists
from hat_cli.data.recipes import Recipe, Workspace, get_recipe
from hat_cli.data.text import MosesSteps, process_lines
from hat_cli.tasks import get_task

SPLITS = ("train", "valid", "test")
SUMMARY_FILE = "summary.json"
SETTINGS_FILE = "prepare.json"


class Stages:
    """Progress reporting: one Rich task per stage, or nothing when no progress bar is given."""

    def __init__(self, progress: Any = None) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def _mark(self, description: str | None) -> None:
        now = time.perf_counter()
        if self._current is not None:
            name, since = self._current
            self.timings[name] = round(self.timings.get(name, 0.0) + now - since, 3)
        self._current = (description, now) if description else None

    def finish(self) -> None:
        self._mark(None)

    def stage(self, description: str, total: int | None) -> Callable[[int], None]:
        self._mark(description.split(" (")[0])
        if self.progress is None:
            return lambda n=1: None
        task_id = self.progress.add_task(description, total=total, info="")
        return lambda n=1: self.progress.advance(task_id, n)

    def bytes_stage(self, description: str) -> Callable[[int, int | None], None]:
        self._mark("download")
        if self.progress is None:
            return lambda n, total=None: None
        task_id = self.progress.add_task(description, total=None, info="bytes")

        def update(advance: int, total: int | None = None) -> None:
            if total is not None:
                self.progress.update(task_id, total=total)
            self.progress.advance(task_id, advance)

        return update


class RecipeContext:
    """What a recipe function may ask for: Moses processing (parallel) and joint BPE."""

    def __init__(self, out_dir: Path, stages: Stages, workers: int | None, merges_override: int | None) -> None:
        self.out_dir = out_dir
        self.stages = stages
        self.workers = workers
        self.merges_override = merges_override
        self.merges_used: int | None = None

    def moses(self, jobs: list[tuple[MosesSteps, list[str]]]) -> list[list[str]]:
        advance = self.stages.stage("tokenize (Moses)", sum(len(lines) for _, lines in jobs))
        return process_lines(jobs, workers=self.workers, progress=advance)

    def bpe(self, text: dict[str, dict[str, list[str]]], merges: int) -> dict[str, dict[str, list[str]]]:
        """Learn joint BPE on train (all languages) and apply it to every split (subword-nmt)."""
        merges = self.merges_override or merges
        self.merges_used = merges
        if "train" not in text:
            raise HatError("BPE needs the training text, which this source does not have.")
        counts: Counter = Counter()
        for lines in text["train"].values():
            count_words(lines, counts)
        advance = self.stages.stage(f"learn BPE ({merges} merges)", merges)
        codes = learn_bpe(counts, merges, progress=advance)
        codes_path = self.out_dir / "code"
        write_codes(codes_path, codes)
        applier = BpeApplier(codes_path)
        advance = self.stages.stage("apply BPE", sum(len(v) for s in text.values() for v in s.values()))
        out: dict[str, dict[str, list[str]]] = {}
        for split, langs in text.items():
            out[split] = {}
            for lang, lines in langs.items():
                out[split][lang] = applier.lines(lines)
                advance(len(lines))
        return out


# -- dictionaries and binarization -------------------------------------------------------------------
def build_dictionaries(recipe: Recipe, src: str, tgt: str, train: dict[str, list[str]] | None,
                       srcdict: Path | None, tgtdict: Path | None, published: Path | None) -> dict[str, Dictionary]:
    """fairseq-preprocess's rules: given dictionaries win; a joined dictionary comes from --srcdict,
    else --tgtdict (the authors' file for WMT'14 En-Fr / WMT'19), else both training sides."""
    if recipe.joined_dictionary:
        if srcdict and tgtdict and srcdict.read_bytes() != tgtdict.read_bytes():
            raise HatError(f"Task '{recipe.task}' shares one dictionary between {src} and {tgt}, but --srcdict and --tgtdict differ.")
        given = srcdict or tgtdict or published
        if given is not None:
            d = Dictionary.load(given)
        else:
            if not train:
                raise HatError("Building the joined dictionary needs train.* text; give --srcdict/--tgtdict or include train.")
            d = Dictionary.build(train[src] + train[tgt], threshold=recipe.threshold, nwords=recipe.nwords)
        return {src: d, tgt: d}
    dicts = {}
    for lang, given in ((src, srcdict), (tgt, tgtdict)):
        if given is not None:
            dicts[lang] = Dictionary.load(given)
        elif train and lang in train:
            dicts[lang] = Dictionary.build(train[lang], threshold=recipe.threshold, nwords=recipe.nwords)
        else:
            raise HatError(f"No dictionary for '{lang}': give --{'src' if lang == src else 'tgt'}dict or include train.{lang}.")
    return dicts


def binarize(lines: list[str], dictionary: Dictionary, prefix: Path, advance: Callable[[int], None]) -> dict[str, int]:
    """Write one side of a split; counts are fairseq-preprocess's (tokens include </s>)."""
    tokens = replaced = 0
    with IndexedDatasetWriter(prefix, len(dictionary)) as writer:
        for i, line in enumerate(lines):
            ids, unk = dictionary.encode_tokens(tokenize_line(line))
            writer.add(ids)
            tokens += len(ids)
            replaced += unk
            if i % 4096 == 4095:
                advance(4096)
        advance(len(lines) % 4096)
    return {"sentences": len(lines), "tokens": tokens, "unk": replaced}


def write_binarized(out_dir: Path, text: dict[str, dict[str, list[str]]], dicts: dict[str, Dictionary],
                    src: str, tgt: str, stages: Stages) -> dict[str, Any]:
    for lang in (src, tgt):
        dicts[lang].save(out_dir / f"dict.{lang}.txt")
    splits: dict[str, Any] = {}
    for split in SPLITS:
        if split not in text:
            continue
        sides = text[split]
        if len(sides[src]) != len(sides[tgt]):
            raise HatError(f"The {split} split has {len(sides[src])} {src} lines but {len(sides[tgt])} {tgt} lines.")
        advance = stages.stage(f"binarize {split}", len(sides[src]) * 2)
        counts = {lang: binarize(sides[lang], dicts[lang], out_dir / f"{split}.{src}-{tgt}.{lang}", advance) for lang in (src, tgt)}
        splits[split] = split_summary(counts, src, tgt)
    return splits


def split_summary(counts: dict[str, dict[str, int]], src: str, tgt: str) -> dict[str, Any]:
    return {
        "sentences": counts[src]["sentences"],
        "tokens": {lang: counts[lang]["tokens"] for lang in (src, tgt)},
        "unk_rate": {lang: (counts[lang]["unk"] / counts[lang]["tokens"] if counts[lang]["tokens"] else 0.0) for lang in (src, tgt)},
        "unk": {lang: counts[lang]["unk"] for lang in (src, tgt)},
    }


def summarize_binarized(out_dir: Path, src: str, tgt: str) -> dict[str, Any]:
    """Counts read back from existing binaries (for --preprocessed: '<unk>' ids stand in for replacements)."""
    dicts = {lang: Dictionary.load(out_dir / f"dict.{lang}.txt") for lang in (src, tgt)}
    splits = {}
    for split in SPLITS:
        prefixes = {lang: out_dir / f"{split}.{src}-{tgt}.{lang}" for lang in (src, tgt)}
        if not all(dataset_exists(p) for p in prefixes.values()):
            continue
        counts = {}
        for lang, prefix in prefixes.items():
            ds = IndexedDataset(prefix)
            counts[lang] = {"sentences": len(ds), "tokens": ds.num_tokens, "unk": ds.count(dicts[lang].unk())}
        splits[split] = split_summary(counts, src, tgt)
    return splits


# -- the three ways in -----------------------------------------------------------------------------------
def _processed_text(from_dir: Path, src: str, tgt: str) -> dict[str, dict[str, list[str]]]:
    text = {}
    for split in SPLITS:
        paths = {lang: find_file([from_dir], f"{split}.{lang}") for lang in (src, tgt)}
        if all(paths.values()):
            text[split] = {lang: read_lines(p, strict=True) for lang, p in paths.items()}
        elif any(paths.values()):
            missing = [lang for lang, p in paths.items() if p is None][0]
            raise HatError(f"{from_dir} has {split}.{src if missing == tgt else tgt} but no {split}.{missing}; splits need both sides.")
    if not text:
        raise HatError(
            f"{from_dir} has neither the task's raw sources nor {{train,valid,test}}.{{{src},{tgt}}} text files."
        )
    return text


def _is_raw_layout(recipe: Recipe, from_dir: Path) -> bool:
    return any((from_dir / marker).exists() for marker in recipe.raw_markers)


def _fetch_sources(recipe: Recipe, orig: Path, stages: Stages, mirror: str | None) -> None:
    for source in recipe.sources:
        download(source, orig, mirror=mirror, progress=stages.bytes_stage(f"download {source.filename}"))


def _install_preprocessed(recipe: Recipe, out_dir: Path, src: str, tgt: str, stages: Stages, mirror: str | None) -> None:
    if recipe.preprocessed is None:
        raise HatError(f"Task '{recipe.task}' has no published preprocessed data; run without --preprocessed.")
    orig = out_dir / "orig"
    archive = download(recipe.preprocessed, orig, mirror=mirror, progress=stages.bytes_stage(f"download {recipe.preprocessed.filename}"))
    unpacked = orig / "preprocessed"
    extract(archive, unpacked)
    # The tarball's inner folder is not documented: take the fairseq files wherever they are.
    wanted = [f"dict.{src}.txt", f"dict.{tgt}.txt"] + [
        f"{split}.{src}-{tgt}.{lang}.{ext}" for split in SPLITS for lang in (src, tgt) for ext in ("bin", "idx")
    ]
    found = {p.name: p for p in unpacked.rglob("*") if p.is_file() and p.name in wanted}
    for name in (f"dict.{src}.txt", f"dict.{tgt}.txt"):
        if name not in found:
            raise HatError(f"The published archive {archive.name} has no {name}; it is not fairseq {src}-{tgt} data.")
    for name, path in found.items():
        shutil.copyfile(path, out_dir / name)


def prepare_task(
    task_name: str,
    data_dir: str | Path | None = None,
    from_dir: str | Path | None = None,
    preprocessed: bool = False,
    srcdict: str | Path | None = None,
    tgtdict: str | Path | None = None,
    seed: int = 1,
    progress: Any = None,
    mirror: str | None = None,
    workers: int | None = None,
    bpe_merges: int | None = None,
    keep_text: bool = True,
) -> dict[str, Any]:
    """Prepare ``task_name`` into ``data_dir`` (default ``data/<task>``) and return CLI.md's summary."""
    started = time.perf_counter()
    task = get_task(task_name)
    if task.recipe is not None:
        recipe = get_recipe(task.recipe)
    elif from_dir is not None and not preprocessed:
        # A task without a recipe: its {train,valid,test}.{src,tgt} text is binarized as it is.
        recipe = Recipe(task.name, joined_dictionary=task.share_all_embeddings, notes="tokenized text from --from-dir")
    else:
        raise HatError(f"Task '{task.name}' has no download recipe; prepare it from tokenized text with --from-dir DIR.")
    out_dir = Path(data_dir) if data_dir is not None else paths.data_dir(task_name)
    srcdict = Path(srcdict) if srcdict else None
    tgtdict = Path(tgtdict) if tgtdict else None
    for option, given in (("--srcdict", srcdict), ("--tgtdict", tgtdict)):
        if given is not None and given.is_dir():
            raise HatError(f"{option} {given} is a directory; give the dictionary file (dict.<lang>.txt).")
        if given is not None and not given.is_file():
            raise HatError(f"Dictionary file {given} does not exist.")
    from_dir = Path(from_dir) if from_dir is not None else None
    if from_dir is not None and not from_dir.is_dir():
        raise HatError(f"--from-dir {from_dir} is not a directory.")
    if preprocessed and (from_dir is not None or srcdict or tgtdict):
        raise HatError("--preprocessed takes the published binarized data as is; it cannot be combined with --from-dir or dictionaries.")
    # One `hat data` per folder at a time; a killed earlier run's temporary files go now.
    with exclusive(out_dir, "prepared data", "wait for it to finish or choose another --data-dir", folder=True):
        sweep_stale(out_dir, recursive=True)
        return _prepare(task, recipe, out_dir, from_dir, preprocessed, srcdict, tgtdict, seed, progress, mirror, workers,
                        bpe_merges, keep_text, started)


def _prepare(task, recipe, out_dir: Path, from_dir, preprocessed, srcdict, tgtdict, seed, progress, mirror, workers,
             bpe_merges, keep_text, started) -> dict[str, Any]:
    task_name = task.name
    src, tgt = task.src, task.tgt
    stages = Stages(progress)

    mode: str
    ctx = RecipeContext(out_dir, stages, workers, bpe_merges)
    if preprocessed:
        mode = "preprocessed"
        _install_preprocessed(recipe, out_dir, src, tgt, stages, mirror)
        splits = summarize_binarized(out_dir, src, tgt)
    else:
        published = None
        if recipe.generate is not None:
            mode = "generated"
            text = {split: {src: pair[0], tgt: pair[1]} for split, pair in recipe.generate(seed).items()}
        elif from_dir is not None and not _is_raw_layout(recipe, from_dir):
            mode = "text"
            text = _processed_text(from_dir, src, tgt)
        else:
            mode = "raw"
            orig = out_dir / "orig"
            if from_dir is None:
                _fetch_sources(recipe, orig, stages, mirror)
            # The authors' dictionary is fetched before the (long) processing so a failure shows early.
            if recipe.published_dict is not None and not (srcdict or tgtdict):
                published = find_file([from_dir], recipe.published_dict.filename) if from_dir else None
                if published is None:
                    published = download(recipe.published_dict, orig, mirror=mirror,
                                         progress=stages.bytes_stage(f"download {recipe.published_dict.filename}"))
            roots = [from_dir] if from_dir is not None else [orig]
            text = recipe.build(Workspace(roots, orig, ctx), ctx)
        if keep_text and mode in ("raw", "generated"):
            for split, sides in text.items():
                for lang, lines in sides.items():
                    write_lines(out_dir / "text" / f"{split}.{lang}", lines)
        dicts = build_dictionaries(recipe, src, tgt, text.get("train"), srcdict, tgtdict, published)
        splits = write_binarized(out_dir, text, dicts, src, tgt, stages)

    stages.finish()
    dictionaries = {}
    for lang in (src, tgt):
        d = Dictionary.load(out_dir / f"dict.{lang}.txt")
        dictionaries[lang] = {"size": len(d), "sha256": d.sha256()}
    summary = {
        "task": task_name,
        "dir": str(out_dir),
        "splits": splits,
        "source": mode,
        "dictionaries": dictionaries,
        "joined_dictionary": recipe.joined_dictionary,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": stages.timings,
    }
    settings = {
        "task": task_name,
        "seed": seed,
        "source": mode,
        "from_dir": str(from_dir) if from_dir else None,
        "srcdict": str(srcdict) if srcdict else None,
        "tgtdict": str(tgtdict) if tgtdict else None,
        "bpe_merges": ctx.merges_used,
        "bpe_codes": "code" if ctx.merges_used else None,
        "joined_dictionary": recipe.joined_dictionary,
        "nwords": recipe.nwords,
        "threshold": recipe.threshold,
        "recipe": recipe.notes,
        "src": src,
        "tgt": tgt,
    }
    atomic_write_text(out_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out_dir / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
    return summary
