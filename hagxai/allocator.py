"""Keep large CPU tensors on the heap: glibc's ``malloc`` maps every block above its threshold
fresh from the kernel and unmaps it on free, so each new tensor of tens of MB is paid again in
page faults (the kernel zeroes every 4 KiB page on first touch).

A training step allocates and frees the same large tensors (a batch of 600×800 maps is 77 MB,
one chunk of a layer's gradients ~10 MB) hundreds of times; measured at the issue #11 shapes on 2
CPU cores, page faults were 30–45% of a step's wall time (``benchmarks/train_epoch.py``,
section ``steps``, prints both). PyTorch's own CPU tuning guide recommends a caching allocator
(jemalloc or tcmalloc through ``LD_PRELOAD``) for the same reason; this module does the
dependency-free part of that with one ``mallopt`` call: blocks up to 2 GiB come from the heap,
whose freed memory is reused by the next allocation without faults.

:func:`tune_malloc` is called by the command-line entry points (``hagxai``, ``train.py``,
``evaluate.py``), not on import: a library must not change a user's process behind their back.
Set ``HAGXAI_MALLOC=default`` to leave glibc as it is. Nothing happens off glibc Linux, under a
preloaded allocator, or when the user set ``MALLOC_MMAP_THRESHOLD_`` themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: ``mallopt`` parameter number of the mmap threshold (glibc ``malloc.h``).
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (``mallopt`` takes a C ``int``).
THRESHOLD = 2**31 - 1

_tuned: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap threshold to :data:`THRESHOLD` once per process.

    Returns:
        Whether the threshold is now raised (``False`` off glibc, when opted out with
        ``HAGXAI_MALLOC=default``, under ``LD_PRELOAD`` or with ``MALLOC_MMAP_THRESHOLD_`` set).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("HAGXAI_MALLOC", "") == "default"
        or os.environ.get("LD_PRELOAD")
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
    ):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no such tunable
            return False
        _tuned = bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False
    return _tuned
