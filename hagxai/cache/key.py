"""The cache key: everything that decides a cache's content, hashed (see :mod:`hagxai.cache`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hagxai.cache.rules import TargetRule
from hagxai.data import Sample
from hagxai.models import ModelAdapter, model_digest

CACHE_FORMAT = "hagxai-evidence-cache"
CACHE_VERSION = 1
STORAGE_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
"""Storage dtypes of a cache's activations and gradients, and their names in the key."""


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """A SHA-256 (16 hex digits) over the samples and their image files.

    Each sample enters with its id, image path, image file size and modification time (ns),
    label, boxes (rounded to 3 decimals) and box labels, and map path, in order. A missing image
    file enters as size and time ``-1``: it is skipped at build time, and the key changes once it
    appears.
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


def key_fields(
    adapter: ModelAdapter,
    samples: Sequence[Sample],
    layers: list[str],
    rule: TargetRule,
    dtype: torch.dtype,
    require_maps: bool,
) -> dict[str, Any]:
    """What the key hashes: format and version, model digest, resolved ``layers`` in order, input
    size, the rule's fields, storage ``dtype`` (a key of :data:`STORAGE_DTYPES`),
    ``require_maps`` and the data fingerprint."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "model_digest": model_digest(adapter.model),
        "layers": layers,
        "input_size": list(adapter.input_size),
        "targets": rule.fields(),
        "dtype": STORAGE_DTYPES[dtype],
        "require_maps": require_maps,
        "data": data_fingerprint(samples),
    }


def cache_key(fields: dict[str, Any]) -> str:
    """The first 16 hex digits of the SHA-256 of ``fields`` (sorted JSON)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
