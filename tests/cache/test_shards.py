"""Shard files: memory-mapped reads equal safetensors' own, the index is checked."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import load_file, save_file

from hagxai.cache.key import CACHE_FORMAT, CACHE_VERSION
from hagxai.cache.shards import (
    INDEX_FILE,
    CacheError,
    MappedShard,
    read_index,
    shard_is_valid,
    write_index,
)


def test_mapped_shard_reads_what_safetensors_wrote(tmp_path):
    tensors = {
        "acts/a": torch.randn(2, 3, 4, 5),
        "grads/a": torch.randn(3, 3, 4, 5).half(),
        "classes": torch.tensor([1, 0, 3]),
        "empty": torch.zeros(0, 4),
    }
    save_file(tensors, tmp_path / "s.safetensors", metadata={"format": CACHE_FORMAT})
    mapped = MappedShard(tmp_path / "s.safetensors").tensors
    want = load_file(tmp_path / "s.safetensors")
    assert set(mapped) == set(want)
    for name, value in want.items():
        assert mapped[name].dtype == value.dtype and torch.equal(mapped[name], value)


def test_index_is_read_only_for_its_key_and_request(tmp_path):
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "key": "k",
        "layers": ["a"],
        "input_size": [8, 8],
        "shards": [],
    }
    assert read_index(tmp_path, "k", ["a"], (8, 8)) is None
    write_index(tmp_path, index)
    assert read_index(tmp_path, "k", ["a"], (8, 8)) == index
    assert read_index(tmp_path, "other", ["a"], (8, 8)) is None
    with pytest.raises(CacheError, match="delete the folder"):
        read_index(tmp_path, "k", ["b"], (8, 8))
    (tmp_path / INDEX_FILE).write_text("{broken")
    assert read_index(tmp_path, "k", ["a"], (8, 8)) is None


def test_a_shard_is_valid_only_as_recorded(tmp_path):
    data = b"shard bytes"
    (tmp_path / "s").write_bytes(data)
    entry = {"file": "s", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert shard_is_valid(tmp_path, entry) and "mtime_ns" in entry
    assert shard_is_valid(tmp_path, {"file": None}) and not shard_is_valid(tmp_path, None)
    (tmp_path / "s").write_bytes(b"shard bytez")
    assert not shard_is_valid(tmp_path, entry)
    (tmp_path / "s").unlink()
    assert not shard_is_valid(tmp_path, entry)
