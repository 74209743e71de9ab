"""The published HAT models by name: `model_zoo.toml`, name resolution, and local copies.

`model_zoo.toml` (shipped inside `hat_configs`) is the one table of facts: 44 SubTransformers,
4 SuperTransformers and 8 latency predictors under their published names. Any unambiguous prefix of a
name resolves. `pull` makes a model directory (`model.safetensors` + `config.json`) under
`$HAT_HOME/models/<name>`: from the Hub when it has a copy, otherwise from the authors' original
checkpoint, converted on the fly. No torch at import time (the CLI imports this at start-up).
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hat_cli.errors import HatError
from hat_cli.space import SubTransformerConfig, SuperShape

ZOO_FILE_ENV = "HAT_ZOO_FILE"  # another table (a lab's own mirror of the zoo, or a test's)
HAT_HOME_ENV = "HAT_HOME"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RECORD_FILE = "zoo.json"  # where a pulled model came from


@dataclass(frozen=True)
class HubFile:
    """Where hat's safetensors copy lives on the Hugging Face Hub."""

    repo: str
    filename: str
    revision: str = "main"
    sha256: str = ""  # empty until published

    @property
    def published(self) -> bool:
        return bool(self.sha256)


@dataclass(frozen=True)
class ZooModel:
    name: str
    kind: str  # "subtransformer" | "supertransformer"
    task: str
    super_shape: SuperShape
    share_all_embeddings: bool
    original_url: str
    hub: HubFile
    params: int | None = None
    flops: int | None = None
    hardware: str | None = None
    latency_ms: float | None = None
    bleu: float | None = None
    sacrebleu: float | None = None
    predictor: str | None = None
    search_space: str | None = None
    same_architecture_as: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)  # task_label, hardware_label, latency_label, hat_arch, hat_config
    arch_keys: Mapping[str, Any] | None = None  # HAT's 10 YAML keys (SubTransformers only)

    @property
    def is_subtransformer(self) -> bool:
        return self.kind == "subtransformer"

    def architecture(self) -> SubTransformerConfig:
        if self.arch_keys is None:
            raise HatError(
                f"'{self.name}' is a SuperTransformer and has no single architecture; "
                "use one of the SubTransformer names (hat zoo list) or a YAML file."
            )
        return SubTransformerConfig.from_mapping(dict(self.arch_keys), self.name)

    def summary(self) -> dict[str, Any]:
        """One row of `hat zoo list --json` (CLI.md)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "task": self.task,
            "hardware": self.hardware,
            "latency_ms": self.latency_ms,
            "bleu": self.bleu,
            "sacrebleu": self.sacrebleu,
            "params": self.params,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything the zoo knows about the model (`hat zoo info --json`)."""
        doc = self.summary() | {
            "flops": self.flops,
            "predictor": self.predictor,
            "search_space": self.search_space,
            "same_architecture_as": self.same_architecture_as,
            "share_all_embeddings": self.share_all_embeddings,
            "super_shape": self.super_shape.to_dict(),
            "arch": dict(self.arch_keys) if self.arch_keys is not None else None,
            "original_url": self.original_url,
            "hub": {
                "repo": self.hub.repo,
                "filename": self.hub.filename,
                "revision": self.hub.revision,
                "sha256": self.hub.sha256,
                "published": self.hub.published,
            },
        }
        return doc | dict(self.labels)


@dataclass(frozen=True)
class ZooPredictor:
    """One of HAT's shipped latency predictors (HAT-SPEC §5)."""

    name: str
    task: str
    hardware: str
    feature_norm: tuple[float, ...]
    lat_norm: float
    original_url: str
    hub: HubFile

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "hardware": self.hardware,
            "feature_norm": list(self.feature_norm),
            "lat_norm": self.lat_norm,
            "original_url": self.original_url,
            "hub": {"repo": self.hub.repo, "filename": self.hub.filename, "revision": self.hub.revision, "sha256": self.hub.sha256},
        }


