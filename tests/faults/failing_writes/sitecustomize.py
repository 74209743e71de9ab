"""Where no tmpfs can be mounted: writes under $HAT_TEST_FAIL_UNDER fail as a read-only or full disk would.

Put on PYTHONPATH of a `hat` subprocess by tests/faults/test_os_errors.py. Every way hat creates, writes,
renames or removes a file goes through one of the functions patched here (the safetensors library writes
only into temporary files that hat creates first), so the OS error reaches hat where the real one would,
with the errno of $HAT_TEST_FAIL_ERRNO (EROFS by default, or ENOSPC).
"""

import builtins
import errno
import io
import os

_ROOT = os.path.abspath(os.environ.get("HAT_TEST_FAIL_UNDER", "/nonexistent-hat-test-root"))
_CODE = int(os.environ.get("HAT_TEST_FAIL_ERRNO", errno.EROFS))


def _under(path) -> bool:
    try:
        absolute = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return absolute == _ROOT or absolute.startswith(_ROOT + os.sep)


def _fail(path):
    raise OSError(_CODE, os.strerror(_CODE), os.fsdecode(path))


_real_open = builtins.open


def _open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, bytes, os.PathLike)) and any(flag in mode for flag in "wax+") and _under(file):
        _fail(file)
    return _real_open(file, mode, *args, **kwargs)


builtins.open = io.open = _open

_real_os_open = os.open


def _os_open(path, flags, mode=0o777, *, dir_fd=None):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND) and _under(path):
        _fail(path)
    return _real_os_open(path, flags, mode, dir_fd=dir_fd)


os.open = _os_open


def _guard(name):
    real = getattr(os, name)

    def guarded(*args, **kwargs):
        for path in args[:2] if name in ("rename", "replace") else args[:1]:
            if _under(path):
                if name == "mkdir" and os.path.exists(path):  # the kernel says EEXIST first
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
                _fail(path)
        return real(*args, **kwargs)

    setattr(os, name, guarded)


# A read-only file system refuses every change; a full one only what needs new space.
for _name in ("mkdir", "rename", "replace", "unlink", "rmdir", "truncate", "chmod") if _CODE == errno.EROFS else ("mkdir",):
    _guard(_name)
