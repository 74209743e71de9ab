"""The one exception type the CLI turns into "exit code 2 and one clear sentence", and the one place that
turns an OS error (read-only disk, full disk, a file where a folder belongs, ...) into such a sentence."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hat_cli.core.files import target_of


class HatError(Exception):
    """Bad input or an unmet precondition the user can fix.

    The message is shown to the user as is, so it must be one complete sentence that says
    what was wrong and what is allowed. Library code raises it; only the CLI exits.
    """


def _first_file_on_the_way(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or itself) that exists and is not a folder."""
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def describe_os_error(exc: OSError) -> str:
    """One sentence naming the path and what to do, for any OS error a user's environment can cause."""
    raw = exc.filename if exc.filename is not None else exc.filename2
    if raw is None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"An operating-system error stopped hat: {reason.rstrip('.')}."
    path = Path(os.fsdecode(raw))
    path = target_of(path) or path  # our temporary sibling stands for the file being written
    code = exc.errno
    if code == errno.ENOENT:
        return f"{path} does not exist."
    if code == errno.EROFS:
        return f"Cannot write {path}: its file system is read-only; choose a writable location."
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"No space left on the device holding {path}; free some space and run again "
                "(files written before are intact, and resumable commands continue where they stopped).")
    if code in (errno.EACCES, errno.EPERM):
        return f"Permission denied for {path}; choose a location you may write to or fix its permissions."
    if code == errno.EISDIR:
        return f"{path} is a directory, but a file is expected there."
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _first_file_on_the_way(path) or path
        return f"{blocker} is a file, but a directory is expected there."
    if code == errno.ENAMETOOLONG:
        return f"The path {path} is too long for the file system."
    reason = (exc.strerror or type(exc).__name__).rstrip(".")
    return f"{path}: {reason[0].lower() + reason[1:] if reason else 'operating-system error'}."


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message without its closing full stop (a library's multi-line error
    quoted inside one of our sentences); the exception's type when it has no message."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__
