"""Layer 5: the one place where command-line words become objects.

Every command turns its words into things here, so a word means the same in every command:

- a task word (``wmt14.en-de``, or the published spelling ``wmt14ende``) -> :class:`~hat_cli.tasks.Task`;
- ``--arch`` (a YAML file, a SubTransformer model directory or a published name) -> a
  :class:`~hat_cli.model.space.SubTransformerConfig` that fits the task's SuperTransformer;
- MODEL (a model directory or a published name, pulled on first use) -> a model directory;
- ``--supernet`` (a directory or published name; by default the one `hat train-super` wrote here, else the
  task's published one) -> a SuperTransformer model directory;
- ``--hw`` -> a :class:`~hat_cli.latency.backends.Backend`, and with ``--threads``/``--remote``/``--backend`` the
  meter every measuring command times with (:func:`meter`); its predictor (``--predictor FILE``, else the
  one `hat fit-predictor` fitted here, else the published one the backend names) -> a predictor checked
  against the task and search space it will serve;
- ``--data-dir``, ``--csv``, ``--out`` and the other paths -> their defaults from :mod:`hat_cli.core.paths`;
- the shape the latency protocol times for a task (:func:`timed_shape`), decided here once.

A ``--device`` word is turned into a torch device by :func:`hat_cli.core.devices.resolve_device` when a model
is placed: training needs the rank of its process, known only once it has joined its process group.

No torch at import time: `hat zoo list` and `hat hw list` resolve words too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from hat_cli.core import paths
from hat_cli.core.checks import at_least, positive
from hat_cli.core.errors import HatError
from hat_cli.latency.backends import Backend, load_hardware
from hat_cli.latency.meters import LatencyMeter, MeterOptions
from hat_cli.latency.predictors.base import Predictor
from hat_cli.latency.predictors.fitting import load_predictor
from hat_cli.model.directory import read_metadata
from hat_cli.model.space import DECODER_LIST_FIELDS, ENCODER_LIST_FIELDS, SearchSpace, SubTransformerConfig, SuperShape
from hat_cli.search.budget import budget_margin
from hat_cli.search.rerank import RerankSettings
from hat_cli.search.run import SearchRequest, check_budget
from hat_cli.tasks import Task, find_task
from hat_cli.zoo import catalogue, store
from hat_cli.zoo.predictors import load_published_predictor

# `hat profile ARCH` of a YAML file with no --task: HAT's headline task.
DEFAULT_PROFILE_TASK = "wmt14.en-de"


# ======================================================================================= tasks and spaces
def task(word: str) -> Task:
    """A task by our name or by its spelling in published model names."""
    return find_task(word)


def space(word: str) -> SearchSpace:
    """A search space: the name of one in configs/ or a YAML file."""
    if word.endswith((".yml", ".yaml")) or Path(word).is_file():
        return SearchSpace.from_yaml(word)
    return SearchSpace.builtin(word)


def search_space(word: Optional[str], the_task: Task) -> SearchSpace:
    """``--space``; default: the task's search space."""
    return space(word or the_task.space)


def latency_space(the_task: Task) -> SearchSpace:
    """The space the task's latency datasets are sampled from."""
    return space(the_task.latency_space)


def timed_shape(the_task: Task) -> SuperShape:
    """The SuperTransformer shape a timed model of this task is built with, by every command that measures
    (collect-latency, profile --hw, search --verify): the latency space's, which its predictors learned."""
    return latency_space(the_task).shape


# ======================================================================================= architectures and models
def architecture(word: str | Path, the_task: Optional[Task] = None) -> SubTransformerConfig:
    """``--arch``: a YAML file, a SubTransformer model directory or a published name (or prefix). With a task,
    the architecture must fit the task's SuperTransformer."""
    path = Path(word)
    if path.is_dir():  # a model directory: its config.json records the architecture
        meta = read_metadata(path)
        if meta.get("kind") != "subtransformer":
            raise HatError(f"{path} holds a {meta.get('kind')}, not a SubTransformer architecture.")
        config = SubTransformerConfig.from_dict(meta["arch"])
    elif path.suffix in (".yml", ".yaml") or path.exists():
        config = SubTransformerConfig.from_yaml(path)
    else:
        config = catalogue.architecture_of(str(word))
    if the_task is not None:
        allocated = search_space(None, the_task)
        if not config.fits(allocated.shape):
            raise HatError(f"Architecture '{word}' does not fit the {the_task.name} SuperTransformer (search space '{allocated.name}').")
    return config


