"""Heavier adapters: a vision transformer and a torchvision detector (marked slow)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torchvision.ops import box_iou

from hagxai.config import ModelConfig
from hagxai.evidence import capture_layers, extract_evidence
from hagxai.explainers.cam import combine_targets
from hagxai.explainers.perturbation import perturbation_maps, rise_masks
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
    x, targets = extraction.prepared.x, extraction.targets
    outputs: list[dict[str, torch.Tensor]] = []
    handle = adapter.model.register_forward_hook(lambda _m, _i, out: outputs.extend(out))
    try:
        maps = perturbation_maps(adapter, x, targets, num_masks=8, batch_size=4)
    finally:
        handle.remove()
    assert maps.shape == (2, 128, 128) and maps.max() <= 1
    torch.testing.assert_close(maps, _drise_by_hand(outputs, targets, num_masks=8))


def _drise_by_hand(outputs: list[dict], targets, num_masks: int) -> torch.Tensor:
    """D-RISE from its definition, given the detector's output on each masked input (image 0's
    masks first): each mask weighs by the best IoU(target box, detection box) × score over the
    detections of the target's class (torchvision labels are shifted by the background label);
    the per-target maps then go through the multi-object rule."""
    masks = rise_masks(num_masks, (128, 128), generator=torch.Generator().manual_seed(0))
    per_target = torch.zeros(len(targets), 128, 128)
    for t, image in enumerate(targets.image_index.tolist()):
        for mask, out in zip(masks, outputs[image * num_masks : (image + 1) * num_masks]):
            best = 0.0
            for box, label, score in zip(out["boxes"], out["labels"], out["scores"]):
                if int(label) - 1 == int(targets.classes[t]):
                    iou = float(box_iou(targets.boxes[t][None], box[None]))
                    best = max(best, iou * float(score))
            per_target[t] += best * mask
    per_target /= num_masks * 0.5
    assert per_target.abs().sum() > 0
    return combine_targets(per_target, targets.image_index, len(outputs) // num_masks)
