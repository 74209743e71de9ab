"""Reading the downloaded sources: safe archive extraction and (possibly gzipped) text files."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    # Hidden files are our own markers and temporaries, never sources.
    return path.name.endswith(ARCHIVE_SUFFIXES) and not path.name.startswith(".")


def _inside(root: Path, member: str) -> Path:
    target = (root / member).resolve()
    if target != root and root not in target.parents:
        raise HatError(f"Archive member '{member}' would be written outside {root}; refusing to extract it.")
    return target


def extract(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` (members may not escape ``dest``); a marker file records
    completion so an interrupted extraction is simply redone."""
    marker = dest / f".extracted-{archive.name}"
    if marker.exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    target = _inside(root, info.filename)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        else:
            with tarfile.open(archive, "r:*") as tf:
                for member in tf:
                    target = _inside(root, member.name)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tf.extractfile(member)
                        with src, open(target, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                    # links, devices and the like are skipped: corpora are plain files
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, HatError):
            raise
        raise HatError(f"Cannot extract {archive}: {exc}; delete it and run again to download it afresh.") from None
    atomic_write_text(marker, "done\n")


def read_lines(path: Path, strict: bool = False) -> list[str]:
    """Lines of a UTF-8 text file (gunzipped on the fly when it ends in .gz), without line ends.

    Splits on newlines only (like perl and awk), not on other Unicode line separators. Downloaded raw
    corpora may hold a stray bad byte (it becomes U+FFFD, as the Moses scripts pass it through); with
    ``strict``, for text the user hands us as final, anything that is not UTF-8 text is refused."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HatError(f"Expected file {path} does not exist.") from None
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise HatError(f"{path} is not a valid gzip file ({exc}).") from None
    if strict:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HatError(f"{path} is not UTF-8 text (byte {exc.start} is not valid UTF-8); give text files.") from None
        if "\x00" in text:
            raise HatError(f"{path} holds NUL bytes, so it is binary, not text; give text files.")
    else:
        text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def write_lines(path: Path, lines: list[str]) -> None:
    with io.StringIO() as buf:
        for line in lines:
            buf.write(line)
            buf.write("\n")
        atomic_write_text(path, buf.getvalue())


def find_file(roots: list[Path], relative: str) -> Path | None:
    """First existing ``root/relative`` (also accepting a ``.gz`` twin)."""
    for root in roots:
        for candidate in (root / relative, root / f"{relative}.gz"):
            if candidate.is_file():
                return candidate
    return None