@dataclass(frozen=True)
class Zoo:
    path: Path
    models: Mapping[str, ZooModel]
    predictors: Mapping[str, ZooPredictor]

    def select(self, task: str | None = None, hardware: str | None = None, kind: str | None = None) -> list[ZooModel]:
        task = _task_name(task) if task else None
        return [
            m
            for m in self.models.values()
            if (task is None or m.task == task)
            and (hardware is None or m.hardware == hardware)
            and (kind is None or m.kind == kind)
        ]

    def resolve(self, query: str) -> ZooModel:
        """The model named ``query`` or the only one whose name starts with it ('HAT_' may be left out)."""
        query = str(query).strip()
        if query in self.models:
            return self.models[query]
        for prefix in (query, f"HAT_{query}"):
            candidates = [name for name in self.models if name.startswith(prefix)]
            if len(candidates) == 1:
                return self.models[candidates[0]]
            if len(candidates) > 1:
                shown = ", ".join(candidates[:12]) + (f" and {len(candidates) - 12} more" if len(candidates) > 12 else "")
                raise HatError(f"'{query}' matches {len(candidates)} published models: {shown}; give more of the name.")
        raise HatError(f"'{query}' is not a published model name or prefix; `hat zoo list` shows the {len(self.models)} names.")


def _task_name(task: str) -> str:
    """Our task name from either spelling ('wmt14.en-de' or the published 'wmt14ende')."""
    from hat_cli.tasks import TASKS, get_task, task_for_zoo_key

    if task in TASKS:
        return task
    try:
        return task_for_zoo_key(task).name
    except HatError:
        return get_task(task).name  # raises the standard "unknown task" sentence


# ------------------------------------------------------------------------------------- loading
def default_zoo_path() -> Path:
    override = os.environ.get(ZOO_FILE_ENV)
    if override:
        return Path(override)
    from hat_cli.space import CONFIG_DIR

    return CONFIG_DIR / "model_zoo.toml"


_CACHE: dict[tuple[str, float], Zoo] = {}


def load_zoo(path: str | Path | None = None) -> Zoo:
    path = Path(path) if path is not None else default_zoo_path()
    try:
        stamp = path.stat().st_mtime
    except FileNotFoundError:
        raise HatError(f"The model zoo table {path} does not exist.") from None
    key = (str(path), stamp)
    if key not in _CACHE:
        _CACHE[key] = _parse_zoo(path)
    return _CACHE[key]


def _hub(data: Mapping[str, Any], where: str) -> HubFile:
    try:
        return HubFile(
            repo=str(data["repo"]),
            filename=str(data.get("filename", MODEL_FILE)),
            revision=str(data.get("revision") or "main"),
            sha256=str(data.get("sha256", "")).lower(),
        )
    except KeyError:
        raise HatError(f"{where} lacks hub.repo.") from None


def _parse_zoo(path: Path) -> Zoo:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise HatError(f"The model zoo table {path} is not valid TOML: {exc}.") from None
    label_keys = ("task_label", "hardware_label", "latency_label", "hat_arch", "hat_config")
    models: dict[str, ZooModel] = {}
    for name, m in data.get("models", {}).items():
        where = f"{path}: model '{name}'"
        try:
            models[name] = ZooModel(
                name=name,
                kind=m["kind"],
                task=m["task"],
                super_shape=SuperShape(**m["super_shape"]),
                share_all_embeddings=bool(m["share_all_embeddings"]),
                original_url=m.get("original_url", ""),
                hub=_hub(m.get("hub", {}), where),
                params=m.get("params"),
                flops=m.get("flops"),
                hardware=m.get("hardware"),
                latency_ms=m.get("latency_ms"),
                bleu=m.get("bleu"),
                sacrebleu=m.get("sacrebleu"),
                predictor=m.get("predictor"),
                search_space=m.get("search_space"),
                same_architecture_as=m.get("same_architecture_as"),
                labels={k: m[k] for k in label_keys if k in m},
                arch_keys=m.get("arch"),
            )
        except (KeyError, TypeError) as exc:
            raise HatError(f"{where} is incomplete ({exc}).") from None
    predictors: dict[str, ZooPredictor] = {}
    for name, p in data.get("predictors", {}).items():
        where = f"{path}: predictor '{name}'"
        try:
            predictors[name] = ZooPredictor(
                name=name,
                task=p["task"],
                hardware=p["hardware"],
                feature_norm=tuple(p["feature_norm"]),
                lat_norm=p["lat_norm"],
                original_url=p.get("original_url", ""),
                hub=_hub(p.get("hub", {}), where),
            )
        except (KeyError, TypeError) as exc:
            raise HatError(f"{where} is incomplete ({exc}).") from None
    return Zoo(path=path, models=models, predictors=predictors)


