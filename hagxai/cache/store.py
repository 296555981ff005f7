"""The evidence cache on disk: built or reopened for a model, layers, target rule and data, then
read in batches (layout, key and integrity: :mod:`hagxai.cache`)."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hagxai.cache.compute import TARGET_FIELDS, frame_from_record
from hagxai.cache.key import CACHE_FORMAT, CACHE_VERSION, STORAGE_DTYPES, cache_key, key_fields
from hagxai.cache.rules import DEFAULT_RULE, TargetRule
from hagxai.cache.shards import (
    INDEX_FILE,
    CacheError,
    MappedShard,
    ShardBuilder,
    read_index,
    shard_problem,
    write_index,
)
from hagxai.console import progress_bar
from hagxai.data import Sample
from hagxai.distributed import all_gather_list, is_main, rank, world_size
from hagxai.errors import UserError
from hagxai.evidence import Evidence
from hagxai.models import Frame, ModelAdapter, Targets


class EvidenceCache:
    """Evidence of a frozen model over a list of samples, sharded on disk (see :mod:`hagxai.cache`).

    Build or reopen with :meth:`build`; read batches with :meth:`evidence`, :meth:`targets` and
    :meth:`frames`. An :class:`~hagxai.cache.source.EvidenceSource`.

    Attributes:
        ids: sample ids of the cached images, in cache order (skipped ones excluded).
        skipped: sample id -> reason, for samples that could not be cached.
        layers: resolved layer names, in order.
        input_size: ``(H, W)`` of the model input.
        key: the cache key (the folder's name under ``root``).
        path: ``root/<key>``.
        computed_shards: the shards this :meth:`build` call computed (empty on a full reuse).

    Integrity: opening checks each shard's size only (a ``stat``); a shard's SHA-256 is checked
    when it is first read. A shard that fails is recomputed from its samples when the cache came
    from :meth:`build` (which knows the model), and raises :class:`CacheError` naming the file
    when it came from :meth:`open`; :meth:`verify` checks every shard at once.
    """

    def __init__(
        self,
        path: Path,
        index: dict[str, Any],
        max_open_shards: int = 16,
        rebuild: Callable[[int], dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self._index = index
        self._rebuild = rebuild
        self._verified: set[int] = set()
        self.key: str = index["key"]
        self.layers: list[str] = list(index["layers"])
        self.input_size: tuple[int, int] = tuple(index["input_size"])
        self.storage_dtype: str = index["key_fields"]["dtype"]
        self.computed_shards: list[int] = []
        self._shards: list[dict[str, Any]] = index["shards"]
        self._max_open = max(1, max_open_shards)
        self._open: OrderedDict[int, MappedShard] = OrderedDict()
        self.ids: list[str] = []
        self.skipped: dict[str, str] = {}
        # Per cached image: (shard, row in shard, first target row in shard, target count).
        self._where: list[tuple[int, int, int, int]] = []
        for number, shard in enumerate(self._shards):
            self.skipped.update(shard["skipped"])
            start = 0
            for row, (sample_id, count) in enumerate(zip(shard["ids"], shard["targets"])):
                self.ids.append(sample_id)
                self._where.append((number, row, start, count))
                start += count

    @classmethod
    def build(
        cls,
        adapter: ModelAdapter,
        samples: Sequence[Sample],
        *,
        layers: list[str],
        root: Path,
        rule: TargetRule = DEFAULT_RULE,
        batch_size: int = 16,
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
        require_maps: bool = True,
        shard_size: int = 64,
        max_open_shards: int = 16,
        distributed: bool = False,
    ) -> EvidenceCache:
        """Open the cache for this model, layers, targets and data; compute what is missing.

        Args:
            adapter: the frozen model's adapter (its device computes the evidence).
            samples: the images to cache, in cache order.
            layers: layer names or aliases (resolved by the adapter; part of the key).
            root: the folder that holds caches (``root/<key>/``).
            rule: how targets are chosen (the ground-truth label by default); its rule and the
                thresholds it uses are part of the key.
            batch_size: images per forward/backward pass.
            dtype: storage dtype, ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``
                (half the disk and memory; relative rounding error about 5e-4 for float16 and
                4e-3 for bfloat16, whose range is float32's). Part of the key. Reads upcast to
                the dtype asked for (float32 by default), per batch.
            progress: show a progress bar while computing.
            require_maps: skip samples without a readable, finite attention map (a training
                cache needs them).
            shard_size: consecutive samples per shard; an existing cache keeps its own.
            max_open_shards: how many shard files stay memory-mapped at once.
            distributed: under torchrun (:mod:`hagxai.distributed`), split the shards still to
                compute between the ranks (each image is computed by one rank); every call
                must then be made by every rank. Rank 0 writes the index after each round of
                shards, so an interrupted build resumes; all ranks return the whole cache.

        Returns:
            the cache, ready to read.

        Raises:
            UserError: a target rule that does not apply to the model, an unknown layer or a
                storage dtype other than float32 / float16 / bfloat16.
            CacheError: an index whose layers or input size disagree with the request.
        """
        if dtype not in STORAGE_DTYPES:
            raise UserError(f"cache dtype must be float32, float16 or bfloat16, got {dtype}")
        if batch_size < 1 or shard_size < 1:
            raise UserError("batch_size and shard_size must be positive")
        rule.check(adapter)
        names = adapter.resolve_layers(layers)
        fields = key_fields(adapter, samples, names, rule, dtype, require_maps)
        key = cache_key(fields)
        path = Path(root) / key
        path.mkdir(parents=True, exist_ok=True)
        index = read_index(path, key, names, tuple(adapter.input_size))
        if index is None:
            index = {
                "format": CACHE_FORMAT,
                "version": CACHE_VERSION,
                "key": key,
                "key_fields": fields,
                "layers": names,
                "input_size": list(adapter.input_size),
                "shard_size": shard_size,
                "num_samples": len(samples),
                "shards": [None] * -(-len(samples) // shard_size),
            }
        size = index["shard_size"]
        # A stat per shard, no hashing: the checksum is checked when a shard is first read.
        todo = [
            n
            for n, entry in enumerate(index["shards"])
            if shard_problem(path, entry, checksum=False) is not None
        ]
        builder = ShardBuilder(adapter, names, rule, require_maps, batch_size, dtype)
        world, me = (world_size(), rank()) if distributed else (1, 0)
        mine = todo[me::world]
        total = sum(len(samples[n * size : (n + 1) * size]) for n in mine)
        with progress_bar("evidence cache", total, progress and me == 0) as tick:
            # One round: each rank computes one shard; the index then records the round.
            for start in range(0, len(todo), world):
                group = todo[start : start + world]
                done = []
                if me < len(group):
                    number = group[me]
                    chunk = samples[number * size : (number + 1) * size]
                    done.append((number, builder.write(path, number, chunk, key, tick)))
                if world > 1:
                    done = all_gather_list(done)
                for number, entry in done:
                    index["shards"][number] = entry
                if me == 0:
                    write_index(path, index)

        def rebuild(number: int) -> dict[str, Any]:
            chunk = samples[number * size : (number + 1) * size]
            return builder.write(path, number, chunk, key, lambda n: None)

        cache = cls(path, index, max_open_shards, rebuild)
        cache.computed_shards = todo
        return cache

    @classmethod
    def open(cls, path: Path, max_open_shards: int = 16) -> EvidenceCache:
        """Open the cache folder ``path`` (``root/<key>``) as it is, without the model.

        Only the index is read and each shard ``stat``-ed; a shard that fails its checksum on
        first read raises :class:`CacheError` (there is no model to recompute it).

        Raises:
            CacheError: no readable cache index in ``path``, or a shard missing, not computed or
                of the wrong size.
        """
        path = Path(path)
        try:
            index = json.loads((path / INDEX_FILE).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CacheError(f"{path / INDEX_FILE}: not a readable cache index ({err})") from None
        if not isinstance(index, dict) or index.get("format") != CACHE_FORMAT:
            raise CacheError(f"{path / INDEX_FILE}: not an evidence cache index")
        if index.get("version") != CACHE_VERSION:
            raise CacheError(
                f"{path / INDEX_FILE}: cache format version {index.get('version')}, this "
                f"hagxai reads {CACHE_VERSION}; rebuild it"
            )
        for number, entry in enumerate(index["shards"]):
            problem = shard_problem(path, entry, checksum=False)
            if problem is not None:
                name = (entry or {}).get("file") or f"shard {number}"
                raise CacheError(f"{path / name}: {problem}; open it with the model to rebuild")
        return cls(path, index, max_open_shards)

    def verify(self) -> dict[str, str]:
        """Check every shard's size and SHA-256 against the index (reads the whole cache).

        Returns:
            shard file name -> what is wrong, for each bad shard (empty when all are good).
        """
        bad = {}
        for number, entry in enumerate(self._shards):
            problem = shard_problem(self.path, entry, checksum=True)
            if problem is not None:
                bad[(entry or {}).get("file") or f"shard {number}"] = problem
            elif entry["file"] is not None:
                self._verified.add(number)
        return bad

    def __len__(self) -> int:
        """Number of cached images."""
        return len(self.ids)

    def _shard(self, number: int) -> MappedShard:
        shard = self._open.get(number)
        if shard is not None:
            self._open.move_to_end(number)
            return shard
        entry = self._shards[number]
        file = self.path / entry["file"]
        try:
            stat = file.stat()
        except FileNotFoundError:
            stat = None
        if stat is None or stat.st_size != entry["bytes"]:
            raise CacheError(
                f"{file} changed on disk since the cache was opened; open it again to rebuild"
            )
        if stat.st_mtime_ns != entry["mtime_ns"]:
            # rewritten since it was checked (by another rank recomputing it, say): check again
            self._verified.discard(number)
        if number not in self._verified:
            self._check(number)
        shard = MappedShard(file)
        self._open[number] = shard
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return shard

    def _check(self, number: int) -> None:
        """A shard's first read: its SHA-256, and a recompute (or a clear error) when it fails."""
        entry = self._shards[number]
        problem = shard_problem(self.path, entry, checksum=True)
        if problem is not None:
            file = self.path / entry["file"]
            if self._rebuild is None:
                raise CacheError(
                    f"{file}: {problem}; open the cache with its model to recompute it "
                    f"(hagxai cache verify {self.path} checks every shard)"
                )
            fresh = self._rebuild(number)
            if fresh["ids"] != entry["ids"] or fresh["targets"] != entry["targets"]:
                raise CacheError(
                    f"{file}: {problem}, and recomputing it gave other images or targets; "
                    f"delete {self.path} to rebuild the cache"
                )
            self._shards[number] = fresh
            if is_main():
                write_index(self.path, self._index)
        self._verified.add(number)

    def _rows(self, indices: Sequence[int]) -> list[tuple[int, int, int, int]]:
        rows = []
        for i in indices:
            i = int(i)
            if not -len(self) <= i < len(self):
                raise IndexError(f"cache index {i} out of range for {len(self)} images")
            rows.append(self._where[i])
        return rows

    def evidence(
        self,
        indices: Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Evidence:
        """The evidence of the cached images at ``indices``.

        Args:
            indices: positions in :attr:`ids` (repeats allowed).
            device: where the tensors go (``None``: CPU).
            dtype: floating dtype of the returned activations and gradients.

        Returns:
            :class:`Evidence` with ``B = len(indices)`` images in the order of ``indices``,
            ``image_index`` renumbered ``0..B-1``, the images' targets concatenated in that order.
        """
        rows = self._rows(indices)
        acts: dict[str, Tensor] = {}
        grads: dict[str, Tensor] = {}
        for name in self.layers:
            act_parts, grad_parts = [], []
            for number, row, start, count in rows:
                tensors = self._shard(number).tensors
                act_parts.append(tensors[f"acts/{name}"][row : row + 1])
                grad_parts.append(tensors[f"grads/{name}"][start : start + count])
            acts[name] = _gather(act_parts, device, dtype)
            grads[name] = _gather(grad_parts, device, dtype)
        counts = torch.tensor([count for *_, count in rows], dtype=torch.long)
        image_index = torch.repeat_interleave(torch.arange(len(rows)), counts)
        return Evidence(
            layers=list(self.layers),
            acts=acts,
            grads=grads,
            image_index=image_index.to(device or "cpu"),
            input_size=self.input_size,
        )

    def targets(self, indices: Sequence[int], device: torch.device | str | None = None) -> Targets:
        """The targets of the cached images at ``indices``, aligned with :meth:`evidence`.

        Returns:
            :class:`Targets`: ``classes``, ``confidences``, ``boxes`` (``T×4`` xyxy in model-input
            pixels, detectors), ``anchors`` and ``gt_index`` when the adapter gave them, and
            ``image_index`` renumbered ``0..len(indices)-1``.
        """
        rows = self._rows(indices)
        fields: dict[str, Tensor] = {}
        for field in TARGET_FIELDS:
            parts = []
            for number, _row, start, count in rows:
                tensors = self._shard(number).tensors
                if field not in tensors:
                    break
                parts.append(tensors[field][start : start + count])
            else:
                if parts:
                    fields[field] = torch.cat(parts).to(device or "cpu")
        # No images asked for: empty targets rather than a failed concatenation.
        fields.setdefault("classes", torch.zeros(0, dtype=torch.long))
        fields.setdefault("confidences", torch.zeros(0))
        counts = torch.tensor([count for *_, count in rows], dtype=torch.long)
        image_index = torch.repeat_interleave(torch.arange(len(rows)), counts)
        return Targets(
            image_index=image_index.to(device or "cpu"),
            unmatched_gt=[torch.zeros(0, dtype=torch.long) for _ in rows],
            **fields,
        )

    def frames(self, indices: Sequence[int]) -> list[Frame]:
        """How each original image at ``indices`` maps into the model input (from the index:
        no shard is read)."""
        return [
            frame_from_record(self._shards[number]["frames"][row], self.input_size)
            for number, row, _, _ in self._rows(indices)
        ]


def _gather(parts: list[Tensor], device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    device = torch.device(device or "cpu")
    if device.type != "cuda":
        return torch.cat(parts).to(dtype=dtype)
    # Gathered straight into pinned memory, copied without blocking the host, upcast on the GPU:
    # a float16/bfloat16 cache moves half the bytes.
    rows = sum(p.shape[0] for p in parts)
    staged = torch.empty((rows, *parts[0].shape[1:]), dtype=parts[0].dtype, pin_memory=True)
    torch.cat(parts, out=staged)
    return staged.to(device, non_blocking=True).to(dtype)
