"""The cache's files: shards written and memory-mapped, and the index read and checked."""

from __future__ import annotations

import hashlib
import json
import mmap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from hagxai.atomic import write_atomic
from hagxai.cache.compute import compute, frame_record
from hagxai.cache.key import CACHE_FORMAT, CACHE_VERSION
from hagxai.cache.rules import TargetRule
from hagxai.data import Sample
from hagxai.errors import UserError
from hagxai.models import ModelAdapter

INDEX_FILE = "index.json"
_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
}


class CacheError(UserError):
    """A cache that cannot be used as asked (another layer set, a shard changed while open)."""


class MappedShard:
    """A shard file memory-mapped, its tensors as zero-copy views (safetensors layout:
    8-byte little-endian header length, JSON header, then the raw data).

    Attributes:
        tensors: name -> tensor, as stored.
    """

    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            # Copy-on-write: torch needs a writable buffer, and the file must never change.
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
        length = int.from_bytes(self._map[:8], "little")
        header = json.loads(self._map[8 : 8 + length])
        header.pop("__metadata__", None)
        base = 8 + length
        self.tensors: dict[str, Tensor] = {}
        for name, info in header.items():
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            count = (end - begin) // dtype.itemsize
            flat = (
                torch.frombuffer(self._map, dtype=dtype, count=count, offset=base + begin)
                if count
                else torch.empty(0, dtype=dtype)
            )
            self.tensors[name] = flat.view(info["shape"])


class ShardBuilder:
    """Computes one chunk of samples and writes it as a shard.

    Args:
        adapter, layers, rule, require_maps, batch_size: as :func:`~hagxai.cache.compute.compute`.
        dtype: the storage dtype of activations and gradients.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        layers: list[str],
        rule: TargetRule,
        require_maps: bool,
        batch_size: int,
        dtype: torch.dtype,
    ) -> None:
        self.adapter, self.layers, self.rule = adapter, layers, rule
        self.require_maps, self.batch_size, self.dtype = require_maps, batch_size, dtype

    def write(
        self,
        path: Path,
        number: int,
        chunk: Sequence[Sample],
        key: str,
        tick: Callable[[int], None],
    ) -> dict[str, Any]:
        """Compute ``chunk``, write ``path/shard-<number>.safetensors`` (none when every sample
        was skipped) and return its index entry: file, SHA-256, size, time stamp, the chunk's
        sample ids, the cached ids, target counts, frame records and skipped samples."""
        computed = compute(
            self.adapter, chunk, self.layers, self.rule, self.require_maps, tick, self.batch_size
        )
        entry: dict[str, Any] = {
            "file": None,
            "samples": [s.id for s in chunk],
            "ids": computed.ids,
            "targets": computed.counts,
            "frames": [frame_record(f) for f in computed.frames],
            "skipped": computed.skipped,
        }
        if not computed.ids:
            return entry
        tensors = {f"acts/{n}": computed.acts[n].to(self.dtype) for n in self.layers}
        tensors |= {f"grads/{n}": computed.grads[n].to(self.dtype) for n in self.layers}
        counts = torch.tensor(computed.counts)
        tensors["image_index"] = torch.repeat_interleave(torch.arange(len(counts)), counts)
        tensors |= computed.targets
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        data = safetensors_bytes(tensors, metadata={"format": CACHE_FORMAT, "key": key})
        file = path / f"shard-{number:05d}.safetensors"
        write_atomic(file, data)
        stat = file.stat()
        entry |= {
            "file": file.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
        return entry


def read_index(
    path: Path, key: str, layers: list[str], input_size: tuple[int, int]
) -> dict[str, Any] | None:
    """The index of an existing cache, or ``None`` when there is none or it is unreadable.

    Raises:
        CacheError: an index whose layers or input size disagree with its key's request.
    """
    try:
        index = json.loads((path / INDEX_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(index, dict)
        or index.get("format") != CACHE_FORMAT
        or index.get("version") != CACHE_VERSION
        or index.get("key") != key
    ):
        return None
    if index.get("layers") != layers or tuple(index.get("input_size", ())) != input_size:
        raise CacheError(
            f"{path / INDEX_FILE} holds layers {index.get('layers')} at input size "
            f"{index.get('input_size')}, the request hooks {layers} at {list(input_size)}; "
            "delete the folder to rebuild it"
        )
    return index


def write_index(path: Path, index: dict[str, Any]) -> None:
    """Write ``path/index.json`` atomically."""
    write_atomic(path / INDEX_FILE, (json.dumps(index, indent=1) + "\n").encode())


def shard_problem(path: Path, entry: dict[str, Any] | None, *, checksum: bool) -> str | None:
    """What is wrong with a shard entry and its file, or ``None`` when it is usable.

    Without ``checksum`` only what a ``stat`` shows is checked (the file exists with the recorded
    size): opening a cache of many gigabytes must not read them all. With ``checksum`` the file's
    SHA-256 is compared too (on a shard's first read, and by ``hagxai cache verify``). A chunk
    where every sample was skipped has no file and is usable. A usable file's time stamp is
    re-recorded in ``entry``: a valid file copied or touched must still open for reading.
    """
    if entry is None:
        return "not computed"
    if entry["file"] is None:
        return None
    file = path / entry["file"]
    try:
        stat = file.stat()
    except OSError:
        return "missing"
    if stat.st_size != entry["bytes"]:
        return f"{stat.st_size} bytes, the index records {entry['bytes']}"
    if checksum:
        try:
            with file.open("rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as err:
            return f"unreadable ({err.strerror})"
        if digest != entry["sha256"]:
            return "SHA-256 differs from the index"
    entry["mtime_ns"] = stat.st_mtime_ns
    return None


def shard_is_valid(path: Path, entry: dict[str, Any] | None, *, checksum: bool = True) -> bool:
    """Whether :func:`shard_problem` finds nothing wrong."""
    return shard_problem(path, entry, checksum=checksum) is None
