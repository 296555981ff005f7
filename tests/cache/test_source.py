"""The reading interface: the cache and the stream are both evidence sources, and agree."""

from __future__ import annotations

import torch

from hagxai.cache import EvidenceCache, EvidenceSource, StreamingEvidence

LAYERS = ["layer3", "layer4"]


def test_cache_and_stream_are_the_same_source(classifier, samples, tmp_path, assert_same):
    cache = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    stream = StreamingEvidence(classifier, samples, layers=LAYERS, batch_size=3)
    assert isinstance(cache, EvidenceSource) and isinstance(stream, EvidenceSource)
    assert not isinstance(object(), EvidenceSource)
    for source in (cache, stream):
        assert len(source) == 8 and source.input_size == (64, 64) and source.layers == LAYERS
    order = [5, 0, 6, 2]
    # Other batches (the stream's is the request) round differently in the convolutions.
    assert_same(stream.evidence(order), cache.evidence(order), rtol=1e-4, atol=1e-5)
    got, want = stream.targets(order), cache.targets(order)
    assert torch.equal(got.classes, want.classes) and torch.equal(got.image_index, want.image_index)
    torch.testing.assert_close(got.confidences, want.confidences)
    assert stream.frames(order) == cache.frames(order)
    half = cache.evidence(order, dtype=torch.float16)
    assert all(half.acts[n].dtype == torch.float16 for n in LAYERS)