# ----------------------------------------------------------------------------- the public API
def models(task: str | None = None, hardware: str | None = None, kind: str | None = None) -> list[ZooModel]:
    return load_zoo().select(task, hardware, kind)


def resolve(name_or_prefix: str) -> ZooModel:
    return load_zoo().resolve(name_or_prefix)


def architecture_of(name: str) -> SubTransformerConfig:
    """The architecture of a published SubTransformer (name or unambiguous prefix)."""
    return resolve(name).architecture()


def supernet_for_task(task_name: str) -> ZooModel:
    """The task's published SuperTransformer."""
    task = _task_name(task_name)
    found = load_zoo().select(task=task, kind="supertransformer")
    if not found:
        raise HatError(f"No SuperTransformer was published for task '{task}'; train one with `hat train-super`.")
    return found[0]


def published_predictor(hardware: str, task: str) -> ZooPredictor:
    """The shipped HAT latency predictor for this hardware and task."""
    zoo = load_zoo()
    task = _task_name(task)
    for predictor in zoo.predictors.values():
        if predictor.hardware == hardware and predictor.task == task:
            return predictor
    known = ", ".join(f"{p.hardware}/{p.task}" for p in zoo.predictors.values())
    raise HatError(f"HAT published no latency predictor for {hardware} on {task}; published ones: {known}.")


def resolve_predictor(name: str) -> ZooPredictor:
    zoo = load_zoo()
    if name in zoo.predictors:
        return zoo.predictors[name]
    raise HatError(f"'{name}' is not a published latency predictor; known: {', '.join(zoo.predictors)}.")


# ------------------------------------------------------------------------------- local copies
def hat_home() -> Path:
    return Path(os.environ.get(HAT_HOME_ENV) or Path.home() / ".cache" / "hat")


def models_dir() -> Path:
    return hat_home() / "models"


def local_model_dir(name: str) -> Path:
    return models_dir() / name


def is_complete(directory: Path) -> bool:
    return (directory / MODEL_FILE).is_file() and (directory / CONFIG_FILE).is_file() and (directory / RECORD_FILE).is_file()


def pulled_record(name: str) -> dict[str, Any] | None:
    """What `pull` recorded about a local copy (None when not pulled)."""
    directory = local_model_dir(resolve(name).name)
    if not is_complete(directory):
        return None
    return json.loads((directory / RECORD_FILE).read_text(encoding="utf-8")) | {"path": str(directory)}


def pull(name: str, *, force: bool = False, progress: Any = None) -> Path:
    """A local model directory for ``name`` (usable by ``hat_cli.modelio.load_model``).

    Order: an existing local copy; the Hub (its cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, the pinned
    revision; sha256 verified when published); the original checkpoint URL, converted on the fly.
    """
    return pull_with_record(name, force=force, progress=progress)[0]


