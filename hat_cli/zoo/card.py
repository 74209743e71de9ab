"""Publishing a model directory: a generated model card (README.md: task, hardware, latency, BLEU, the
architecture, how to use it) and `push` to the Hugging Face Hub as one commit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

from hat_cli.core.errors import HatError
from hat_cli.model.directory import read_metadata
from hat_cli.model.space import SubTransformerConfig
from hat_cli.tasks import TASKS
from hat_cli.zoo import hub
from hat_cli.zoo.catalogue import CONFIG_FILE, MODEL_FILE, ZooModel, resolve
from hat_cli.zoo.store import link_or_copy


def _entry_for_directory(meta: Mapping[str, Any], zoo_name: str | None) -> ZooModel | None:
    name = zoo_name or meta.get("zoo_name")
    return resolve(name) if name else None


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def model_card(directory: str | Path, zoo_name: str | None = None) -> str:
    """README.md for a model directory: what it is, its published numbers (when a zoo model), how to use it."""
    directory = Path(directory)
    meta = read_metadata(directory)
    entry = _entry_for_directory(meta, zoo_name)
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
    directory = Path(directory)
    read_metadata(directory)  # refuses anything that is not a hat model directory
    if not (directory / MODEL_FILE).is_file():
        raise HatError(f"{directory} has no {MODEL_FILE} to publish.")
    hub.check_repo_id(repo_id)
    card = model_card(directory, zoo_name)
    with tempfile.TemporaryDirectory(prefix="hat-push-") as tmp:
        staged = Path(tmp)
        for name in (MODEL_FILE, CONFIG_FILE):
            link_or_copy(directory / name, staged / name)
        (staged / "README.md").write_text(card, encoding="utf-8")
        result = hub.push_folder(staged, repo_id, private=private)
    result["sha256"] = hub.file_sha256(directory / MODEL_FILE)
    result["files"] = [MODEL_FILE, CONFIG_FILE, "README.md"]
    return result
