"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from hagxai.errors import UserError

# Files the project writes are readable by all and writable only by their owner.
FILE_MODE = 0o644


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def restrict_umask() -> None:
    """Add group and world write to the process's umask, so no file or folder the project creates
    afterwards is writable by others, whatever umask the user's shell had."""
    os.umask(current_umask() | 0o022)


class WriteError(UserError):
    """A file that could not be written (a full disk, a read-only folder); nothing was replaced."""


Content = bytes | Callable[[Path], None]
"""A file's bytes, or a writer called with the temporary file's path (for libraries that write
files themselves)."""


def write_atomic(path: str | Path, data: Content) -> None:
    """Replace ``path`` with new content through a temporary file in the same folder.

    The file is created with mode ``0o644`` less the umask: never writable by group or world.
    The temporary file is flushed to disk (``fsync``) and renamed over ``path`` with
    :func:`os.replace`, so even a process killed mid-write leaves the previous file whole. On any
    error the temporary file is removed and ``path`` is left as it was.

    Args:
        path: the file to write (its folder must exist).
        data: the file's bytes, or a writer called with the temporary file's path (for libraries
            that write files themselves, such as ``safetensors.torch.save_file``).

    Raises:
        WriteError: the file could not be written (a full disk, say); one line naming it.
    """
    write_atomic_group({path: data})


def write_atomic_group(files: Mapping[str | Path, Content]) -> None:
    """Replace several files that belong together (a combiner's tensors and its card).

    Every file is first written whole to a temporary file beside it and flushed; only then are
    they renamed into place. An error while writing (a full disk) therefore replaces none of
    them, so the previous set stays consistent; a kill between the renames (microseconds) can
    leave a mix, which readers that check a recorded checksum refuse.

    Args:
        files: path -> content (as :func:`write_atomic`'s ``data``), in the order to rename.

    Raises:
        WriteError: a file could not be written; nothing was replaced.
    """
    temporaries: list[tuple[Path, Path]] = []
    mode = FILE_MODE & ~current_umask()
    current = None
    try:
        for target, data in files.items():
            current = Path(target)
            handle, name = tempfile.mkstemp(dir=current.parent, prefix=f".{current.name}.")
            temporary = Path(name)
            temporaries.append((current, temporary))
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
            os.chmod(temporary, mode)
        for target, temporary in temporaries:
            current = target
            os.replace(temporary, target)
    except OSError as err:
        reason = err.strerror or str(err)
        kept = "nothing was replaced" if len(files) > 1 else "the previous file is unchanged"
        raise WriteError(f"{current}: cannot write ({reason}); {kept}") from err
    finally:
        for _, temporary in temporaries:
            temporary.unlink(missing_ok=True)


def write_folder_atomic(folder: str | Path, make: Callable[[Path], None]) -> None:
    """Create (or replace) ``folder`` whole or not at all.

    ``make`` fills an empty ``<folder>.partial`` beside it, which is then renamed to ``folder``;
    a process killed before the rename leaves only the ``.partial`` folder, which the next call
    clears, so ``folder`` never exists half-written.

    Args:
        folder: the folder to create.
        make: called with the empty temporary folder to write into.
    """
    folder = Path(folder)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    make(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