def task_of_architecture(arch_word: str, task_word: Optional[str]) -> Task:
    """The task an architecture is profiled for: ``--task``, else the one a model directory's config.json
    records, else a published model's own, else HAT's headline task."""
    if task_word:
        return task(task_word)
    if Path(arch_word).is_dir():
        recorded = read_metadata(Path(arch_word)).get("task")
        if isinstance(recorded, str) and recorded:
            return task(recorded)
    if not str(arch_word).endswith((".yml", ".yaml")) and not Path(arch_word).exists():
        try:
            return task(catalogue.resolve(arch_word).task)
        except HatError:
            pass  # not a published name: the architecture's own resolution says so
    return task(DEFAULT_PROFILE_TASK)


def model_dir(word: str | Path, progress: Any = None) -> tuple[Path, str]:
    """MODEL: a model directory, or a published name (or prefix) pulled on first use; (directory, label)."""
    path = Path(word)
    if path.is_dir():
        return path, str(path)
    if path.exists():
        raise HatError(f"{path} is a file; MODEL must be a model directory (model.safetensors + config.json) or a zoo name.")
    try:
        entry = catalogue.resolve(str(word))
    except HatError:
        raise HatError(f"'{word}' is neither a model directory nor a published model name (`hat zoo list`).") from None
    return store.pull(entry.name, progress=progress), entry.name


def supernet(word: Optional[str], the_task: Task, progress: Any = None) -> tuple[Path, str]:
    """``--supernet``: a directory or published name; by default the SuperTransformer `hat train-super` left
    here, else the task's published one; (directory, label)."""
    if word and Path(word).exists():
        return Path(word), str(word)
    trained = paths.supernet_model(the_task.name)
    if not word and (trained / "config.json").is_file():
        return trained, str(trained)
    try:
        entry = catalogue.resolve(word) if word else catalogue.supernet_for_task(the_task.name)
    except HatError:
        if word:
            raise HatError(f"SuperTransformer '{word}' is neither a model directory nor a published model name.") from None
        raise HatError(
            f"No SuperTransformer for task '{the_task.name}': none was published and none was trained here; train one with "
            f"`hat train-super --task {the_task.name}` (it writes {trained}) or pass --supernet DIR."
        ) from None
    if entry.kind != "supertransformer":
        raise HatError(f"'{entry.name}' is a SubTransformer; search needs a SuperTransformer (--supernet).")
    return store.pull(entry.name, progress=progress), entry.name


# ======================================================================================= hardware and predictors
def backend(word: str) -> Backend:
    """``--hw``: a hardware backend of an installed plugin."""
    return load_hardware().get(word)


def meter_options(remote: Optional[str] = None, remote_backend: Optional[str] = None, threads: Optional[int] = None,
                  mode: Optional[str] = None, seed: int = 0) -> MeterOptions:
    """The measuring words of the command line (``--threads``, ``--remote``, ``--backend``, ``--mode``): one
    MeterOptions, which every meter reads the same way (``--remote``/``--backend`` mean something to `remote` only)."""
    at_least(threads, 1, "--threads")
    return MeterOptions(mode=mode, seed=seed, threads=threads, remote=remote, remote_backend=remote_backend)


def meter(the_backend: Backend, the_task: Task, options: Optional[MeterOptions] = None,
          overrides: Optional[dict[str, Any]] = None) -> LatencyMeter:
    """The meter of ``--hw`` on the task's timed shape, what collect-latency, profile --hw and search --verify
    all measure with (``overrides``: protocol settings from the command line, None keeps the backend's)."""
    shape = latency_space(the_task)
    return LatencyMeter(the_backend, the_task, shape.shape, options=options, overrides=overrides, space=shape.name)


