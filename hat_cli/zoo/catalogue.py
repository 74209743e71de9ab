"""The published HAT models by name: `model_zoo.toml`, and names and prefixes resolved against it.

`model_zoo.toml` (shipped inside `hat_configs`) is the one table of facts: 44 SubTransformers,
4 SuperTransformers and 8 latency predictors under their published names, with their published numbers
(latency, BLEU, parameters, FLOPs), architectures, super shapes, original checkpoint URLs and Hub
locations. It is the source of truth: edit it by hand (`hat zoo push` prints the lines to pin). Any
unambiguous prefix of a name resolves. No torch, no network here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.model.space import SubTransformerConfig, SuperShape
from hat_cli.tasks import find_task

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
    """One of HAT's shipped latency predictors (docs/METHOD.md §5.1)."""

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
        task = find_task(task).name if task else None
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


# ------------------------------------------------------------------------------------- loading
_CACHE: dict[tuple[str, float], Zoo] = {}


def load_zoo(path: str | Path | None = None) -> Zoo:
    """The zoo table at ``path`` (default: $HAT_ZOO_FILE, else the shipped one), parsed once per version."""
    path = Path(path) if path is not None else paths.zoo_file()
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
    task = find_task(task_name).name
    found = load_zoo().select(task=task, kind="supertransformer")
    if not found:
        raise HatError(f"No SuperTransformer was published for task '{task}'; train one with `hat train-super`.")
    return found[0]


def published_predictor(hardware: str, task: str) -> ZooPredictor:
    """The shipped HAT latency predictor for this hardware and task."""
    zoo = load_zoo()
    task = find_task(task).name
    for predictor in zoo.predictors.values():
        if predictor.hardware == hardware and predictor.task == task:
            return predictor
    known = ", ".join(f"{p.hardware}/{p.task}" for p in zoo.predictors.values())
    raise HatError(f"HAT published no latency predictor for {hardware} on {task}; published ones: {known}.")


def predictor_entry(name: str) -> ZooPredictor:
    """A published latency predictor by its exact name."""
    zoo = load_zoo()
    if name in zoo.predictors:
        return zoo.predictors[name]
    raise HatError(f"'{name}' is not a published latency predictor; known: {', '.join(zoo.predictors)}.")


def names(models_: Iterable[ZooModel]) -> list[str]:
    return [m.name for m in models_]
