"""The trainer's human data (frames come from the evidence source, as the adapter makes them)
and maps in the human maps' frames (render), for both kinds of model input."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from hagxai.cache import EvidenceCache, StreamingEvidence, TargetRule
from hagxai.config import ModelConfig
from hagxai.models import Frame, build_adapter
from hagxai.training.data import load_human_data, render


def test_letterbox_frames_come_from_the_source(tmp_path, small_demo_samples):
    # A wide input for square images: letterboxed with padding left and right.
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", num_classes=4, input_size=(96, 128)))
    samples = small_demo_samples(tmp_path / "det", "detection")
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


def test_a_plain_resize_has_no_frame(tmp_path, small_demo_samples):
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))
    samples = small_demo_samples(tmp_path / "cls", "classification", image_size=48)
    cache = EvidenceCache.build(adapter, samples, layers=["layer4"], root=tmp_path, progress=False)
    human = load_human_data(cache, samples)
    assert human.keep == [0, 1, 2, 3] and human.frames == [None] * 4
    assert [tuple(m.shape) for m in human.maps] == [s.load_map().shape for s in samples]


def _rows(evidence, out_size):
    """A fake explainer: each image's map holds its row index (on whatever size is asked)."""
    height, width = out_size
    rows = torch.arange(height, dtype=torch.float32).view(-1, 1).expand(height, width)
    return rows.expand(2, height, width).clone()


def test_render_cuts_letterbox_padding_then_resizes_to_the_human_map():
    # A 16×32 image letterboxed into a 32×32 input: scale 1, 8 grey rows above and below.
    letterboxed = Frame(orig_size=(16, 32), scale=(1.0, 1.0), pad=(8.0, 0.0), input_size=(32, 32))
    evidence = SimpleNamespace(input_size=(32, 32))
    maps = render(_rows, evidence, sizes=[(8, 16), (32, 32)], frames=[letterboxed, None])
    assert [tuple(m.shape) for m in maps] == [(8, 16), (32, 32)]
    # rows 8..23 of the input are the image; halving averages pairs of rows: 8.5, 10.5, ..., 22.5
    expected = (8.5 + 2 * torch.arange(8, dtype=torch.float32)).view(-1, 1).expand(8, 16)
    torch.testing.assert_close(maps[0], expected)
    # the plain-resize image of the same batch is the input map itself
    torch.testing.assert_close(maps[1], _rows(None, (32, 32))[1])


def test_render_plain_resize_renders_straight_at_the_human_map_size():
    asked = []

    def explain(evidence, out_size):
        asked.append(out_size)
        return _rows(evidence, out_size)

    maps = render(explain, SimpleNamespace(input_size=(32, 32)), [(5, 7), (5, 7)], [None, None])
    assert asked == [(5, 7)]
    torch.testing.assert_close(torch.stack(maps), _rows(None, (5, 7)))
