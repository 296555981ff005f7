"""The evidence cache: a frozen model's evidence over a dataset, computed once, read many times.

The model is frozen, so its activations and per-target gradients for an image never change; the
combiner trains on them at the speed of memory (DESIGN.md, "Data flow").

Layout, under ``root/<key>/``::

    index.json               what the cache holds: key fields, layers, input size, and per shard
                             its file, SHA-256, size, sample chunk, cached ids, target counts,
                             frames and skipped samples
    shard-00000.safetensors  one chunk of ``shard_size`` consecutive samples: ``acts/<layer>``
                             (``n×C×h×w``), ``grads/<layer>`` (``t×C×h×w``), ``image_index``,
                             ``classes``, ``confidences`` (``t``), ``boxes`` (``t×4``, detectors),
                             ``anchors`` and ``gt_index`` (``t``, when the adapter gives them)

The **key** is the first 16 hex digits of a SHA-256 over: the cache format version, the model's
weights digest (:func:`hagxai.export.model_digest`), the resolved layer names in order, the input
size, the target rule and its thresholds, the storage dtype, whether maps are required, and the
data fingerprint. The **data fingerprint** is a SHA-256 over each sample's id, image path, image
file size and modification time (ns), label, boxes and box labels, and map path: a sample added,
removed, re-ordered, re-labelled or an image rewritten gives a new key (so does copying the data
elsewhere, which changes paths and times: the safe side). A request with another layer set
therefore gets **another key** (another cache), never a mixed one; an index whose recorded layers
disagree with its key raises :class:`CacheError`.

Integrity: every shard is written to a temporary file and renamed; ``index.json`` is rewritten
(atomically) after each shard, so an interrupted build resumes where it stopped. On open, each
shard's size and SHA-256 are checked against the index; a missing, truncated, altered or foreign
shard is recomputed from its chunk of samples, never read. Reads memory-map the shard files (an
LRU keeps ``max_open_shards`` of them mapped), so a random batch costs one copy of its rows.

Bad samples never crash a build: an unreadable image (:class:`~hagxai.errors.DataError`), a
missing or non-finite attention map, a classifier sample without a label, an image without a
target, non-finite evidence, or any error of the model on that one image are skipped, counted and
listed in ``skipped`` (sample id -> reason).

:class:`StreamingEvidence` has the same reading interface but computes evidence on the fly, for
datasets too big to store.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from hagxai.data.sample import Sample
from hagxai.errors import DataError, UserError
from hagxai.evidence import Evidence
from hagxai.evidence_extraction import extract_evidence
from hagxai.export import model_digest
from hagxai.models.base import Frame, ModelAdapter, Targets, TargetSpec, capture_layers
from hagxai.pil import open_image

CACHE_FORMAT = "hagxai-evidence-cache"
CACHE_VERSION = 1
INDEX_FILE = "index.json"
TARGET_RULES = {"classification": ("label", "predicted"), "detection": ("boxes", "detections")}
_STORAGE_DTYPES = {torch.float32: "float32", torch.float16: "float16"}
_SAFETENSORS_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
}
_TARGET_FIELDS = ("classes", "confidences", "boxes", "anchors", "gt_index")


class CacheError(UserError):
    """A cache that cannot be used as asked (another layer set, a shard changed while open)."""


@dataclass(frozen=True)
class TargetRule:
    """How targets are chosen for the cache: the rule and the thresholds it uses."""

    rule: str
    iou_threshold: float = 0.5
    conf_threshold: float = 0.25
    max_per_image: int | None = None
    classes: tuple[int, ...] | None = None

    def spec(self, samples: Sequence[Sample]) -> TargetSpec:
        """The :class:`TargetSpec` of a batch of samples under this rule."""
        if self.rule == "label":
            return TargetSpec(labels=[[int(s.label)] for s in samples])
        if self.rule == "predicted":
            return TargetSpec(predicted=True)
        if self.rule == "boxes":
            return TargetSpec(
                boxes=[torch.from_numpy(s.boxes).reshape(-1, 4) for s in samples],
                labels=[torch.from_numpy(s.box_labels) for s in samples],
                iou_threshold=self.iou_threshold,
                conf_threshold=self.conf_threshold,
                classes=self.classes,
            )
        return TargetSpec(
            conf_threshold=self.conf_threshold,
            max_per_image=self.max_per_image,
            classes=self.classes,
        )

    def fields(self) -> dict[str, Any]:
        """The thresholds that matter for this rule (they enter the cache key)."""
        if self.rule in ("label", "predicted"):
            return {"rule": self.rule}
        out: dict[str, Any] = {"rule": self.rule, "conf_threshold": self.conf_threshold}
        if self.rule == "boxes":
            out["iou_threshold"] = self.iou_threshold
        else:
            out["max_per_image"] = self.max_per_image
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out


def _check_rule(adapter: ModelAdapter, rule: TargetRule) -> None:
    allowed = TARGET_RULES[adapter.task]
    if rule.rule not in allowed:
        raise UserError(
            f"target_rule {rule.rule!r} does not apply to a {adapter.task} model "
            f"(choose one of {', '.join(allowed)})"
        )


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """A SHA-256 (16 hex digits) over the samples and their image files (see module docstring).

    A missing image file enters as size and time ``-1``: it is skipped at build time, and the key
    changes once it appears.
    """
    digest = hashlib.sha256()
    for sample in samples:
        try:
            stat = os.stat(sample.image_path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        record = [
            sample.id,
            str(sample.image_path),
            size,
            mtime,
            sample.label,
            np.asarray(sample.boxes, np.float32).round(3).tolist(),
            np.asarray(sample.box_labels, np.int64).tolist(),
            str(sample.map_path),
        ]
        digest.update(json.dumps(record).encode() + b"\n")
    return digest.hexdigest()[:16]


def sample_problem(sample: Sample, rule: TargetRule, require_maps: bool) -> str | None:
    """Why a sample cannot be used, found without the model (``None`` when none is known yet).

    Checks the attention map (when required), the classifier label, and that the image file
    exists and its header reads (the pixels are decoded later).
    """
    if rule.rule == "label" and sample.label is None:
        return "no label for target_rule 'label'"
    if require_maps:
        if sample.map_path is None:
            return "no attention map"
        try:
            sample.load_map()
        except DataError as err:
            return f"bad attention map: {err}"
    try:
        with open_image(sample.image_path) as image:
            image.verify()
    except FileNotFoundError:
        return f"unreadable image: {sample.image_path} does not exist"
    except Exception as err:  # PIL raises many types for a broken file; each is this one sample's
        return f"unreadable image: {sample.image_path}: {err}"
    return None


def _load_image(sample: Sample) -> Tensor:
    """``3×H×W`` uint8 (the adapter's preprocessing scales it to [0, 1])."""
    # A copy: the decoded array is read-only, and torch tensors must be writable.
    return torch.from_numpy(np.array(sample.load_image())).permute(2, 0, 1)


@dataclass
class _Computed:
    """Evidence of some samples, one row per kept image, targets grouped by image."""

    ids: list[str]
    acts: dict[str, Tensor]  # layer -> n×C×h×w
    grads: dict[str, Tensor]  # layer -> t×C×h×w
    counts: list[int]  # targets per kept image
    targets: dict[str, Tensor]  # _TARGET_FIELDS present -> t(×4)
    frames: list[Frame]
    skipped: dict[str, str]


def _compute(
    adapter: ModelAdapter,
    samples: Sequence[Sample],
    layers: list[str],
    rule: TargetRule,
    require_maps: bool,
    on_batch: Callable[[int], None],
    batch_size: int,
) -> _Computed:
    """Evidence of ``samples`` in batches; a failing batch is retried one image at a time so only
    the bad image is skipped."""
    skipped: dict[str, str] = {}
    good: list[Sample] = []
    for sample in samples:
        problem = sample_problem(sample, rule, require_maps)
        if problem is None:
            good.append(sample)
        else:
            skipped[sample.id] = problem
    parts: list[_Computed] = []
    for start in range(0, len(good), batch_size):
        batch = good[start : start + batch_size]
        try:
            parts.append(_compute_batch(adapter, batch, layers, rule))
        except Exception:
            # Retry one image at a time so that only the bad image is skipped.
            for sample in batch:
                try:
                    parts.append(_compute_batch(adapter, [sample], layers, rule))
                except Exception as err:
                    # Whatever broke this one image must not stop the build: it is listed.
                    skipped[sample.id] = f"{type(err).__name__}: {err}".splitlines()[0]
        on_batch(len(batch))
    on_batch(len(samples) - len(good))
    for part in parts:
        skipped.update(part.skipped)
    order = {sample.id: i for i, sample in enumerate(samples)}
    skipped = dict(sorted(skipped.items(), key=lambda item: order[item[0]]))
    return _concat(parts, layers, skipped)


def _compute_batch(
    adapter: ModelAdapter, batch: Sequence[Sample], layers: list[str], rule: TargetRule
) -> _Computed:
    images = [_load_image(sample) for sample in batch]
    with warnings.catch_warnings():
        # Images without targets are reported in ``skipped``, not as a warning per batch.
        warnings.simplefilter("ignore")
        extraction = extract_evidence(adapter, images, rule.spec(batch), layers)
    evidence, targets = extraction.evidence, extraction.targets
    image_index = targets.image_index.cpu()
    order = torch.argsort(image_index, stable=True)
    counts = torch.bincount(image_index, minlength=len(batch))
    finite = torch.ones(len(batch), dtype=torch.bool)
    for name in layers:
        acts, grads = evidence.acts[name].cpu(), evidence.grads[name].cpu()
        finite &= torch.isfinite(acts).flatten(1).all(1)
        bad_rows = ~torch.isfinite(grads).flatten(1).all(1)
        finite[image_index[bad_rows]] = False
    skipped: dict[str, str] = {}
    for i, sample in enumerate(batch):
        if counts[i] == 0:
            skipped[sample.id] = "no target"
        elif not finite[i]:
            skipped[sample.id] = "non-finite evidence"
    keep = torch.tensor([s.id not in skipped for s in batch])
    keep_rows = keep[image_index[order]]
    rows = order[keep_rows]
    fields: dict[str, Tensor] = {}
    for field in _TARGET_FIELDS:
        value = getattr(targets, field)
        if value is not None:
            fields[field] = value.detach().cpu()[rows]
    fields["confidences"] = fields["confidences"].float()
    return _Computed(
        ids=[s.id for s, k in zip(batch, keep.tolist()) if k],
        acts={n: evidence.acts[n].cpu()[keep] for n in layers},
        grads={n: evidence.grads[n].cpu()[rows] for n in layers},
        counts=counts[keep].tolist(),
        targets=fields,
        frames=[f for f, k in zip(extraction.prepared.frames, keep.tolist()) if k],
        skipped=skipped,
    )


def _concat(parts: list[_Computed], layers: list[str], skipped: dict[str, str]) -> _Computed:
    parts = [p for p in parts if p.ids]
    if not parts:
        return _Computed([], {}, {}, [], {}, [], skipped)
    return _Computed(
        ids=[i for p in parts for i in p.ids],
        acts={n: torch.cat([p.acts[n] for p in parts]) for n in layers},
        grads={n: torch.cat([p.grads[n] for p in parts]) for n in layers},
        counts=[c for p in parts for c in p.counts],
        targets={k: torch.cat([p.targets[k] for p in parts]) for k in parts[0].targets},
        frames=[f for p in parts for f in p.frames],
        skipped=skipped,
    )


def _frame_record(frame: Frame) -> list[float]:
    return [*frame.orig_size, *frame.scale, *frame.pad]


def _frame(record: Sequence[float], input_size: tuple[int, int]) -> Frame:
    h0, w0, sy, sx, top, left = record
    return Frame((int(h0), int(w0)), (sy, sx), (top, left), input_size)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder and rename: never half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class _MappedShard:
    """A shard file memory-mapped, its tensors as zero-copy views (safetensors layout:
    8-byte little-endian header length, JSON header, then the raw data)."""

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


class EvidenceCache:
    """Evidence of a frozen model over a list of samples, sharded on disk (see module docstring).

    Build or reopen with :meth:`build`; read batches with :meth:`evidence` and :meth:`targets`.

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
        self._open: OrderedDict[int, _MappedShard] = OrderedDict()
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
        target_rule: str = "label",
        batch_size: int = 16,
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
        iou_threshold: float = 0.5,
        conf_threshold: float = 0.25,
        max_per_image: int | None = None,
        require_maps: bool = True,
        shard_size: int = 64,
        max_open_shards: int = 16,
        classes: Sequence[int] | None = None,
    ) -> EvidenceCache:
        """Open the cache for this model, layers, targets and data; compute what is missing.

        Args:
            adapter: the frozen model's adapter (its device computes the evidence).
            samples: the images to cache, in cache order.
            layers: layer names or aliases (resolved by the adapter; part of the key).
            root: the folder that holds caches (``root/<key>/``).
            target_rule: classifier: ``"label"`` (ground-truth class) or ``"predicted"``;
                detector: ``"boxes"`` (detections matched to ground-truth boxes, IoU ≥
                ``iou_threshold``) or ``"detections"`` (confidence ≥ ``conf_threshold``, at most
                ``max_per_image``).
            batch_size: images per forward/backward pass.
            dtype: storage dtype, ``torch.float32`` or ``torch.float16`` (half the disk and
                reading cost; relative error ~1e-3). Part of the key.
            progress: show a progress bar while computing.
            iou_threshold, conf_threshold, max_per_image: detector thresholds (see above).
            classes: detector: only detections and boxes of these classes become targets (the
                dataset's class subset); ``None`` = all. Part of the cache key.
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
        if dtype not in _STORAGE_DTYPES:
            raise UserError(f"cache dtype must be float32 or float16, got {dtype}")
        if batch_size < 1 or shard_size < 1:
            raise UserError("batch_size and shard_size must be positive")
        rule = TargetRule(
            target_rule,
            iou_threshold,
            conf_threshold,
            max_per_image,
            None if classes is None else tuple(classes),
        )
        _check_rule(adapter, rule)
        names = adapter.resolve_layers(layers)
        key_fields = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "model_digest": model_digest(adapter.model),
            "layers": names,
            "input_size": list(adapter.input_size),
            "targets": rule.fields(),
            "dtype": _STORAGE_DTYPES[dtype],
            "require_maps": require_maps,
            "data": data_fingerprint(samples),
        }
        key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(root) / key
        path.mkdir(parents=True, exist_ok=True)
        index = _read_index(path, key, names, tuple(adapter.input_size))
        if index is None:
            index = {
                "format": CACHE_FORMAT,
                "version": CACHE_VERSION,
                "key": key,
                "key_fields": key_fields,
                "layers": names,
                "input_size": list(adapter.input_size),
                "shard_size": shard_size,
                "num_samples": len(samples),
                "shards": [None] * -(-len(samples) // shard_size),
            }
        size = index["shard_size"]
        todo = [
            n for n, entry in enumerate(index["shards"]) if not _shard_is_valid(path, entry, key)
        ]
        builder = _ShardBuilder(adapter, samples, names, rule, require_maps, batch_size, dtype)
        with _ProgressBar(
            progress, sum(len(samples[n * size : (n + 1) * size]) for n in todo)
        ) as tick:
            for number in todo:
                chunk = samples[number * size : (number + 1) * size]
                index["shards"][number] = builder.write(path, number, chunk, key, tick)
                _write_atomic(path / INDEX_FILE, (json.dumps(index, indent=1) + "\n").encode())
        cache = cls(path, index, max_open_shards)
        cache.computed_shards = todo
        return cache

    def __len__(self) -> int:
        """Number of cached images."""
        return len(self.ids)

    def _shard(self, number: int) -> _MappedShard:
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
        shard = _MappedShard(file)
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
        for field in _TARGET_FIELDS:
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
        """How each original image at ``indices`` maps into the model input."""
        return [
            _frame(self._shards[number]["frames"][row], self.input_size)
            for number, row, _, _ in self._rows(indices)
        ]


def _gather(parts: list[Tensor], device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    out = torch.cat(parts)
    return out.to(device=device or "cpu", dtype=dtype)


class _ShardBuilder:
    """Computes one chunk of samples and writes it as a shard."""

    def __init__(
        self,
        adapter: ModelAdapter,
        samples: Sequence[Sample],
        layers: list[str],
        rule: TargetRule,
        require_maps: bool,
        batch_size: int,
        dtype: torch.dtype,
    ) -> None:
        self.adapter, self.layers, self.rule = adapter, layers, rule
        self.require_maps, self.batch_size, self.dtype = require_maps, batch_size, dtype

    def write(
        self, path: Path, number: int, chunk: Sequence[Sample], key: str, tick: Callable
    ) -> dict[str, Any]:
        computed = _compute(
            self.adapter, chunk, self.layers, self.rule, self.require_maps, tick, self.batch_size
        )
        entry: dict[str, Any] = {
            "file": None,
            "samples": [s.id for s in chunk],
            "ids": computed.ids,
            "targets": computed.counts,
            "frames": [_frame_record(f) for f in computed.frames],
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
        _write_atomic(file, data)
        stat = file.stat()
        entry |= {
            "file": file.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
        }
        return entry


def _read_index(
    path: Path, key: str, layers: list[str], input_size: tuple[int, int]
) -> dict[str, Any] | None:
    """The index of an existing cache, or ``None`` when there is none or it is unreadable."""
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


def _shard_is_valid(path: Path, entry: dict[str, Any] | None, key: str) -> bool:
    """Whether a shard entry is complete and its file matches size and SHA-256 (a chunk where
    every sample was skipped has no file and is valid)."""
    if entry is None:
        return False
    if entry["file"] is None:
        return True
    file = path / entry["file"]
    try:
        data = file.read_bytes()
    except OSError:
        return False
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return False
    # Re-record the time stamp: a valid file copied or touched must still open for reading.
    entry["mtime_ns"] = file.stat().st_mtime_ns
    return True


class _ProgressBar:
    """A rich progress bar over ``total`` samples; yields ``tick(n)``."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled and total > 0, total
        self._progress = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("evidence cache"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._progress.start()
        task = self._progress.add_task("cache", total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


class StreamingEvidence:
    """The reading interface of :class:`EvidenceCache`, computed on the fly (nothing stored).

    For datasets too big to cache. ``ids`` holds the samples that pass the checks that need no
    model (label, attention map, image header). An image that fails later (pixels unreadable,
    no target, non-finite evidence) keeps its place in ``ids``, contributes all-zero activations
    and no targets (its map is all zero), and is added to ``skipped`` when first computed.

    Args: as :meth:`EvidenceCache.build`, without ``root``, ``dtype``, ``progress`` and the
    shard options; ``batch_size`` bounds the images of one forward/backward pass.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        samples: Sequence[Sample],
        *,
        layers: list[str],
        target_rule: str = "label",
        batch_size: int = 16,
        iou_threshold: float = 0.5,
        conf_threshold: float = 0.25,
        max_per_image: int | None = None,
        require_maps: bool = True,
        classes: Sequence[int] | None = None,
    ) -> None:
        self.adapter = adapter
        self.rule = TargetRule(
            target_rule,
            iou_threshold,
            conf_threshold,
            max_per_image,
            None if classes is None else tuple(classes),
        )
        _check_rule(adapter, self.rule)
        self.layers = adapter.resolve_layers(layers)
        self.input_size: tuple[int, int] = tuple(adapter.input_size)
        self.batch_size = batch_size
        self.skipped: dict[str, str] = {}
        self._samples: list[Sample] = []
        for sample in samples:
            problem = sample_problem(sample, self.rule, require_maps)
            if problem is None:
                self._samples.append(sample)
            else:
                self.skipped[sample.id] = problem
        self.ids = [s.id for s in self._samples]
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._last: tuple[tuple[int, ...], Evidence, Targets, list[Frame]] | None = None

    def __len__(self) -> int:
        """Number of images that can be asked for."""
        return len(self.ids)

    def _compute(self, indices: Sequence[int]) -> tuple[Evidence, Targets, list[Frame]]:
        key = tuple(int(i) for i in indices)
        if self._last is not None and self._last[0] == key:
            return self._last[1:]
        chosen = [self._samples[i] for i in key]
        computed = _compute(
            self.adapter,
            chosen,
            self.layers,
            self.rule,
            False,
            lambda n: None,
            self.batch_size,
        )
        self.skipped.update(computed.skipped)
        position = {sample_id: i for i, sample_id in enumerate(computed.ids)}
        counts = torch.tensor(computed.counts, dtype=torch.long)
        starts = torch.cumsum(counts, 0) - counts
        acts, grads = {}, {}
        for name in self.layers:
            shape = self._layer_shape(name, computed)
            act_rows, grad_rows = [], []
            for sample in chosen:
                p = position.get(sample.id)
                if p is None:
                    act_rows.append(torch.zeros(1, *shape))
                else:
                    act_rows.append(computed.acts[name][p : p + 1].float())
                    begin = int(starts[p])
                    grad_rows.append(computed.grads[name][begin : begin + int(counts[p])].float())
            acts[name] = torch.cat(act_rows)
            grads[name] = torch.cat(grad_rows) if grad_rows else torch.zeros(0, *shape)
        per_image = [int(counts[position[s.id]]) if s.id in position else 0 for s in chosen]
        image_index = torch.repeat_interleave(torch.arange(len(chosen)), torch.tensor(per_image))
        target_rows = torch.cat(
            [
                torch.arange(int(starts[position[s.id]]), int(starts[position[s.id]]) + n)
                for s, n in zip(chosen, per_image)
                if n
            ]
            or [torch.zeros(0, dtype=torch.long)]
        )
        fields = {k: v[target_rows] for k, v in computed.targets.items()}
        fields.setdefault("classes", torch.zeros(0, dtype=torch.long))
        fields.setdefault("confidences", torch.zeros(0))
        targets = Targets(
            image_index=image_index,
            unmatched_gt=[torch.zeros(0, dtype=torch.long) for _ in chosen],
            **fields,
        )
        evidence = Evidence(list(self.layers), acts, grads, image_index, self.input_size)
        frame_of = dict(zip(computed.ids, computed.frames))
        frames = [
            frame_of.get(s.id) or Frame((0, 0), (0.0, 0.0), (0.0, 0.0), self.input_size)
            for s in chosen
        ]
        self._last = (key, evidence, targets, frames)
        return evidence, targets, frames

    def _layer_shape(self, layer: str, computed: _Computed) -> tuple[int, ...]:
        """``C×h×w`` of a layer, from the computed batch or, if none was kept, one blank pass."""
        if computed.ids:
            return tuple(computed.acts[layer].shape[1:])
        if self._shapes is None:
            x = torch.zeros(1, 3, *self.input_size, device=self.adapter.device)
            with torch.no_grad(), capture_layers(self.adapter, self.layers) as captured:
                self.adapter.forward(x)
            self._shapes = {n: tuple(captured[n].shape[1:]) for n in self.layers}
        return self._shapes[layer]

    def evidence(
        self,
        indices: Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Evidence:
        """As :meth:`EvidenceCache.evidence`, computed now (a repeat of the last request is
        served from memory)."""
        return self._compute(indices)[0].to(device or "cpu", dtype)

    def targets(self, indices: Sequence[int], device: torch.device | str | None = None) -> Targets:
        """As :meth:`EvidenceCache.targets`."""
        targets = self._compute(indices)[1]
        if device is None:
            return targets
        return Targets(
            image_index=targets.image_index.to(device),
            classes=targets.classes.to(device),
            confidences=targets.confidences.to(device),
            boxes=None if targets.boxes is None else targets.boxes.to(device),
            anchors=None if targets.anchors is None else targets.anchors.to(device),
            gt_index=None if targets.gt_index is None else targets.gt_index.to(device),
            unmatched_gt=targets.unmatched_gt,
        )

    def frames(self, indices: Sequence[int]) -> list[Frame]:
        """As :meth:`EvidenceCache.frames` (an image that failed gets an empty frame)."""
        return self._compute(indices)[2]


def open_evidence(
    adapter: ModelAdapter,
    samples: Sequence[Sample],
    *,
    layers: list[str],
    root: Path | None,
    stream: bool = False,
    **kw: Any,
) -> EvidenceCache | StreamingEvidence:
    """The evidence of ``samples``: a disk cache under ``root``, or streamed when ``stream`` is
    set or ``root`` is ``None``.

    Args:
        adapter, samples, layers: as :meth:`EvidenceCache.build`.
        root: the caches' folder (``None``: stream).
        stream: compute on the fly instead of caching.
        **kw: options of :meth:`EvidenceCache.build`; those that only concern storage
            (``dtype``, ``progress``, ``shard_size``, ``max_open_shards``) are ignored when
            streaming.
    """
    if stream or root is None:
        for storage_only in ("dtype", "progress", "shard_size", "max_open_shards"):
            kw.pop(storage_only, None)
        return StreamingEvidence(adapter, samples, layers=layers, **kw)
    return EvidenceCache.build(adapter, samples, layers=layers, root=Path(root), **kw)
