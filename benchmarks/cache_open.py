"""Opening a large evidence cache: stat each shard (now) against hashing every shard (before).

Builds a synthetic cache of about ``--gigabytes`` GB in a temporary folder (deleted at the end):
the real layout (:mod:`hagxai.cache`), with the shapes of the issue's real set (three layers of
64/128/256 channels at 60×80, 30×40 and 15×20, two targets per image, float32), then times

* **before**: the index read and every shard's SHA-256 checked, as every open used to do;
* **now**: :meth:`EvidenceCache.open <hagxai.cache.EvidenceCache.open>` (the index read and a
  ``stat`` per shard; a shard's checksum waits for its first read);
* the first and a second read of a batch of 40 images, to show where the checksum went.

The files were just written, so they sit in the page cache: "before" is the best case of a full
hash (from a cold disk it is slower still). Usage: ``python benchmarks/cache_open.py
[--gigabytes 1] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from hagxai.atomic import write_atomic
from hagxai.cache import EvidenceCache
from hagxai.cache.key import CACHE_FORMAT, CACHE_VERSION
from hagxai.cache.shards import INDEX_FILE, shard_problem, write_index

LAYERS = {"stage1": (64, 60, 80), "stage2": (128, 30, 40), "stage3": (256, 15, 20)}
TARGETS_PER_IMAGE = 2
SHARD_SIZE = 16


def build(path: Path, gigabytes: float) -> int:
    """Write a synthetic cache of about ``gigabytes`` GB to ``path``; return its image count."""
    per_image = sum(c * h * w for c, h, w in LAYERS.values()) * 4 * (1 + TARGETS_PER_IMAGE)
    images = max(SHARD_SIZE, round(gigabytes * 1e9 / per_image))
    generator = torch.Generator().manual_seed(0)
    shards = []
    for number, start in enumerate(range(0, images, SHARD_SIZE)):
        n = min(SHARD_SIZE, images - start)
        t = n * TARGETS_PER_IMAGE
        tensors = {}
        for name, shape in LAYERS.items():
            tensors[f"acts/{name}"] = torch.randn((n, *shape), generator=generator)
            tensors[f"grads/{name}"] = torch.randn((t, *shape), generator=generator)
        tensors["image_index"] = torch.arange(n).repeat_interleave(TARGETS_PER_IMAGE)
        tensors["classes"] = torch.zeros(t, dtype=torch.long)
        tensors["confidences"] = torch.ones(t)
        data = safetensors_bytes(tensors, metadata={"format": CACHE_FORMAT, "key": "bench"})
        file = path / f"shard-{number:05d}.safetensors"
        write_atomic(file, data)
        ids = [f"img{start + i:06d}" for i in range(n)]
        shards.append(
            {
                "file": file.name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "mtime_ns": file.stat().st_mtime_ns,
                "samples": ids,
                "ids": ids,
                "targets": [TARGETS_PER_IMAGE] * n,
                "frames": [[480, 640, 0.125, 0.125, 0.0, 0.0]] * n,
                "skipped": {},
            }
        )
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "key": "bench",
        "key_fields": {"dtype": "float32"},
        "layers": list(LAYERS),
        "input_size": [480, 640],
        "shard_size": SHARD_SIZE,
        "num_samples": images,
        "shards": shards,
    }
    write_index(path, index)
    return images


def open_hashing_every_shard(path: Path) -> EvidenceCache:
    """What opening did before: read the index and check every shard's size and SHA-256."""
    index = json.loads((path / INDEX_FILE).read_text())
    for entry in index["shards"]:
        if shard_problem(path, entry, checksum=True) is not None:
            raise RuntimeError(f"{entry['file']} is bad")
    return EvidenceCache(path, index)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hagxai-cache-open-") as folder:
        path = Path(folder)
        images = build(path, args.gigabytes)
        size = sum(p.stat().st_size for p in path.glob("shard-*.safetensors"))
        shards = len(list(path.glob("shard-*.safetensors")))
        print(f"synthetic cache: {images} images, {shards} shards, {size / 1e9:.2f} GB (float32)")
        pairs = [
            (
                _timed(lambda: open_hashing_every_shard(path)),
                _timed(lambda: EvidenceCache.open(path)),
            )
            for _ in range(args.repeats)
        ]
        before = [p[0] for p in pairs]
        now = [p[1] for p in pairs]
        ratios = [b / n for b, n in pairs]
        print(
            f"open, hashing every shard (before): median {statistics.median(before):.3f} s, "
            f"min {min(before):.3f} s"
        )
        print(
            f"open, stat per shard (now):         median {statistics.median(now) * 1e3:.1f} ms, "
            f"min {min(now) * 1e3:.1f} ms"
        )
        print(
            f"ratio before / now: median {statistics.median(ratios):.0f}x, min {min(ratios):.0f}x"
        )
        cache = EvidenceCache.open(path)
        batch = list(range(0, min(40, images)))
        first = _timed(lambda: cache.evidence(batch))
        second = _timed(lambda: cache.evidence(batch))
        print(
            f"read of {len(batch)} images: first {first:.3f} s (checks the SHA-256 of the "
            f"{-(-len(batch) // SHARD_SIZE)} shards it touches), second {second:.3f} s"
        )


if __name__ == "__main__":
    main()
