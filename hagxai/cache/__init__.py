"""The evidence cache: a frozen model's evidence over a dataset, computed once, read many times.

The model is frozen, so its activations and per-target gradients for an image never change; the
combiner trains on them at the speed of memory (DESIGN.md, "Data flow"). Readers see an
:class:`EvidenceSource`: the disk cache (:class:`EvidenceCache`) or, for datasets too big to
store, :class:`StreamingEvidence`, which computes the same evidence on the fly;
:func:`open_evidence` picks one.

Modules: :mod:`~hagxai.cache.source` (the reading interface), :mod:`~hagxai.cache.rules` (target
rule, sample checks), :mod:`~hagxai.cache.key` (the cache key, the data fingerprint),
:mod:`~hagxai.cache.compute` (batched computing with retry and skip),
:mod:`~hagxai.cache.shards` (shard files, index), :mod:`~hagxai.cache.store` (the cache),
:mod:`~hagxai.cache.stream` (the stream).

Layout, under ``root/<key>/``::

    index.json               what the cache holds: key fields, layers, input size, and per shard
                             its file, SHA-256, size, sample chunk, cached ids, target counts,
                             frames and skipped samples
    shard-00000.safetensors  one chunk of ``shard_size`` consecutive samples: ``acts/<layer>``
                             (``n×C×h×w``), ``grads/<layer>`` (``t×C×h×w``), ``image_index``,
                             ``classes``, ``confidences`` (``t``), ``boxes`` (``t×4``, detectors),
                             ``anchors`` and ``gt_index`` (``t``, when the adapter gives them)

The **key** is the first 16 hex digits of a SHA-256 over: the cache format version, the model's
weights digest (:func:`hagxai.models.model_digest`), the resolved layer names in order, the input
size, the target rule and its thresholds, the storage dtype, whether maps are required, and the
data fingerprint. The **data fingerprint** is a SHA-256 over each sample's id, image path, image
file size and modification time (ns), label, boxes and box labels, and map path: a sample added,
removed, re-ordered, re-labelled or an image rewritten gives a new key (so does copying the data
elsewhere, which changes paths and times: the safe side). A request with another layer set
therefore gets **another key** (another cache), never a mixed one; an index whose recorded layers
disagree with its key raises :class:`CacheError`.

Integrity: every shard is written to a temporary file and renamed; ``index.json`` is rewritten
(atomically) after each shard, so an interrupted build resumes where it stopped. Opening a cache
reads no shard: each one's size is checked against the index (a ``stat``), and a missing or
truncated shard is recomputed from its chunk of samples. A shard's SHA-256 is checked when it is
first read; an altered or foreign one is then recomputed (or, for a cache opened without its model
by :meth:`EvidenceCache.open`, raises :class:`CacheError`), never read. ``hagxai cache verify DIR``
checks every shard's checksum at once. Reads memory-map the shard files (an
LRU keeps ``max_open_shards`` of them mapped), so a random batch costs one copy of its rows.

Bad samples never crash a build: an unreadable image (:class:`~hagxai.errors.DataError`), a
missing or non-finite attention map, a classifier sample without a label, an image without a
target, non-finite evidence, or any error of the model on that one image are skipped, counted and
listed in ``skipped`` (sample id -> reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hagxai.cache.key import data_fingerprint
from hagxai.cache.rules import DEFAULT_RULE, TARGET_RULES, TargetRule, sample_problem
from hagxai.cache.shards import CacheError
from hagxai.cache.source import EvidenceSource
from hagxai.cache.store import EvidenceCache
from hagxai.cache.stream import StreamingEvidence
from hagxai.data import Sample
from hagxai.models import ModelAdapter

__all__ = [
    "TARGET_RULES",
    "CacheError",
    "EvidenceCache",
    "EvidenceSource",
    "StreamingEvidence",
    "TargetRule",
    "data_fingerprint",
    "open_evidence",
    "sample_problem",
]


def open_evidence(
    adapter: ModelAdapter,
    samples: Sequence[Sample],
    *,
    layers: list[str],
    root: Path | None,
    rule: TargetRule = DEFAULT_RULE,
    stream: bool = False,
    **kw: Any,
) -> EvidenceSource:
    """The evidence of ``samples``: a disk cache under ``root``, or streamed when ``stream`` is
    set or ``root`` is ``None``.

    Args:
        adapter, samples, layers, rule: as :meth:`EvidenceCache.build`.
        root: the caches' folder (``None``: stream).
        stream: compute on the fly instead of caching.
        **kw: options of :meth:`EvidenceCache.build`; those that only concern storage
            (``dtype``, ``progress``, ``shard_size``, ``max_open_shards``, ``distributed``) are
            ignored when streaming.

    Returns:
        an :class:`EvidenceCache` or a :class:`StreamingEvidence`.
    """
    if stream or root is None:
        for storage_only in ("dtype", "progress", "shard_size", "max_open_shards", "distributed"):
            kw.pop(storage_only, None)
        return StreamingEvidence(adapter, samples, layers=layers, rule=rule, **kw)
    return EvidenceCache.build(adapter, samples, layers=layers, root=Path(root), rule=rule, **kw)
