"""The evidence cache: equal to direct extraction, reused, self-healing, tolerant of bad samples."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from hagxai.cache import EvidenceCache, StreamingEvidence, open_evidence
from hagxai.config import DemoDataConfig, ModelConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.errors import UserError
from hagxai.evidence_extraction import extract_evidence
from hagxai.models import TargetSpec, build_adapter

LAYERS = ["layer3", "layer4"]


@pytest.fixture(scope="module")
def classifier():
    return build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "cls"
    demo = DemoDataConfig(num_train=6, num_val=2, image_size=48)
    return make_demo_dataset(root, "classification", demo, ObserverConfig(), seed=0, progress=False)


@pytest.fixture
def samples(dataset_root, tmp_path):
    """A private copy per test, so a test may break files."""
    root = shutil.copytree(dataset_root, tmp_path / "data")
    return open_dataset(root, "hagxai").samples


def _images(samples):
    return [torch.from_numpy(np.array(s.load_image())).permute(2, 0, 1) for s in samples]


def _assert_same(got, want, rtol=1e-5, atol=1e-6):
    assert got.layers == want.layers and got.input_size == want.input_size
    assert torch.equal(got.image_index, want.image_index.cpu())
    for name in want.layers:
        scale = float(want.grads[name].abs().max())
        torch.testing.assert_close(got.acts[name], want.acts[name], rtol=rtol, atol=atol)
        torch.testing.assert_close(got.grads[name], want.grads[name], rtol=rtol, atol=atol * scale)


def test_cache_equals_direct_extraction_in_any_order(classifier, samples, tmp_path):
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
        classifier, _images(chosen), TargetSpec(labels=[[s.label] for s in chosen]), LAYERS
    )
    _assert_same(cache.evidence(order), direct.evidence)
    targets = cache.targets(order)
    assert targets.classes.tolist() == [s.label for s in chosen]
    assert targets.boxes is None and targets.image_index.tolist() == [0, 1, 2, 3]
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
    _assert_same(half.evidence(order), direct.evidence, rtol=2e-3, atol=2e-3)


def test_second_open_reuses_and_a_truncated_shard_is_rebuilt(classifier, samples, tmp_path):
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
    healed = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, shard_size=3, progress=False
    )
    assert healed.computed_shards == [1]
    _assert_same(healed.evidence(range(8)), expected, rtol=0, atol=0)


def test_bad_samples_are_skipped_and_listed(classifier, samples, tmp_path):
    samples[2].image_path.write_bytes(b"not an image")
    nan_map = np.load(samples[5].map_path)
    nan_map[0, 0] = np.nan
    np.save(samples[5].map_path, nan_map)
    samples[6].label = None
    cache = EvidenceCache.build(
        classifier, samples, layers=LAYERS, root=tmp_path, batch_size=4, progress=False
    )
    bad = {samples[i].id for i in (2, 5, 6)}
    assert set(cache.skipped) == bad and len(cache) == 5
    assert "unreadable image" in cache.skipped[samples[2].id]
    assert "NaN" in cache.skipped[samples[5].id]
    assert "no label" in cache.skipped[samples[6].id]
    assert cache.ids == [s.id for s in samples if s.id not in bad]
    assert cache.evidence(range(5)).num_targets == 5


def test_streaming_gives_the_cached_evidence(classifier, samples, tmp_path):
    cache = open_evidence(classifier, samples, layers=LAYERS, root=tmp_path, progress=False)
    stream = open_evidence(classifier, samples, layers=LAYERS, root=None, batch_size=4)
    assert isinstance(cache, EvidenceCache) and isinstance(stream, StreamingEvidence)
    assert stream.ids == cache.ids and stream.layers == cache.layers
    order = [7, 1, 4]
    _assert_same(stream.evidence(order), cache.evidence(order))
    assert torch.equal(stream.targets(order).classes, cache.targets(order).classes)


def test_another_layer_set_is_another_cache_and_rules_are_checked(classifier, samples, tmp_path):
    few = samples[:2]
    one = EvidenceCache.build(classifier, few, layers=["layer4"], root=tmp_path, progress=False)
    two = EvidenceCache.build(classifier, few, layers=LAYERS, root=tmp_path, progress=False)
    assert one.key != two.key and one.layers == ["layer4"]
    with pytest.raises(UserError, match="target_rule 'boxes' does not apply"):
        EvidenceCache.build(classifier, few, layers=LAYERS, root=tmp_path, target_rule="boxes")


def test_detector_cache_keeps_boxes_in_input_pixels(tmp_path):
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", num_classes=4, input_size=(128, 128)))
    demo = DemoDataConfig(num_train=3, num_val=1)
    root = make_demo_dataset(tmp_path / "det", "detection", demo, ObserverConfig(), 0, False)
    samples = open_dataset(root, "hagxai").samples
    # A random-init head is never confident: explain its two best detections per image.
    options = {"target_rule": "detections", "conf_threshold": 0.0, "max_per_image": 2}
    cache = EvidenceCache.build(
        adapter, samples, layers=["head"], root=tmp_path / "c", progress=False, **options
    )
    assert len(cache) == 4
    spec = TargetSpec(conf_threshold=0.0, max_per_image=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = extract_evidence(adapter, _images(samples[1:3]), spec, ["head"])
    _assert_same(cache.evidence([1, 2]), direct.evidence)
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
            progress=False,
            classes=classes,
            **options,
        )

    zero, two = subset([0]), subset([2])
    assert len({cache.key, zero.key, two.key}) == 3
    assert len(zero) == 4 and set(zero.targets([0, 1, 2, 3]).classes.tolist()) == {0}
    assert len(two) == 0 and set(two.skipped.values()) == {"no target"}
    assert len(two.targets([]).classes) == 0
