"""Batched computing: bad samples are skipped and listed, a failing batch costs one image."""

from __future__ import annotations

import numpy as np
import torch

import hagxai.cache.compute as compute_module
from hagxai.cache.compute import compute, frame_from_record, frame_record, load_image
from hagxai.cache.rules import TargetRule
from hagxai.models import Frame

LAYERS = ["layer3", "layer4"]


def test_bad_samples_are_skipped_and_listed(classifier, samples):
    samples[2].image_path.write_bytes(b"not an image")
    nan_map = np.load(samples[5].map_path)
    nan_map[0, 0] = np.nan
    np.save(samples[5].map_path, nan_map)
    samples[6].label = None
    ticks = []
    computed = compute(classifier, samples, LAYERS, TargetRule(), True, ticks.append, 4)
    bad = {samples[i].id for i in (2, 5, 6)}
    assert list(computed.skipped) == [samples[i].id for i in (2, 5, 6)]
    assert "unreadable image" in computed.skipped[samples[2].id]
    assert "NaN" in computed.skipped[samples[5].id]
    assert "no label" in computed.skipped[samples[6].id]
    assert computed.ids == [s.id for s in samples if s.id not in bad]
    assert computed.counts == [1] * 5 and len(computed.frames) == 5
    assert computed.acts["layer4"].shape[0] == 5 and computed.grads["layer4"].shape[0] == 5
    assert sum(ticks) == len(samples)


def test_a_failing_image_is_retried_alone(classifier, samples, monkeypatch):
    bad = load_image(samples[3])
    extract = compute_module.extract_evidence

    def failing(adapter, images, spec, layers):
        if any(torch.equal(image, bad) for image in images):
            raise RuntimeError("boom\nsecond line")
        return extract(adapter, images, spec, layers)

    monkeypatch.setattr(compute_module, "extract_evidence", failing)
    computed = compute(classifier, samples, LAYERS, TargetRule(), True, lambda n: None, 4)
    assert computed.skipped == {samples[3].id: "RuntimeError: boom"}
    assert computed.ids == [s.id for i, s in enumerate(samples) if i != 3]


def test_frame_records_round_trip():
    frame = Frame((48, 60), (2.0, 1.6), (0.0, 8.0), (96, 112))
    assert frame_from_record(frame_record(frame), (96, 112)) == frame
