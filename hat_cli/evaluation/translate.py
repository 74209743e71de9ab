"""`hat test`: translate a split of prepared data with a model directory and score it as HAT did.

docs/METHOD.md §7: ``generate.py --batch-size 128 --remove-bpe`` with beam 4 / lenpen 0.6 (WMT) or beam 5
(IWSLT), then "normal" tokenized BLEU with the compound split and SacreBLEU on detokenized text. The
references are the target side of the binarized split with BPE removed and ``<unk>`` escaped as
``<<unk>>`` (the ``T-`` lines of generate.py), hypotheses the best beam with BPE removed.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from hat_cli.core import paths
from hat_cli.core.checks import finite
from hat_cli.core.devices import resolve_device
from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, check_writable
from hat_cli.data.batching import collate, load_split, ordered_indices, token_batches
from hat_cli.data.dictionary import remove_bpe
from hat_cli.evaluation.bleu import sacre_bleu, tokenized_bleu
from hat_cli.model.decoding import SearchSettings, search
from hat_cli.model.directory import check_data_matches, load_model
from hat_cli.model.space import SubTransformerConfig
from hat_cli.tasks import Task

BPE_SYMBOL = "@@ "
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


@dataclass
class TestResult:
    task: str
    subset: str
    model: str
    bleu: float
    bleu_detail: str
    sacrebleu: float
    sacrebleu_signature: str
    sentences: int
    seconds: float  # translation only (what generate.py reports), not loading or scoring
    hypotheses: str  # file of tokenized hypotheses, BPE removed, in split order
    references: str
    settings: dict[str, Any] = field(default_factory=dict)
    tokens_generated: int = 0
    warnings: list[str] = field(default_factory=list)  # what could not be checked (said, not hidden)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- inputs
def sentence_batches(data, batch_size: Optional[int], max_tokens: Optional[int]) -> list[np.ndarray]:
    """generate.py's batches: sentences ordered by source then target length, at most ``batch_size``
    sentences (HAT used 128) or at most ``max_tokens`` padded tokens per batch."""
    if max_tokens is not None:
        return token_batches(data.src_sizes, data.tgt_sizes, max_tokens, required_batch_size_multiple=1)
    if batch_size is None or batch_size <= 0:
        raise HatError(f"--batch-size must be a positive number of sentences (got {batch_size}).")
    order = ordered_indices(data.src_sizes, data.tgt_sizes, shuffle=False, seed=1)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def to_text(dictionary, ids, escape_unk: bool = False) -> str:
    """fairseq 0.8's ``Dictionary.string`` + ``--remove-bpe``: every id but EOS, ``<unk>`` optionally
    escaped as ``<<unk>>`` (done for references)."""
    eos, unk = dictionary.eos(), dictionary.unk()
    words = ["<<unk>>" if (escape_unk and i == unk) else dictionary[i] for i in ids if i != eos]
    return remove_bpe(" ".join(words), BPE_SYMBOL)


# ------------------------------------------------------------------------------------- translate
def translate(
    model,
    data,
    batches: list[np.ndarray],
    config=None,
    settings=None,
    device: Any = "cpu",
    autocast_dtype: Any = None,
    on_batch: Optional[Callable[[int], None]] = None,
) -> tuple[list[list[int]], int]:
    """Best hypothesis (token ids without EOS) of every sentence, indexed by sentence id."""
    hypotheses: list[Optional[list[int]]] = [None] * len(data)
    generated = 0
    for indices in batches:
        batch = collate(data, indices)
        src = batch.src_tokens.to(device, non_blocking=True)
        best = search(model, src, config, settings, autocast_dtype=autocast_dtype).best()
        for sentence, tokens in zip(batch.ids.tolist(), best):
            hypotheses[sentence] = tokens
            generated += len(tokens) + 1
        if on_batch is not None:
            on_batch(len(indices))
    missing = [i for i, h in enumerate(hypotheses) if h is None]
    if missing:
        raise HatError(f"{len(missing)} sentences were not translated (e.g. sentence {missing[0]}).")
    return hypotheses, generated  # type: ignore[return-value]


@dataclass
class ScoredTranslation:
    hypotheses: list[str]  # split order, BPE removed
    references: list[str]
    bleu: Any  # hat_cli.bleu.BleuStats ("normal" tokenized BLEU)
    sacrebleu: Any  # hat_cli.bleu.SacreBleuResult
    seconds: float
    tokens_generated: int


def translate_and_score(
    model,
    data,
    batches: list[np.ndarray],
    config=None,
    settings=None,
    device: Any = "cpu",
    progress: Any = None,
    description: str = "translating",
) -> ScoredTranslation:
    """Translate every sentence of ``data`` (an in-memory model: usable by training or `hat demo`) and
    score it like HAT's test.sh; ``seconds`` covers translation only (CUDA synchronised)."""
    on_batch = None
    if progress is not None:
        job = progress.add_task(description, total=len(batches), info="")
        done = [0]

        def on_batch(n: int) -> None:
            done[0] += n
            progress.update(job, advance=1, info=f"{done[0]}/{len(data)} sentences")

    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    hyp_ids, generated = translate(model, data, batches, config, settings, device, None, on_batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    hypotheses = [to_text(data.tgt_dict, ids) for ids in hyp_ids]
    references = [to_text(data.tgt_dict, data.tgt[i].tolist(), escape_unk=True) for i in range(len(data))]
    return ScoredTranslation(hypotheses, references, tokenized_bleu(hypotheses, references), sacre_bleu(hypotheses, references), seconds, generated)


def evaluate(
    model_dir: Path,
    task: Task,
    data_dir: Path,
    subset: str = "test",
    beam: Optional[int] = None,
    lenpen: Optional[float] = None,
    batch_size: Optional[int] = 128,
    max_tokens: Optional[int] = None,
    max_len_a: float = 0.0,
    max_len_b: int = 200,
    min_len: int = 1,
    arch: Optional[SubTransformerConfig] = None,
    output: Optional[Path] = None,
    device: Optional[str] = None,
    precision: str = "fp32",
    progress: Any = None,
    label: Optional[str] = None,
) -> TestResult:
    """Translate ``subset`` of the task's prepared data with the model in ``model_dir`` and score it
    (docs/METHOD.md §7). ``arch`` runs that SubTransformer inside a SuperTransformer; ``label`` names the model
    in messages and outputs (default: the directory)."""
    label = label or str(model_dir)
    if subset not in ("test", "valid"):
        raise HatError(f"--subset must be test or valid (got '{subset}').")
    if precision not in PRECISIONS:
        raise HatError(f"--precision must be one of {', '.join(PRECISIONS)} (got '{precision}').")
    beam = task.beam if beam is None else beam
    lenpen = finite(task.lenpen if lenpen is None else lenpen, "--lenpen")
    finite(max_len_a, "--max-len-a")
    if beam < 1:
        raise HatError(f"--beam must be at least 1 (got {beam}).")
    if max_len_b < 1 and max_len_a <= 0:
        raise HatError("--max-len-a/--max-len-b allow no output at all; max length is a*source_length + b.")
    torch_device = resolve_device(device)
    hyp_path = Path(output) if output else paths.test_output(label, task.name, subset, task.tgt)
    check_writable(hyp_path)  # now, not after translating the whole split

    model, meta = load_model(model_dir)
    if meta.get("task") and meta["task"] != task.name:
        raise HatError(f"Model {label} was trained for task {meta['task']}, not {task.name}.")
    data = load_split(Path(data_dir), subset, task.src, task.tgt)
    warnings = check_data_matches(meta, data, label, model)
    if arch is not None and not model.dims.can_run(arch):
        raise HatError(f"The architecture does not fit inside model {label}.")
    config = arch

    # Half precision the way fairseq's --fp16 did it: the weights themselves, not autocast (which would
    # re-cast every weight at every decoding step); log-softmax and scores stay fp32.
    dtype = getattr(torch, PRECISIONS[precision]) if PRECISIONS[precision] else torch.float32
    model = model.to(device=torch_device, dtype=dtype).eval()
    settings = SearchSettings(beam=beam, lenpen=lenpen, max_len_a=max_len_a, max_len_b=max_len_b, min_len=min_len)
    batches = sentence_batches(data, None if max_tokens else batch_size, max_tokens)

    scored = translate_and_score(model, data, batches, config, settings, torch_device, progress, f"translating {subset}")
    hypotheses, references, normal, sacre = scored.hypotheses, scored.references, scored.bleu, scored.sacrebleu
    seconds, generated = scored.seconds, scored.tokens_generated

    ref_path = hyp_path.with_name(hyp_path.name.replace(".hyp.", ".ref.") if ".hyp." in hyp_path.name else hyp_path.name + ".ref")
    atomic_write_text(hyp_path, "".join(line + "\n" for line in hypotheses))
    atomic_write_text(ref_path, "".join(line + "\n" for line in references))
    result = TestResult(
        warnings=warnings,
        task=task.name,
        subset=subset,
        model=label,
        bleu=round(normal.score(), 4),
        bleu_detail=normal.result_string(),
        sacrebleu=round(sacre.score, 4),
        sacrebleu_signature=sacre.signature,
        sentences=len(data),
        seconds=round(seconds, 3),
        hypotheses=str(hyp_path),
        references=str(ref_path),
        tokens_generated=generated,
        settings={
            "beam": beam,
            "lenpen": lenpen,
            "max_len_a": max_len_a,
            "max_len_b": max_len_b,
            "min_len": min_len,
            "batch_size": None if max_tokens else batch_size,
            "max_tokens": max_tokens,
            "device": str(torch_device),
            "precision": precision,
            "data_dir": str(data_dir),
            "arch": config.to_dict() if config is not None else model.config.to_dict(),
        },
    )
    atomic_write_text(hyp_path.with_name(hyp_path.name + ".json"), json.dumps(result.to_json(), indent=2) + "\n")
    return result