def predictor(word: Any, the_backend: Backend, the_task: Task, search: SearchSpace, progress: Any = None,
              option: Optional[str] = "--predictor") -> Predictor:
    """The latency predictor for ``the_backend`` on ``the_task``: ``--predictor FILE`` (or an object with
    ``.predict``, from library callers), else the one `hat fit-predictor` fitted here, else the published one
    the backend names for the task. Checked against the task and the search space it will serve. ``option``: the
    command's option for a predictor file, if it has one (named in the sentence when none is found)."""
    hw, name = the_backend.name, the_task.name
    if hasattr(word, "predict"):
        return word
    if word:
        if not Path(word).exists():
            raise HatError(f"Latency predictor {word} does not exist; make one with `hat fit-predictor --hw {hw} --task {name}`.")
        found, label = load_predictor(word), str(word)
    elif paths.latency_predictor(name, hw).exists():
        label = str(paths.latency_predictor(name, hw))
        found = load_predictor(label)
    elif name in the_backend.published_predictors:
        label = the_backend.published_predictors[name]
        found = load_published_predictor(label, progress=progress)
    else:
        raise HatError(
            f"No latency predictor for hardware '{hw}' and task '{name}'; make one with "
            f"`hat collect-latency --hw {hw} --task {name}` then `hat fit-predictor --hw {hw} --task {name}`"
            + (f", or pass {option} FILE." if option else ".")
        )
    check_predictor(found, label, the_task, search, hw)
    return found


def check_predictor(found: Any, label: str, the_task: Task, search: SearchSpace, hw: Optional[str] = None) -> None:
    """Refuse a predictor fitted for another task or hardware, on per-layer values that do not span the
    space's choices (it would extrapolate), or one that cannot give the space's architectures a finite
    positive latency (a NaN passes every budget)."""
    training = getattr(found, "training", None) or {}
    fitted_for = training.get("task")
    if fitted_for and fitted_for != the_task.name:
        raise HatError(f"Latency predictor {label} was fitted on measurements for task '{fitted_for}', not '{the_task.name}'.")
    measured_on = training.get("hardware")
    # A meter may qualify its backend's name with what it measures through (remote-cpu: `remote`, measuring
    # with the server's `cpu`), so a predictor of remote-cpu serves --hw remote.
    if hw and measured_on and measured_on != hw and not measured_on.startswith(f"{hw}-"):
        raise HatError(f"Latency predictor {label} was fitted on measurements of '{measured_on}', not '{hw}'; "
                       f"pass --hw {measured_on} or a predictor of '{hw}'.")
    probes = [search.smallest(), search.largest()]
    try:
        values = [float(v) for v in found.predict(probes)]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise HatError(f"Latency predictor {label} cannot predict architectures of search space '{search.name}' "
                       f"({type(exc).__name__}: {exc}); was it fitted for another space?") from None
    if len(values) != len(probes) or not all(math.isfinite(v) for v in values):
        raise HatError(f"Latency predictor {label} predicts {values} ms for the smallest and largest architectures "
                       f"of search space '{search.name}'; refit it with `hat fit-predictor`.")
    knots = getattr(found, "knots", None) or {}
    for field in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS:
        if field == "decoder_arbitrary_ende_attn" or not knots.get(field):
            continue
        low, high = min(knots[field]), max(knots[field])
        outside = [v for v in search.choices[field] if not low <= v <= high]
        if outside:
            raise HatError(
                f"Latency predictor {label} saw {field} between {low:g} and {high:g}, but search space '{search.name}' "
                f"allows {outside[0]}; measure more architectures of the task's latency space and fit it again."
            )


def predictor_label(word: Any) -> str:
    """How search.json names the predictor that ``word`` resolved to."""
    if word is None:
        return "hardware default"
    return str(word) if not hasattr(word, "predict") else type(word).__name__


def latency_csv(word: Optional[str | Path], the_backend: Backend, the_task: Task, hardware: Optional[str] = None) -> Path:
    """``--csv`` of `hat collect-latency`; default latency_dataset/<task>_<hw>.csv (``hardware``: the name the meter
    records when it is not the backend's, e.g. remote-cpu)."""
    return Path(word) if word else paths.latency_csv(the_task.name, hardware or the_backend.name)


