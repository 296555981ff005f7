"""The evidence cache on disk: built or reopened for a model, layers, target rule and data, then
read in batches (layout, key and integrity: :mod:`hagxai.cache`)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hagxai.cache.compute import TARGET_FIELDS, frame_from_record
from hagxai.cache.key import CACHE_FORMAT, CACHE_VERSION, STORAGE_DTYPES, cache_key, key_fields
from hagxai.cache.rules import DEFAULT_RULE, TargetRule
from hagxai.cache.shards import (
    CacheError,
    MappedShard,
    ShardBuilder,
    read_index,
    shard_is_valid,
    write_index,
)
from hagxai.console import progress_bar
from hagxai.data import Sample
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
    """

    def __init__(self, path: Path, index: dict[str, Any], max_open_shards: int = 16) -> None:
        self.path = path
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
            dtype: storage dtype, ``torch.float32`` or ``torch.float16`` (half the disk and
                reading cost; relative error ~1e-3). Part of the key.
            progress: show a progress bar while computing.
            require_maps: skip samples without a readable, finite attention map (a training
                cache needs them).
            shard_size: consecutive samples per shard; an existing cache keeps its own.
            max_open_shards: how many shard files stay memory-mapped at once.

        Returns:
            the cache, ready to read.

        Raises:
            UserError: a target rule that does not apply to the model, an unknown layer or a
                storage dtype other than float32 / float16.
            CacheError: an index whose layers or input size disagree with the request.
        """
        if dtype not in STORAGE_DTYPES:
            raise UserError(f"cache dtype must be float32 or float16, got {dtype}")
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
        todo = [n for n, entry in enumerate(index["shards"]) if not shard_is_valid(path, entry)]
        builder = ShardBuilder(adapter, names, rule, require_maps, batch_size, dtype)
        total = sum(len(samples[n * size : (n + 1) * size]) for n in todo)
        with progress_bar("evidence cache", total, progress) as tick:
            for number in todo:
                chunk = samples[number * size : (number + 1) * size]
                index["shards"][number] = builder.write(path, number, chunk, key, tick)
                write_index(path, index)
        cache = cls(path, index, max_open_shards)
        cache.computed_shards = todo
        return cache

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
        if stat is None or stat.st_size != entry["bytes"] or stat.st_mtime_ns != entry["mtime_ns"]:
            raise CacheError(
                f"{file} changed on disk since the cache was opened; open it again to rebuild"
            )
        shard = MappedShard(file)
        self._open[number] = shard
        if len(self._open) > self._max_open:
            self._open.popitem(last=False)
        return shard

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
