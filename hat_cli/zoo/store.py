"""Local copies of the published models: `pull` makes a model directory (`model.safetensors` +
`config.json` + `zoo.json`, the record of where it came from) under `$HAT_HOME/models/<name>`: from the
Hub when it has a copy, otherwise from the authors' original checkpoint, converted on the fly.
A copy appears in one rename, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hat_cli.core import paths
from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, temporary_sibling
from hat_cli.zoo import hub
from hat_cli.zoo.catalogue import CONFIG_FILE, MODEL_FILE, ZooModel, resolve

RECORD_FILE = "zoo.json"  # where a pulled model came from


def local_model_dir(name: str) -> Path:
    return paths.models_dir() / name


def is_complete(directory: Path) -> bool:
    return (directory / MODEL_FILE).is_file() and (directory / CONFIG_FILE).is_file() and (directory / RECORD_FILE).is_file()


def pulled_record(name: str) -> dict[str, Any] | None:
    """What `pull` recorded about a local copy (None when not pulled)."""
    directory = local_model_dir(resolve(name).name)
    if not is_complete(directory):
        return None
    return json.loads((directory / RECORD_FILE).read_text(encoding="utf-8")) | {"path": str(directory)}


def pull(name: str, *, force: bool = False, progress: Any = None) -> Path:
    """A local model directory for ``name`` (usable by ``hat_cli.model.directory.load_model``).

    Order: an existing local copy; the Hub (its cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, the pinned
    revision; sha256 verified when published); the original checkpoint URL, converted on the fly.
    """
    return pull_with_record(name, force=force, progress=progress)[0]


def pull_with_record(name: str, *, force: bool = False, progress: Any = None) -> tuple[Path, dict[str, Any]]:
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
    paths.models_dir().mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=paths.models_dir()))


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    atomic_write_text(directory / RECORD_FILE, json.dumps(record, indent=2) + "\n")


def _stage_hub_copy(entry: ZooModel, files: dict[str, Path], digest: str) -> Path:
    model_file = files[entry.hub.filename]
    staged = _staging_dir(entry)
    try:
        link_or_copy(model_file, staged / MODEL_FILE)
        link_or_copy(files[CONFIG_FILE], staged / CONFIG_FILE)
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
    # Lazily: torch, needed only to convert; pulling from the Hub and resolving names must not load it.
    from hat_cli.zoo import convert

    downloads = paths.downloads_dir()
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
            arch_source=f"the zoo entry {entry.name}",
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


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link out of the Hub cache when possible (no second copy on disk), else copy."""
    source = Path(os.path.realpath(source))
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)
