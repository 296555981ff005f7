"""The disk cache: equal to direct extraction, reused, self-healing, keyed by layers and rule."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from hagxai.cache import CacheError, EvidenceCache, TargetRule
from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.evidence import extract_evidence
from hagxai.models import TargetSpec, build_adapter

LAYERS = ["layer3", "layer4"]


def test_cache_equals_direct_extraction_in_any_order(
    classifier, samples, tmp_path, images, assert_same
):
    cache = EvidenceCache.build(
        classifier,
        samples,
        layers=LAYERS,
        root=tmp_path / "c",
        batch_size=3,
        shard_size=3,
        progress=False,
    )
    assert len(cache) == 8 and cache.ids == [s.id for s in samples] and not cache.skipped
    assert len(list(cache.path.glob("shard-*.safetensors"))) == 3
    order = [7, 0, 5, 3]
    chosen = [samples[i] for i in order]
    direct = extract_evidence(
        classifier, images(chosen), TargetSpec(labels=[[s.label] for s in chosen]), LAYERS
    )
    assert_same(cache.evidence(order), direct.evidence)
    targets = cache.targets(order)
    assert targets.classes.tolist() == [s.label for s in chosen]
    assert targets.boxes is None and targets.image_index.tolist() == [0, 1, 2, 3]
    assert cache.frames(order) == direct.prepared.frames
    assert cache.frames(order)[0].orig_size == (48, 48)

    half = EvidenceCache.build(
        classifier,
        samples,
        layers=LAYERS,
        root=tmp_path / "c",
        dtype=torch.float16,
        progress=False,
    )
    assert half.key != cache.key
    assert_same(half.evidence(order), direct.evidence, rtol=2e-3, atol=2e-3)
    brain = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path / "c", dtype=torch.bfloat16
    )
    assert brain.key not in (cache.key, half.key) and brain.storage_dtype == "bfloat16"
    read = brain.evidence(order)
    assert read.acts[LAYERS[0]].dtype == torch.float32
    assert_same(read, direct.evidence, rtol=1e-2, atol=1e-2)


def test_second_open_reuses_and_a_truncated_shard_is_rebuilt(
    classifier, samples, tmp_path, assert_same
):
    first = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    assert first.computed_shards == [0, 1, 2]
    expected = first.evidence(range(8))
    shards = sorted(first.path.glob("shard-*.safetensors"))
    times = [p.stat().st_mtime_ns for p in shards]

    again = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    assert again.computed_shards == [] and again.key == first.key
    assert [p.stat().st_mtime_ns for p in shards] == times

    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match="changed on disk"):
        again.evidence([4])
    healed = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    assert healed.computed_shards == [1]
    assert_same(healed.evidence(range(8)), expected, rtol=0, atol=0)


def test_another_layer_set_is_another_cache_and_rules_are_checked(classifier, samples, tmp_path):
    few = samples[:2]
    one = EvidenceCache.build(classifier, few, layers=["layer4"], root=tmp_path, progress=False)
    two = EvidenceCache.build(classifier, few, layers=LAYERS, root=tmp_path, progress=False)
    assert one.key != two.key and one.layers == ["layer4"]
    predicted = EvidenceCache.build(
        classifier, few, layers=LAYERS, root=tmp_path, rule=TargetRule("predicted"), progress=False
    )
    assert predicted.key != two.key
    with pytest.raises(UserError, match="target_rule 'boxes' does not apply"):
        EvidenceCache.build(classifier, few, layers=LAYERS, root=tmp_path, rule=TargetRule("boxes"))
    with pytest.raises(UserError, match="float32, float16 or bfloat16"):
        EvidenceCache.build(classifier, few, layers=LAYERS, root=tmp_path, dtype=torch.float64)


def test_detector_cache_keeps_boxes_in_input_pixels(
    tmp_path, images, assert_same, small_demo_samples
):
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", num_classes=4, input_size=(128, 128)))
    samples = small_demo_samples(tmp_path / "det", "detection")
    # A random-init head is never confident: explain its two best detections per image.
    rule = TargetRule("detections", conf_threshold=0.0, max_per_image=2)
    cache = EvidenceCache.build(
        adapter, samples, layers=["head"], root=tmp_path / "c", rule=rule, progress=False
    )
    assert len(cache) == 4
    spec = TargetSpec(conf_threshold=0.0, max_per_image=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = extract_evidence(adapter, images(samples[1:3]), spec, ["head"])
    assert_same(cache.evidence([1, 2]), direct.evidence)
    targets = cache.targets([1, 2])
    torch.testing.assert_close(targets.boxes, direct.targets.boxes)
    assert torch.equal(targets.anchors, direct.targets.anchors)

    # A class subset (a dataset read with data.classes) keeps only those classes' detections and
    # is part of the key. A random-init head's best class is class 0 at every anchor (equal
    # biases), so the subset [0] keeps targets and [2] leaves every image without one.
    def subset(classes):
        return EvidenceCache.build(
            adapter,
            samples,
            layers=["head"],
            root=tmp_path / "c",
            rule=TargetRule("detections", conf_threshold=0.0, max_per_image=2, classes=classes),
            progress=False,
        )

    zero, two = subset([0]), subset([2])
    assert len({cache.key, zero.key, two.key}) == 3
    assert len(zero) == 4 and set(zero.targets([0, 1, 2, 3]).classes.tolist()) == {0}
    assert len(two) == 0 and set(two.skipped.values()) == {"no target"}
    assert len(two.targets([]).classes) == 0


def test_open_reads_no_shard_and_a_bad_checksum_is_caught_on_first_read(
    classifier, samples, tmp_path, assert_same
):
    first = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    expected = first.evidence(range(8))
    assert first.verify() == {}
    shard = first.path / "shard-00001.safetensors"
    good = shard.read_bytes()
    data = bytearray(good)
    data[-1] ^= 0xFF  # same size, other bytes: only the checksum can tell
    shard.write_bytes(bytes(data))

    again = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    assert again.computed_shards == []  # opening only stats the shards
    assert_same(again.evidence(range(8)), expected, rtol=0, atol=0)  # recomputed on first read
    assert again.verify() == {}
    good = shard.read_bytes()  # as recomputed (the index now records these bytes)

    shard.write_bytes(bytes(data))
    bare = EvidenceCache.open(first.path)
    assert len(bare) == 8 and bare.verify() == {
        "shard-00001.safetensors": "SHA-256 differs from the index"
    }
    fresh = EvidenceCache.open(first.path)
    assert_same(
        fresh.evidence([0, 1, 2]),
        expected.__class__(
            expected.layers,
            {k: v[:3] for k, v in expected.acts.items()},
            {k: v[:3] for k, v in expected.grads.items()},
            expected.image_index[:3],
            expected.input_size,
        ),
        rtol=0,
        atol=0,
    )
    with pytest.raises(CacheError, match=r"shard-00001\.safetensors: SHA-256 differs"):
        fresh.evidence([4])
    # a shard rewritten after its first read (mtime moved) is checked again when next mapped
    shard.write_bytes(good)
    one = EvidenceCache.open(first.path, max_open_shards=1)
    one.evidence([4]), one.evidence([0])  # maps shard 1, then shard 0 evicts it
    stamp = shard.stat().st_mtime_ns
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(stamp + 10**9, stamp + 10**9))  # a clock tick may be coarser than a write
    with pytest.raises(CacheError, match=r"shard-00001\.safetensors: SHA-256 differs"):
        one.evidence([4])
    shard.unlink()
    with pytest.raises(CacheError, match=r"shard-00001\.safetensors: missing"):
        EvidenceCache.open(first.path)
    with pytest.raises(CacheError, match="not a readable cache index"):
        EvidenceCache.open(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_reads_are_pinned_copies_upcast_on_the_device(classifier, samples, tmp_path):
    half = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path / "h", dtype=torch.float16, progress=False
    )
    on_cpu = half.evidence([3, 1, 1])
    on_gpu = half.evidence([3, 1, 1], device="cuda")
    for name in LAYERS:
        assert on_gpu.acts[name].is_cuda and on_gpu.acts[name].dtype == torch.float32
        assert torch.equal(on_gpu.acts[name].cpu(), on_cpu.acts[name])
        assert torch.equal(on_gpu.grads[name].cpu(), on_cpu.grads[name])
