"""Heavier adapters: a vision transformer and a torchvision detector (marked slow)."""

from __future__ import annotations

import warnings

import pytest
import torch

from hagxai.config import ModelConfig
from hagxai.evidence import capture_layers, extract_evidence
from hagxai.explainers.perturbation import perturbation_maps
from hagxai.models import TargetSpec, build_adapter


@pytest.mark.slow
def test_vit_tokens_become_a_grid_without_changing_the_model():
    adapter = build_adapter(ModelConfig(name="deit_tiny_distilled_patch16_224", num_classes=3))
    assert adapter.prefix_tokens == 2 and adapter.token_grid == (14, 14)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        reference = adapter.forward(x)
        with capture_layers(adapter, adapter.default_layers()) as captured:
            hooked = adapter.forward(x)
    assert torch.equal(hooked, reference)
    assert captured["blocks.11.norm1"].shape == (1, 192, 14, 14)
    evidence = extract_evidence(adapter, x).evidence.validate()
    assert evidence.grads["blocks.11.norm1"].abs().sum() > 0


@pytest.mark.slow
def test_torchvision_detector_evidence_and_drise():
    adapter = build_adapter(
        ModelConfig(
            name="fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=4, input_size=(128, 128)
        )
    )
    images = [torch.rand(3, 128, 96), torch.rand(3, 100, 128)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extraction = extract_evidence(
            adapter, images, TargetSpec(conf_threshold=0.0, max_per_image=2)
        )
    evidence = extraction.evidence.validate()
    assert evidence.num_targets == 4
    assert all(evidence.grads[name].abs().sum() > 0 for name in evidence.layers)
    maps = perturbation_maps(
        adapter, extraction.prepared.x, extraction.targets, num_masks=8, batch_size=4
    )
    assert maps.shape == (2, 128, 128) and maps.max() <= 1
