"""One writer at a time: an exclusive lock per file (or folder) that a long job appends to.

Two `hat collect-latency` runs on one CSV would each measure the samples the other has not written yet
and append them twice (or lose some); two trainings in one save dir would prune each other's checkpoints.
The second one is refused with a sentence instead. The lock is ``flock`` on a small lock file (beside a
file target, ``.<name>.lock``; inside a folder target, ``.hat.lock``), so the kernel releases it when its
holder dies, even by kill -9: there is never a stale lock to clear by hand. A clean exit removes the file;
one left by a killed holder is simply locked again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from hat_cli.core.errors import HatError
from hat_cli.core.files import make_parent, naming


LOCK_NAME = ".hat.lock"


@contextlib.contextmanager
def exclusive(target: str | os.PathLike, what: str, hint: str, folder: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` for the block; a HatError when another live process holds it.

    ``folder``: ``target`` is a folder (created if needed) whose lock lives inside it; otherwise a file
    whose lock lives beside it. ``what`` says what is being written (for the sentence), ``hint`` how to
    avoid the clash.
    """
    target = Path(target)
    if folder:
        make_parent(target / LOCK_NAME)
        path = target / LOCK_NAME
    else:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        path = target.with_name(f".{target.name}.lock")
        make_parent(path)
    fd = _acquire(path, target, what, hint)
    try:
        with contextlib.suppress(OSError):  # the pid only serves the message; a full disk must not stop us here
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        # Unlinked before the lock is released: whoever opens the path next makes a fresh file, and a
        # waiter still holding the old one notices (see _acquire) instead of sharing the lock.
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, target: Path, what: str, hint: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:  # a read-only or full disk: name what the user asked to write
            raise naming(exc, target) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise naming(exc, target) from None
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise HatError(f"{target} is in use: another hat process{by} is writing {what} there; {hint}.") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder we waited on removed this file: lock the new one
