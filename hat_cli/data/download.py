"""Resumable, verified, atomic downloads.

A file is fetched into ``<name>.part`` and renamed into place only after its size and sha256 (where
known) check out. An interrupted transfer keeps the ``.part`` file and continues from it with an
HTTP Range request (in the same call, up to ``retries`` times, and in any later call); a
verification failure deletes it. Every failure is a ``HatError`` naming the URL.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hat_cli.core.errors import HatError

CHUNK = 1 << 16
USER_AGENT = "hat-cli (+https://github.com/mit-han-lab/hardware-aware-transformers)"


@dataclass(frozen=True)
class Source:
    """One file a recipe needs: where it comes from and (where known) what it must be."""

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    alternates: tuple[str, ...] = ()  # other places serving the same file, tried in order when url fails


def direct_url(url: str) -> str:
    """Links that serve a web page to scripts, made direct: Dropbox share links (``?dl=0``) need
    ``dl=1``; Google Drive needs ``confirm=t`` to skip its "too large to scan" page."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if parts.netloc.endswith("dropbox.com"):
        query["dl"] = ["1"]
    elif parts.netloc == "drive.google.com" and "id" in query:
        query["confirm"] = ["t"]
    else:
        return url
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, doseq=True)))


def mirrored_url(source: Source, mirror: str | None) -> str:
    """With a mirror (``--mirror`` / ``HAT_DATA_MIRROR``) every file is fetched as ``<mirror>/<filename>``."""
    mirror = mirror if mirror is not None else os.environ.get("HAT_DATA_MIRROR")
    if mirror:
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(source.filename)}"
    return direct_url(source.url)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _WrongFile(HatError):
    """The server delivered a file, but not the expected one (size or sha256): another server will not help."""


def _verify(path: Path, source: Source, url: str) -> None:
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise _WrongFile(f"Download of {url} has {size} bytes but {source.size} were expected; the partial file was removed, run again.")
    if source.sha256 is not None:
        digest = sha256_of(path)
        if digest != source.sha256.lower():
            raise _WrongFile(f"Download of {url} has sha256 {digest} but {source.sha256} was expected; the file was removed.")


def download(
    source: Source,
    dest_dir: Path,
    mirror: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
) -> Path:
    """Fetch ``source`` into ``dest_dir/source.filename`` unless a verified copy is already there.

    ``progress(advance_bytes, total_bytes_or_None)`` is called as bytes arrive.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.filename
    if dest.is_file():
        return dest
    mirror = mirror if mirror is not None else os.environ.get("HAT_DATA_MIRROR")
    urls = [mirrored_url(source, mirror)] if mirror else [direct_url(u) for u in (source.url, *source.alternates)]
    failures = []
    for k, url in enumerate(urls):
        try:
            return _download_from(url, source, dest, progress, retries, timeout, backoff)
        except HatError as exc:
            if k == len(urls) - 1 or isinstance(exc, _WrongFile):
                if failures:
                    raise HatError(f"{exc} (also tried: {'; '.join(failures)})") from None
                raise
            failures.append(str(exc))
            # Another server: do not resume from a partial file made by the failed one.
            (dest_dir / f"{source.filename}.part").unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _download_from(url: str, source: Source, dest: Path, progress, retries: int, timeout: float, backoff: float) -> Path:
    part = dest.parent / f"{source.filename}.part"
    attempt = 0
    while True:
        try:
            _transfer(url, part, source, progress, timeout)
            break
        except _Retryable as exc:
            attempt += 1
            if attempt > retries:
                raise HatError(
                    f"Download of {url} failed after {attempt} attempts ({exc.reason}); "
                    f"run the command again to resume from {part.stat().st_size if part.exists() else 0} bytes."
                ) from None
            time.sleep(backoff * attempt)
    try:
        _verify(part, source, url)
    except HatError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _transfer(url: str, part: Path, source: Source, progress, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    if source.size is not None and have == source.size:
        return
    if source.size is not None and have > source.size:
        part.unlink()
        have = 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return  # the partial file already holds everything; verification decides
        if exc.code in (408, 429, 500, 502, 503, 504):
            raise _Retryable(f"HTTP {exc.code}") from None
        raise HatError(f"Download of {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (ConnectionError, TimeoutError)):
            raise _Retryable(str(reason)) from None
        raise HatError(f"Download of {url} failed: {reason}.") from None
    except (ConnectionError, TimeoutError) as exc:
        raise _Retryable(str(exc)) from None
    with response:
        status = getattr(response, "status", 200)
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("text/html") and not source.filename.endswith((".html", ".htm")):
            raise HatError(
                f"{url} returned a web page instead of the file (the link may need a browser); download "
                f"{source.filename} by hand and pass its folder with --from-dir."
            )
        if have and status != 206:
            have = 0  # the server ignored the Range request: start over
        length = response.headers.get("Content-Length")
        total = (have + int(length)) if length is not None and length.isdigit() else source.size
        if have and status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if match and int(match.group(1)) != have:
                raise HatError(f"{url} answered the resume request from byte {match.group(1)} instead of {have}.")
        if progress:
            progress(have, total)
        with open(part, "ab" if have else "wb") as out:
            try:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    if progress:
                        progress(len(block), None)
            except (ConnectionError, TimeoutError, OSError, http.client.HTTPException) as exc:
                out.flush()
                raise _Retryable(f"connection lost: {exc}") from None
            got = out.tell()
        if length is not None and length.isdigit() and got < have + int(length):
            raise _Retryable(f"connection closed after {got} of {have + int(length)} bytes")