def pull_with_record(name: str, *, force: bool = False, progress: Any = None) -> tuple[Path, dict[str, Any]]:
    from hat_cli import hub

    entry = resolve(name)
    target = local_model_dir(entry.name)
    if is_complete(target) and not force:
        return target, json.loads((target / RECORD_FILE).read_text(encoding="utf-8"))
    try:
        # The weights first, checked before anything else is fetched: a mismatch leaves no file behind.
        files = hub.download_files(entry.hub, [entry.hub.filename], progress=progress)
        digest = hub.verify_sha256(files[entry.hub.filename], entry.hub.sha256, what=f"{entry.hub.repo}/{entry.hub.filename}")
        files |= hub.download_files(entry.hub, [CONFIG_FILE], progress=progress)
        staged = _stage_hub_copy(entry, files, digest)
    except hub.HubMissing as missing:
        if hub.offline_mode():
            raise HatError(
                f"'{entry.name}' is not in the local caches and HF_HUB_OFFLINE is set ({missing}); "
                "pull it once with network access."
            ) from None
        if not entry.original_url:
            raise HatError(f"The Hub has no copy of '{entry.name}' ({missing}) and the zoo lists no original URL.") from None
        staged = _stage_original_copy(entry, progress, reason=str(missing))
    return _install(staged, target), json.loads((target / RECORD_FILE).read_text(encoding="utf-8"))


