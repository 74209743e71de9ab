"""HAT's 8 shipped latency predictors (docs/METHOD.md §5.1): pulled as safetensors (HAT's own state-dict names,
fp32, with ``lat_norm`` / ``feature_norm`` in the metadata) and loaded as hat predictors.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from safetensors.numpy import load_file

from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, temporary_sibling
from hat_cli.latency.predictors.hat_mlp import HatMlpPredictor, from_published_hat_state_dict
from hat_cli.zoo import hub
from hat_cli.zoo.catalogue import ZooPredictor, predictor_entry


def pull_predictor(name: str, *, force: bool = False, progress: Any = None) -> tuple[Path, dict[str, Any]]:
    """A shipped HAT latency predictor as safetensors (HAT's own state-dict names, fp32), with
    ``lat_norm`` / ``feature_norm`` in its metadata: from the Hub, else the original `.pt` from HAT's
    GitHub repository, read with the restricted unpickler."""
    entry = predictor_entry(name)
    target = paths.predictors_dir() / f"{entry.name}.safetensors"
    record_path = target.with_suffix(".json")
    if target.is_file() and record_path.is_file() and not force:
        return target, json.loads(record_path.read_text(encoding="utf-8"))
    try:
        files = hub.download_files(entry.hub, [entry.hub.filename], progress=progress)
        source_file = files[entry.hub.filename]
        digest = hub.verify_sha256(source_file, entry.hub.sha256, what=f"{entry.hub.repo}/{entry.hub.filename}")
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
    atomic_write_text(record_path, json.dumps(record | {"lat_norm": entry.lat_norm, "feature_norm": list(entry.feature_norm)}, indent=2) + "\n")
    return target, json.loads(record_path.read_text(encoding="utf-8"))


def _predictor_from_original(entry: ZooPredictor, target: Path, progress: Any) -> dict[str, Any]:
    # Lazily: torch, to read the original pickle; pulling from the Hub must not load it.
    from safetensors.torch import save_file

    from hat_cli.zoo import convert  # lazily (torch)

    download = temporary_sibling(paths.downloads_dir() / f"{entry.name}.pt")
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


def load_published_predictor(name: str, progress: Any = None) -> HatMlpPredictor:
    """The shipped HAT predictor called ``name`` as a hat predictor object, pulled on first use."""
    entry = predictor_entry(name)
    path, _ = pull_predictor(entry.name, progress=progress)
    return from_published_hat_state_dict(load_file(str(path)), lat_norm=entry.lat_norm, feature_norm=list(entry.feature_norm))