def fit_inputs(dataset: Optional[Path], hw: Optional[str], task_word: Optional[str], out: Optional[Path]
               ) -> tuple[Path, Path, Optional[Backend]]:
    """`hat fit-predictor`'s dataset, output directory and backend (when named): ``--dataset`` or the default
    CSV of ``--hw`` and ``--task``; ``--out`` or the default predictor next to it."""
    if dataset is not None and (hw or task_word):
        raise HatError("Give --dataset CSV, or --hw and --task for the default latency_dataset/<task>_<hw>.csv, not both "
                       "(a CSV of hat's records its hardware and task; --lat-norm sets the normalisation).")
    the_backend = backend(hw) if hw else None
    if dataset is None:
        if not (the_backend and task_word):
            raise HatError("Give --dataset CSV, or --hw and --task for the default latency_dataset/<task>_<hw>.csv.")
        name = task(task_word).name
        return default_latency_csv(name, the_backend.name), Path(out) if out else paths.latency_predictor(name, the_backend.name), the_backend
    return Path(dataset), Path(out) if out else Path(dataset).with_suffix(".predictor"), the_backend


def default_latency_csv(task_name: str, hw: str) -> Path:
    """latency_dataset/<task>_<hw>.csv; where that is missing, the one CSV a meter named <hw>-<device> wrote
    (`--hw remote` collects into <task>_remote-<its backend>.csv). The predictor keeps the plain <hw> name, which
    is where `hat search --hw <hw>` looks."""
    plain = paths.latency_csv(task_name, hw)
    if plain.exists():
        return plain
    qualified = sorted(plain.parent.glob(f"{task_name}_{hw}-*.csv"))
    if len(qualified) > 1:
        raise HatError(f"Several latency datasets for '{hw}' on task '{task_name}' ({', '.join(str(q) for q in qualified)}); "
                       f"choose one with --dataset.")
    return qualified[0] if qualified else plain


def lat_norm(given: Optional[float], the_backend: Optional[Backend], dataset: Path) -> float:
    """HAT's latency normalisation: ``--lat-norm``, else the backend's, else that of the backend named in the
    file name (HAT's CSVs are <task>_<cpu|gpu>_<device>; the longest name wins, so "raspberrypi" beats "cpu"),
    else 300 ms."""
    if given is not None:
        return positive(given, "--lat-norm")
    if the_backend is not None:
        return the_backend.lat_norm
    named = [b for b in load_hardware().backends.values() if b.name in Path(dataset).name]
    return max(named, key=lambda b: len(b.name)).lat_norm if named else 300.0


# ======================================================================================= data and outputs
def data_dir(word: Optional[str | Path], the_task: Task, must_exist: bool = False) -> Path:
    """``--data-dir``; default data/<task>, where `hat data` writes."""
    found = Path(word) if word else paths.data_dir(the_task.name)
    if must_exist and not found.is_dir():
        raise HatError(f"No prepared data for task '{the_task.name}' at {found}; make it with `hat data --task {the_task.name}` or pass --data-dir.")
    return found


def architecture_name(arch_word: str) -> str:
    """A file-name-safe name for an ``--arch`` word: a YAML file's stem, else the word without slashes."""
    return Path(arch_word).stem if Path(arch_word).suffix in (".yml", ".yaml") else str(arch_word).replace("/", "_")


def train_save_dir(word: Optional[str | Path], the_task: Task, arch_word: Optional[str] = None) -> Path:
    """``--save-dir`` of `hat train-super` (checkpoints/<task>/supertransformer) and `hat train-sub`
    (checkpoints/<task>/subtransformer/<architecture name>)."""
    if word:
        return Path(word)
    if arch_word is None:
        return paths.supernet_dir(the_task.name)
    return paths.subtransformer_dir(the_task.name, architecture_name(arch_word))