def _staging_dir(entry: ZooModel) -> Path:
    import tempfile

    models_dir().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=models_dir()))


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    from hat_cli.atomic import atomic_write_text

    atomic_write_text(directory / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def _stage_hub_copy(entry: ZooModel, files: dict[str, Path], digest: str) -> Path:
    from hat_cli import hub

    model_file = files[entry.hub.filename]
    staged = _staging_dir(entry)
    try:
        _link_or_copy(model_file, staged / MODEL_FILE)
        _link_or_copy(files[CONFIG_FILE], staged / CONFIG_FILE)
        _write_record(
            staged,
            {
                "name": entry.name,
                "source": "hub",
                "repo": entry.hub.repo,
                "revision": entry.hub.revision,
                "commit": hub.snapshot_commit(model_file),
                "sha256": digest,
            },
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def _stage_original_copy(entry: ZooModel, progress: Any, reason: str) -> Path:
    from hat_cli import convert, hub
    from hat_cli.atomic import temporary_sibling

    downloads = hat_home() / "downloads"
    checkpoint = temporary_sibling(downloads / f"{entry.name}.pt")
    staged = _staging_dir(entry)
    try:
        url = hub.direct_download_url(entry.original_url)
        hub.download_url(url, checkpoint, progress=progress, description=f"{entry.name} (original)")
        arch = entry.architecture() if entry.is_subtransformer else None
        convert.convert_original(
            checkpoint,
            staged,
            arch=arch,
            task=entry.task,
            expected_shape=entry.super_shape,
            extra_metadata={"zoo_name": entry.name},
        )
        digest = hub.file_sha256(staged / MODEL_FILE)
        _write_record(
            staged,
            {
                "name": entry.name,
                "source": "original",
                "url": entry.original_url,
                "original_sha256": hub.file_sha256(checkpoint),
                "hub_miss": reason,
                "sha256": digest,
            },
        )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    finally:
        checkpoint.unlink(missing_ok=True)
    return staged


def _install(staged: Path, target: Path) -> Path:
    """Move a complete staging directory into place in one rename (a reader never sees half a model)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        shutil.rmtree(staged, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)
        if not is_complete(target):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link out of the Hub cache when possible (no second copy on disk), else copy."""
    source = Path(os.path.realpath(source))
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def names(models_: Iterable[ZooModel]) -> list[str]:
    return [m.name for m in models_]


# ---------------------------------------------------------------------------------- publishing
def _entry_for_directory(meta: Mapping[str, Any], zoo_name: str | None) -> ZooModel | None:
    name = zoo_name or meta.get("zoo_name")
    return resolve(name) if name else None


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def model_card(directory: str | Path, zoo_name: str | None = None) -> str:
    """README.md for a model directory: what it is, its published numbers (when a zoo model), how to use it."""
    from hat_cli.modelio import read_metadata

    directory = Path(directory)
    meta = read_metadata(directory)
    entry = _entry_for_directory(meta, zoo_name)
    from hat_cli.tasks import TASKS

    task = TASKS.get(meta.get("task") or (entry.task if entry else ""))
    title = entry.name if entry else directory.resolve().name
    front = ["---", "library_name: hat-cli", "tags:", "- translation", "- hardware-aware-transformers", "- hat"]
    if task is not None:
        front += ["language:", f"- {task.src}", f"- {task.tgt}"]
    front += ["pipeline_tag: translation", "---", ""]
    rows = [("kind", meta.get("kind", "?")), ("task", task.name if task else (meta.get("task") or "unknown"))]
    if entry is not None and entry.is_subtransformer:
        rows += [
            ("hardware", f"{entry.hardware} ({entry.labels.get('hardware_label', '')})".replace(" ()", "")),
            ("latency", f"{entry.labels.get('latency_label') or f'{entry.latency_ms} ms'} (measured by the HAT authors)"),
            ("BLEU", f"{entry.bleu}"),
            ("SacreBLEU", f"{entry.sacrebleu}"),
            ("parameters (non-embedding)", _count(entry.params)),
            ("FLOPs (without last layer)", _count(entry.flops)),
        ]
    elif entry is not None:
        rows += [("search space", entry.search_space or "?"), ("parameters (non-embedding)", _count(entry.params))]
    else:
        rows += [("hardware", "not recorded"), ("latency", "not measured"), ("BLEU", "not measured")]
    rows += [("source vocabulary", str(meta.get("src_vocab_size"))), ("target vocabulary", str(meta.get("tgt_vocab_size")))]
    lines = front + [f"# {title}", ""]
    lines.append(
        "A Hardware-Aware Transformer (HAT, Wang et al., ACL 2020) in the `hat-cli` format: "
        "`model.safetensors` + `config.json`."
        + (" Weights converted from the authors' released checkpoint." if entry is not None else "")
    )
    lines += ["", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    if meta.get("kind") == "subtransformer" and meta.get("arch"):
        arch = SubTransformerConfig.from_dict(meta["arch"])
        lines += ["## Architecture (HAT's 10 keys)", "", "```yaml", arch.to_yaml().rstrip(), "```", ""]
    usage_name = entry.name if entry else "<this repository's model directory>"
    lines += ["## Use", "", "```bash", f"hat zoo pull {usage_name}", f"hat test {usage_name} --task {task.name if task else 'TASK'}", "```", ""]
    if entry is not None and entry.original_url:
        lines += [f"Original checkpoint: {entry.original_url}", ""]
    lines += [
        "Citation: Hanrui Wang, Zhanghao Wu, Zhijian Liu, Han Cai, Ligeng Zhu, Chuang Gan and Song Han. "
        "HAT: Hardware-Aware Transformers for Efficient Natural Language Processing. ACL 2020.",
        "",
    ]
    return "\n".join(lines)


def push(directory: str | Path, repo_id: str, private: bool = False, zoo_name: str | None = None) -> dict[str, Any]:
    """Publish a model directory (weights, config, generated model card) to the Hub as one commit."""
    import tempfile

    from hat_cli import hub
    from hat_cli.modelio import read_metadata

    directory = Path(directory)
    read_metadata(directory)  # refuses anything that is not a hat model directory
    if not (directory / MODEL_FILE).is_file():
        raise HatError(f"{directory} has no {MODEL_FILE} to publish.")
    hub.check_repo_id(repo_id)
    card = model_card(directory, zoo_name)
    with tempfile.TemporaryDirectory(prefix="hat-push-") as tmp:
        staged = Path(tmp)
        for name in (MODEL_FILE, CONFIG_FILE):
            _link_or_copy(directory / name, staged / name)
        (staged / "README.md").write_text(card, encoding="utf-8")
        result = hub.push_folder(staged, repo_id, private=private)
    result["sha256"] = hub.file_sha256(directory / MODEL_FILE)
    result["files"] = [MODEL_FILE, CONFIG_FILE, "README.md"]
    return result


# ------------------------------------------------------------------------------ latency predictors
def predictors_dir() -> Path:
    return hat_home() / "predictors"


def pull_predictor(name: str, *, force: bool = False, progress: Any = None) -> tuple[Path, dict[str, Any]]:
    """A shipped HAT latency predictor as safetensors (HAT's own state-dict names, fp32), with
    ``lat_norm`` / ``feature_norm`` in its metadata: from the Hub, else the original `.pt` from HAT's
    GitHub repository, read with the restricted unpickler."""
    from hat_cli import hub

    entry = resolve_predictor(name)
    target = predictors_dir() / f"{entry.name}.safetensors"
    record_path = target.with_suffix(".json")
    if target.is_file() and record_path.is_file() and not force:
        return target, json.loads(record_path.read_text(encoding="utf-8"))
    try:
        files = hub.download_files(entry.hub, [entry.hub.filename], progress=progress)
        source_file = files[entry.hub.filename]
        digest = hub.verify_sha256(source_file, entry.hub.sha256, what=f"{entry.hub.repo}/{entry.hub.filename}")
        from hat_cli.atomic import temporary_sibling

        tmp = temporary_sibling(target)
        try:
            shutil.copyfile(os.path.realpath(source_file), tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        record = {"name": entry.name, "source": "hub", "repo": entry.hub.repo, "sha256": digest}
    except hub.HubMissing as missing:
        if hub.offline_mode():
            raise HatError(f"Predictor '{entry.name}' is not cached and HF_HUB_OFFLINE is set ({missing}).") from None
        record = _predictor_from_original(entry, target, progress) | {"hub_miss": str(missing)}
    from hat_cli.atomic import atomic_write_text

    atomic_write_text(record_path, json.dumps(record | {"lat_norm": entry.lat_norm, "feature_norm": list(entry.feature_norm)}, indent=2) + "\n")
    return target, json.loads(record_path.read_text(encoding="utf-8"))


def _predictor_from_original(entry: ZooPredictor, target: Path, progress: Any) -> dict[str, Any]:
    from safetensors.torch import save_file

    from hat_cli import convert, hub
    from hat_cli.atomic import temporary_sibling

    download = temporary_sibling(hat_home() / "downloads" / f"{entry.name}.pt")
    tmp = temporary_sibling(target)
    try:
        hub.download_url(hub.direct_download_url(entry.original_url), download, progress=progress, description=entry.name)
        state = convert.read_original_predictor(download)
        metadata = {"format": "hat-cli", "kind": "hat-latency-predictor", "lat_norm": str(entry.lat_norm),
                    "feature_norm": json.dumps(list(entry.feature_norm)), "task": entry.task, "hardware": entry.hardware}
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, target)
        return {"name": entry.name, "source": "original", "url": entry.original_url,
                "original_sha256": hub.file_sha256(download), "sha256": hub.file_sha256(target)}
    finally:
        download.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def load_published_predictor(hardware: str, task: str, progress: Any = None):
    """The shipped HAT predictor for (hardware, task) as a hat predictor object (hat_cli.predictor)."""
    from safetensors.torch import load_file

    entry = published_predictor(hardware, task)
    path, _ = pull_predictor(entry.name, progress=progress)
    try:
        from hat_cli.predictor import from_published_hat_state_dict
    except ImportError:
        raise HatError("This hat has no hat_cli.predictor.from_published_hat_state_dict to load HAT's predictors with.") from None
    return from_published_hat_state_dict(load_file(str(path)), lat_norm=entry.lat_norm, feature_norm=list(entry.feature_norm))


# ------------------------------------------------------------------ helpers for the other commands
def model_dir_for(spec: str | Path, progress: Any = None) -> Path:
    """MODEL arguments of `hat test` / `hat profile` / `hat search --supernet`: a model directory, or a
    published name (or prefix), pulled on first use."""
    path = Path(spec)
    if path.is_dir():
        return path
    try:
        entry = resolve(str(spec))
    except HatError:
        raise HatError(f"'{spec}' is neither a model directory nor a published model name (see `hat zoo list`).") from None
    return pull(entry.name, progress=progress)


def supernet_dir(task_name: str, progress: Any = None) -> Path:
    """The task's published SuperTransformer as a local model directory (pulled on first use)."""
    return pull(supernet_for_task(task_name).name, progress=progress)
