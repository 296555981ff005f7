"""The cache key: the data fingerprint follows every change that matters, and nothing else."""

from __future__ import annotations

import os

import torch

from hagxai.cache.key import cache_key, data_fingerprint, key_fields
from hagxai.cache.rules import TargetRule


def test_data_fingerprint_follows_the_data(samples):
    base = data_fingerprint(samples)
    assert len(base) == 16 and data_fingerprint(samples) == base
    assert data_fingerprint(samples[::-1]) != base
    assert data_fingerprint(samples[1:]) != base
    samples[0].label = (samples[0].label + 1) % 4
    relabelled = data_fingerprint(samples)
    assert relabelled != base
    stat = samples[1].image_path.stat()
    os.utime(samples[1].image_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert data_fingerprint(samples) != relabelled


def test_key_fields_name_the_request(classifier, samples):
    fields = key_fields(classifier, samples, ["layer4"], TargetRule(), torch.float16, True)
    assert fields["layers"] == ["layer4"] and fields["dtype"] == "float16"
    assert fields["targets"] == {"rule": "label"} and fields["data"] == data_fingerprint(samples)
    other = key_fields(classifier, samples, ["layer3"], TargetRule(), torch.float16, True)
    assert cache_key(fields) == cache_key(dict(fields)) and cache_key(fields) != cache_key(other)
