"""safetensors files, read and written through one door.

The safetensors library reports every failure as ``SafetensorError`` (a full disk as "os error 28", a
damaged header as "HeaderTooLarge"), writes files with mode 0600 and in place. Here a write goes through a
temporary sibling (atomic, umask honoured), an OS failure becomes the ``OSError`` it is (so the CLI names
the file and the reason), and a file that is not safetensors becomes a HatError naming it. A pickle named
``*.safetensors`` is only ever parsed as safetensors: nothing in it runs.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any, Mapping

from hat_cli.core.errors import HatError, first_line
from hat_cli.core.files import replacing

_OS_ERROR = re.compile(r"os error (\d+)")


def _os_error(exc: Exception, path: Path) -> OSError | None:
    match = _OS_ERROR.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1))
    return OSError(code, os.strerror(code), str(path))


def save_tensors(tensors: Mapping[str, Any], path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                 framework: str = "pt") -> Path:
    """Write ``tensors`` (torch or numpy, per ``framework``) to ``path`` atomically."""
    path = Path(path)
    if framework == "pt":
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file
    from safetensors import SafetensorError

    with replacing(path) as tmp:
        try:
            save_file(dict(tensors), str(tmp), metadata=dict(metadata) if metadata else None)
        except SafetensorError as exc:
            raise (_os_error(exc, path) or HatError(f"Writing {path} failed: {exc}.")) from None
    return path


def load_tensors(path: str | os.PathLike, framework: str = "pt", what: str = "") -> dict[str, Any]:
    """Every tensor of a safetensors file; a damaged or foreign file is a HatError naming it."""
    path = Path(path)
    tensors, _ = _read(path, framework, what, with_tensors=True)
    return tensors


def read_metadata(path: str | os.PathLike, what: str = "") -> dict[str, str]:
    """The header's ``__metadata__`` (without loading tensors)."""
    return _read(Path(path), "np", what, with_tensors=False)[1]


def _read(path: Path, framework: str, what: str, with_tensors: bool) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    label = f"{what} {path}" if what else str(path)
    try:
        with safe_open(str(path), framework) as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()} if with_tensors else {}
    except SafetensorError as exc:
        error = _os_error(exc, path)
        if error is not None:
            raise error from None
        raise HatError(f"{label} is not a readable safetensors file ({first_line(exc)}).") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # numpy/torch refusing a header's dtype or shape
        raise HatError(f"{label} is not a readable safetensors file ({first_line(exc)}).") from None
    return tensors, metadata

