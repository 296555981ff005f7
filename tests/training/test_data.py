"""The trainer's human data: frames come from the evidence source, as the adapter makes them."""

from __future__ import annotations

import torch

from hagxai.cache import EvidenceCache, StreamingEvidence, TargetRule
from hagxai.config import DemoDataConfig, ModelConfig, ObserverConfig
from hagxai.data.demo import make_demo_dataset
from hagxai.data.format import HumanAttentionDataset
from hagxai.models import build_adapter
from hagxai.training.data import load_human_data


def test_letterbox_frames_come_from_the_source(tmp_path):
    # A wide input for square images: letterboxed with padding left and right.
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", num_classes=4, input_size=(96, 128)))
    demo = DemoDataConfig(num_train=3, num_val=1)
    root = make_demo_dataset(tmp_path / "det", "detection", demo, ObserverConfig(), 0, False)
    samples = HumanAttentionDataset(root).samples
    rule = TargetRule("detections", conf_threshold=0.0, max_per_image=2)
    cache = EvidenceCache.build(
        adapter, samples, layers=["head"], root=tmp_path / "c", rule=rule, progress=False
    )
    stream = StreamingEvidence(adapter, samples, layers=["head"], rule=rule)
    for source in (cache, stream):
        human = load_human_data(source, samples)
        assert human.keep == [0, 1, 2, 3] and not human.skipped
        for frame, sample in zip(human.frames, samples):
            height, width = sample.load_image().shape[:2]
            expected = adapter.preprocess([torch.zeros(3, height, width)]).frames[0]
            assert frame == expected and frame.pad[1] > 0


def test_a_plain_resize_has_no_frame(tmp_path):
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))
    demo = DemoDataConfig(num_train=3, num_val=1, image_size=48)
    root = make_demo_dataset(tmp_path / "cls", "classification", demo, ObserverConfig(), 0, False)
    samples = HumanAttentionDataset(root).samples
    cache = EvidenceCache.build(adapter, samples, layers=["layer4"], root=tmp_path, progress=False)
    human = load_human_data(cache, samples)
    assert human.keep == [0, 1, 2, 3] and human.frames == [None] * 4
    assert [tuple(m.shape) for m in human.maps] == [s.load_map().shape for s in samples]
