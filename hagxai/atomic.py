"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | Callable[[Path], None]) -> None:
    """Replace ``path`` with new content through a temporary file in the same folder.

    The temporary file is flushed to disk (``fsync``) and renamed over ``path`` with
    :func:`os.replace`, so even a process killed mid-write leaves the previous file whole. On any
    error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write (its folder must exist).
        data: the file's bytes, or a writer called with the temporary file's path (for libraries
            that write files themselves, such as ``safetensors.torch.save_file``).
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(name)
    try:
        if isinstance(data, bytes | bytearray | memoryview):
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        else:
            os.close(handle)
            data(temporary)
            with temporary.open("rb") as written:
                os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
