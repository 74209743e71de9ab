"""Files written whole: a reader (or a crash) never sees half a file, and what a crash leaves is cleaned.

Every write goes to a temporary sibling ``.<name>.<pid>.<random>.tmp`` (same folder, so the final
``os.replace`` is atomic) that is renamed over the target only when complete. A process killed with
kill -9 cannot remove its temporary file; the next write of the same target (or :func:`sweep_stale` over
a folder) removes every sibling whose writer is no longer alive. Files get the mode the umask allows
(``0666 & ~umask``), like any file a program creates, not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import IO, Iterator

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is a set-and-restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~current_umask()


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file written by a library that creates 0600 files (safetensors, mkstemp) the umask's mode."""
    os.chmod(path, file_mode())


def naming(exc: OSError, path: str | os.PathLike) -> OSError:
    """The same OS error, naming ``path``: the file the user knows, not the temporary sibling, lock or open
    handle it happened on (a write to a handle names no file at all). Raise it ``from None``."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def target_of(temporary: str | os.PathLike) -> Path | None:
    """The file a temporary sibling stands for (None for other names)."""
    temporary = Path(temporary)
    match = _TEMP_RE.match(temporary.name)
    return temporary.with_name(match.group("name")) if match else None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(directory: str | os.PathLike, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Remove temporary siblings (of ``name``, or of any file) left in ``directory`` by dead writers."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    candidates = directory.rglob(".*.tmp") if recursive else directory.glob(f".{name}.*.tmp" if name else ".*.tmp")
    for path in candidates:
        match = _TEMP_RE.match(path.name)
        if match is None or (name is not None and match.group("name") != name) or _alive(int(match.group("pid"))):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def make_parent(path: Path) -> None:
    """Create ``path``'s folder; a file standing where a folder belongs is an error naming that file."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename or str(parent)) from None


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh, empty temporary file next to ``path`` (same filesystem, so ``os.replace`` is atomic).

    Refuses a ``path`` that is a folder before creating anything, and removes dead writers' leftovers.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    make_parent(path)
    sweep_stale(path.parent, path.name)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
        except FileExistsError:
            continue
        except OSError as exc:
            raise naming(exc, path) from None  # name the target, not our temp name
        os.close(fd)
        return tmp


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, with the OS error naming ``path``, when it cannot be written (a read-only or full disk, a
    folder in its place): a long job checks before it works, not after. Creates ``path``'s folder."""
    temporary_sibling(path).unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary sibling of ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        try:
            with open(tmp, mode, **kwargs) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            if exc.filename in (str(tmp), tmp) or exc.filename is None:
                raise naming(exc, path) from None
            raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path for a library that writes files itself (matplotlib, safetensors): renamed over
    ``path`` when the block succeeds, removed when it fails; given the umask's mode."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        follow_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
