"""Downloads for the zoo: the Hugging Face Hub (through `huggingface_hub`, its cache and its
environment: `HF_ENDPOINT`, `HF_HOME`/`HF_HUB_CACHE`, `HF_HUB_OFFLINE`) and plain HTTP(S) for the
authors' original files; sha256 checks; publishing with `HfApi`.

`huggingface_hub` reads its environment when imported, so it is imported inside the functions: a CLI
process sees the variables it was started with.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from hat_cli.core.errors import HatError, first_line

CHUNK = 1 << 20
USER_AGENT = "hat-cli (https://github.com/mit-han-lab/hardware-aware-transformers re-implementation)"


class HubMissing(HatError):
    """The Hub (or mirror) has no such repository, revision or file, or cannot be reached and the
    file is not cached: the caller may fall back to the original checkpoint."""


# ------------------------------------------------------------------------------------ helpers
def offline_mode() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def snapshot_commit(path: str | os.PathLike) -> str | None:
    """The commit of a file in the Hub cache (``.../snapshots/<commit>/<file>``)."""
    parts = Path(path).parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        if index + 1 < len(parts):
            return parts[index + 1]
    return None


def evict_cached_file(path: str | os.PathLike) -> None:
    """Remove a file from the Hub cache: the snapshot entry and the blob it points to."""
    path = Path(path)
    blob = Path(os.path.realpath(path))
    for victim in {path, blob}:
        try:
            victim.unlink()
        except FileNotFoundError:
            pass


def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> str:
    """Return the file's sha256; when ``expected`` is known and differs, delete the file and refuse."""
    digest = file_sha256(path)
    if expected and digest != expected.lower():
        evict_cached_file(path)
        raise HatError(
            f"{what} has sha256 {digest}, not the pinned {expected}; the download was deleted "
            "(a corrupted or tampered file, or a mirror serving another revision)."
        )
    return digest


class _RichBar:
    """The small tqdm-like surface `huggingface_hub` drives (``tqdm_class``), drawn on a Rich Progress."""

    progress: Any = None

    def __init__(self, *args: Any, desc: str = "", total: int | None = None, initial: int = 0, **_: Any):
        self.task = self.progress.add_task(str(desc)[-40:], total=total, completed=initial, info="bytes")

    def update(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_RichBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _bar_class(progress: Any) -> type | None:
    if progress is None:
        return None
    return type("_HatHubBar", (_RichBar,), {"progress": progress})


# ------------------------------------------------------------------------------------ the Hub
_REACHABLE: dict[str, str | None] = {}


def unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint cannot be reached (its host name does not resolve), or None when it may be.

    `huggingface_hub` retries a failed connection for about 25 s before giving up; a host that does not
    resolve will not start resolving in that time, so we ask once (bounded by ``timeout``) and go offline."""
    from huggingface_hub import constants

    host = urllib.parse.urlsplit(constants.ENDPOINT).hostname
    if not host:
        return None
    if host not in _REACHABLE:
        result: list[str | None] = []

        def lookup() -> None:
            try:
                socket.getaddrinfo(host, 443)
                result.append(None)
            except OSError as exc:
                result.append(f"the host {host} cannot be resolved ({getattr(exc, 'strerror', None) or exc})")

        thread = threading.Thread(target=lookup, daemon=True)
        thread.start()
        thread.join(timeout)
        _REACHABLE[host] = result[0] if result else f"the host {host} did not resolve within {timeout:g} s"
    return _REACHABLE[host]


def _quiet_hub() -> None:
    """huggingface_hub logs each retry as a warning; our one sentence says what happened."""
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()


def download_files(hub_file: Any, filenames: Iterable[str], progress: Any = None) -> dict[str, Path]:
    """Fetch files of ``hub_file.repo`` at ``hub_file.revision`` into the Hub cache; return their paths.

    HF_HUB_OFFLINE or an endpoint whose host does not resolve: the cache only, at once."""
    import huggingface_hub
    from huggingface_hub import errors

    _quiet_hub()

    missing = tuple(
        cls
        for cls in (
            getattr(errors, "RepositoryNotFoundError", None),
            getattr(errors, "RevisionNotFoundError", None),
            getattr(errors, "EntryNotFoundError", None),  # includes LocalEntryNotFoundError: offline/unreachable, not cached
            getattr(errors, "OfflineModeIsEnabled", None),
        )
        if cls is not None
    )
    kwargs: dict[str, Any] = {}
    unreachable = None if offline_mode() else unreachable_reason()
    if unreachable:
        kwargs["local_files_only"] = True
    bar = _bar_class(progress)
    if bar is not None and "tqdm_class" in inspect.signature(huggingface_hub.hf_hub_download).parameters:
        kwargs["tqdm_class"] = bar
    paths: dict[str, Path] = {}
    for filename in filenames:
        try:
            paths[filename] = Path(
                huggingface_hub.hf_hub_download(hub_file.repo, filename, revision=hub_file.revision, **kwargs)
            )
        except missing as exc:
            why = f"not cached, and {unreachable}" if unreachable else first_line(exc)
            raise HubMissing(f"{hub_file.repo}@{hub_file.revision}/{filename}: {why}") from None
        except errors.HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status == 404:
                raise HubMissing(f"{hub_file.repo}@{hub_file.revision}/{filename}: not found") from None
            raise HatError(f"The Hub refused {hub_file.repo}/{filename} (HTTP {status}): {first_line(exc)}.") from None
        except OSError as exc:  # e.g. a size mismatch of a truncated download
            raise HatError(f"Downloading {hub_file.repo}/{filename} failed: {first_line(exc)}.") from None
    return paths



# ------------------------------------------------------------------------------ plain downloads
def direct_download_url(url: str) -> str:
    """Dropbox share links (``?dl=0``) answer with an HTML page; ``dl=1`` answers with the file."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname and parsed.hostname.endswith("dropbox.com"):
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parsed.query) if k != "dl"] + [("dl", "1")]
        return urllib.parse.urlunsplit(parsed._replace(query=urllib.parse.urlencode(query)))
    return url


