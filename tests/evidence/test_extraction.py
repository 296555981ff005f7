"""Batched evidence equals a per-target loop of retain_graph backward passes."""

from __future__ import annotations

import pytest
import torch

from hagxai.config import ModelConfig
from hagxai.evidence import capture_layers
from hagxai.evidence.extraction import batched_gradients, extract_evidence, target_rounds
from hagxai.models import TargetSpec, build_adapter


def _per_target_loop(adapter, extraction, layers):
    """The reference pattern: one forward, then one retain_graph backward per target."""
    with torch.enable_grad(), capture_layers(adapter, layers, make_leaf=True) as captured:
        output = adapter.forward(extraction.prepared.x)
    scores = adapter.score(output, extraction.targets)
    acts = [captured[name] for name in layers]
    out = {name: [] for name in layers}
    for t, image in enumerate(extraction.targets.image_index.tolist()):
        grads = torch.autograd.grad(scores[t], acts, retain_graph=True, allow_unused=True)
        for name, act, grad in zip(layers, acts, grads):
            out[name].append(torch.zeros_like(act[image]) if grad is None else grad[image])
    return {name: torch.stack(grads) for name, grads in out.items()}


def _assert_equal(evidence, reference):
    for name, ref in reference.items():
        scale = ref.abs().max()
        assert scale > 0, name
        diff = (evidence.grads[name] - ref).abs().max()
        # YOLO scores have gradients ~1e-9..1e-5, so the tolerance is relative to the largest.
        assert diff <= 1e-6 * scale, (name, float(diff), float(scale))


def test_target_rounds():
    index = torch.tensor([0, 0, 0, 1, 2, 2])
    assert target_rounds(index).tolist() == [0, 1, 2, 0, 0, 1]


@pytest.mark.parametrize("budget", [2, 256])
def test_classifier_batched_equals_loop(budget):
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=10, input_size=(64, 64)))
    images = torch.rand(3, 3, 64, 64)
    spec = TargetSpec(labels=[[0, 1, 2], [3], [4, 5]])
    layers = ["layer3", "layer4"]
    extraction = extract_evidence(adapter, images, spec, layers, max_targets_per_call=budget)
    evidence = extraction.evidence.validate()
    assert evidence.image_index.tolist() == [0, 0, 0, 1, 2, 2]
    _assert_equal(evidence, _per_target_loop(adapter, extraction, layers))


@pytest.mark.parametrize("layers", [None, ["head"]])
def test_yolo_batched_equals_loop(layers):
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", input_size=(160, 160)))
    images = [torch.rand(3, 120, 160), torch.rand(3, 160, 100)]
    spec = TargetSpec(conf_threshold=1e-5, max_per_image=3)
    extraction = extract_evidence(adapter, images, spec, layers)
    evidence = extraction.evidence.validate()
    assert evidence.num_targets >= 5
    names = adapter.resolve_layers(layers)
    _assert_equal(evidence, _per_target_loop(adapter, extraction, names))


def test_requires_grad_off_still_gives_gradients():
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))
    assert not any(p.requires_grad for p in adapter.model.parameters())
    evidence = extract_evidence(adapter, torch.rand(1, 3, 64, 64)).evidence
    assert evidence.grads["layer4"].abs().sum() > 0


def test_no_path_gives_zero_gradients():
    acts = [torch.rand(2, 3, 4, 4, requires_grad=True), torch.rand(2, 3, 4, 4, requires_grad=True)]
    scores = acts[0].sum(dim=(1, 2, 3))
    grads = batched_gradients(scores, acts, torch.tensor([0, 1]))
    assert torch.equal(grads[0], torch.ones(2, 3, 4, 4))
    assert torch.equal(grads[1], torch.zeros(2, 3, 4, 4))