# ======================================================================================= a search
def search_request(
    task_word: str,
    hw: str,
    budget_ms: float,
    seed: int,
    supernet_word: Optional[str] = None,
    data_dir_word: Optional[str] = None,
    predictor_word: Any = None,
    valid_subset: Optional[int] = None,
    max_tokens: Optional[int] = None,
    precision: Optional[str] = None,
    device: Optional[str] = None,
    out: Optional[str | Path] = None,
    verify: bool = False,
    fresh: bool = False,
    progress: Any = None,
    margin: Optional[float] = None,
    rerank: Optional[RerankSettings] = None,
    verify_rounds: int = 5,
    meter_options: Optional[MeterOptions] = None,
) -> SearchRequest:
    """`hat search`'s words as a :class:`SearchRequest`. The cheap inputs come first, so that an impossible
    budget fails before anything is loaded or downloaded: predictor, budget (with the algorithm's ``seed``),
    data, SuperTransformer."""
    positive(budget_ms, "The latency budget")
    at_least(max_tokens, 1, "--max-tokens")
    at_least(valid_subset, 1, "--valid-subset")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise HatError(f"--out {out} is a file, but a directory is expected there.")
    the_task = task(task_word)
    the_space = search_space(None, the_task)
    the_backend = backend(hw)
    the_predictor = predictor(predictor_word, the_backend, the_task, the_space, progress)
    the_margin = budget_margin(the_predictor, margin)
    min_latency = check_budget(the_space, the_predictor, budget_ms, seed, the_task.name, hw, the_margin)
    data = data_dir(data_dir_word, the_task, must_exist=True)
    supernet_dir, supernet_label = supernet(supernet_word, the_task, progress)
    return SearchRequest(
        task=the_task, space=the_space, hardware=the_backend.name, budget_ms=budget_ms, predictor=the_predictor,
        data_dir=data, supernet_dir=supernet_dir, supernet_label=supernet_label, predictor_label=predictor_label(predictor_word),
        valid_subset=valid_subset, max_tokens=max_tokens, precision=precision, device=device,
        out=Path(out) if out else None, verify=the_backend if verify else None,
        timed_shape=timed_shape(the_task) if verify else None, fresh=fresh, min_latency_ms=min_latency,
        margin=the_margin, rerank=rerank or RerankSettings(), verify_rounds=verify_rounds,
        meter_options=meter_options,
    )


# ======================================================================================= an export
def export_source(word: str, the_task: Task, arch_word: Optional[str] = None, seed: int = 1, progress: Any = None
                  ) -> tuple[Any, SubTransformerConfig, str, str]:
    """MODEL_OR_ARCH of `hat export`: (model, architecture, "trained" or "random", label). An architecture file
    gets seeded random weights at the task's timed shape and vocabulary (all latency needs); a model directory or
    a published name its trained weights (``--arch`` picks a SubTransformer inside a SuperTransformer)."""
    # Lazily: torch (this module resolves words for commands that never load a model).
    import torch
    from hat_cli.model.directory import load_model
    from hat_cli.model.transformer import TransformerModel

    path = Path(word)
    if path.is_file() or path.suffix in (".yml", ".yaml"):
        if arch_word is not None:
            raise HatError("--arch picks a SubTransformer inside a model directory; an architecture file needs no --arch.")
        config = architecture(word, the_task)
        shape = timed_shape(the_task)
        if not config.fits(shape):
            shape = search_space(None, the_task).shape
        src_vocab, tgt_vocab = the_task.timed_vocab_sizes
        torch.manual_seed(seed)
        model = TransformerModel.subtransformer(config, shape, src_vocab, tgt_vocab, the_task.share_all_embeddings)
        return model.eval(), config, "random", str(path)
    directory, label = model_dir(word, progress)
    model, meta = load_model(directory, device="cpu")
    if meta.get("task") and meta["task"] != the_task.name:
        raise HatError(f"Model {label} was trained for task {meta['task']}, not {the_task.name}.")
    config = architecture(arch_word) if arch_word is not None else model.config
    if not model.dims.can_run(config):
        raise HatError(f"Architecture {arch_word} does not fit inside model {label}.")
    return model, config, "trained", label