def download_url(url: str, destination: str | os.PathLike, progress: Any = None, description: str = "download") -> Path:
    """Stream ``url`` into ``destination`` (which the caller treats as temporary); check the length."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        raise HatError(f"Downloading {url} failed with HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HatError(f"Cannot reach {urllib.parse.urlsplit(url).netloc} to download {url}: {reason}.") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        task = progress.add_task(description[-40:], total=total, info="bytes") if progress is not None else None
        received = 0
        with open(destination, "wb") as handle:
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                received += len(chunk)
                if task is not None:
                    progress.advance(task, len(chunk))
    if total is not None and received != total:
        raise HatError(f"Downloading {url} stopped after {received} of {total} bytes; try again.")
    return destination


# ------------------------------------------------------------------------------------ publishing
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-")):
        raise HatError(
            f"'{repo_id}' is not a Hub repository id; write it as namespace/name with letters, digits, "
            "'-', '_' and '.' (no '@')."
        )
    return repo_id


def push_folder(directory: str | os.PathLike, repo_id: str, private: bool = False, message: str | None = None) -> dict[str, Any]:
    """Create the repository if needed and upload the folder as one commit; return {repo, commit, url}."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    if offline_mode():
        raise HatError(f"Publishing to {repo_id} needs the network, but HF_HUB_OFFLINE is set; unset it and try again.")
    unreachable = unreachable_reason()
    if unreachable:
        raise HatError(f"Cannot publish to {repo_id}: {unreachable}; check the network (or HF_ENDPOINT) and try again.")
    _quiet_hub()
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(directory),
            commit_message=message or "Upload with hat zoo push",
            repo_type="model",
        )
    except (OSError, ValueError) as exc:  # HTTP errors, offline mode and connection errors all derive from these
        raise HatError(f"Publishing to {repo_id} failed: {first_line(exc)}.") from None
    commit = getattr(info, "oid", None)
    url = getattr(info, "commit_url", None) or str(info)
    return {"repo": repo_id, "commit": commit, "url": url}
