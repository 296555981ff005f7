"""The stream: the cache's evidence computed on the fly, bad images kept in place as zeros."""

from __future__ import annotations

import torch

from hagxai.cache import EvidenceCache, StreamingEvidence, open_evidence

LAYERS = ["layer3", "layer4"]


def test_open_evidence_streams_the_cached_evidence(classifier, samples, tmp_path, assert_same):
    cache = open_evidence(classifier, samples, layers=LAYERS, root=tmp_path, progress=False)
    stream = open_evidence(classifier, samples, layers=LAYERS, root=None, batch_size=4)
    assert isinstance(cache, EvidenceCache) and isinstance(stream, StreamingEvidence)
    assert stream.ids == cache.ids and stream.layers == cache.layers
    order = [7, 1, 4]
    assert_same(stream.evidence(order), cache.evidence(order))
    assert torch.equal(stream.targets(order).classes, cache.targets(order).classes)
    assert isinstance(
        open_evidence(classifier, samples, layers=LAYERS, root=tmp_path, stream=True),
        StreamingEvidence,
    )


def test_an_image_that_fails_late_is_zeros_without_targets(classifier, samples):
    stream = StreamingEvidence(classifier, samples, layers=LAYERS, batch_size=4)
    # Header intact, pixels cut off: passes the checks without the model, fails when decoded.
    data = samples[2].image_path.read_bytes()
    samples[2].image_path.write_bytes(data[: len(data) // 2])
    evidence = stream.evidence([1, 2, 3])
    targets = stream.targets([1, 2, 3])
    assert len(stream) == 8 and samples[2].id in stream.skipped
    assert targets.image_index.tolist() == [0, 2]
    for name in LAYERS:
        assert not evidence.acts[name][1].any() and evidence.acts[name][0].any()
    frames = stream.frames([1, 2])
    assert frames[0].orig_size == (48, 48) and frames[1].orig_size == (0, 0)
