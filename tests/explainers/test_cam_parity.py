"""Grad-CAM family against pytorch-grad-cam 1.5.7 on a random-init resnet18 batch.

What is compared, and why the normalisations agree:

* At the layer's resolution: each target's map (after the ReLU) from our evidence against
  pytorch-grad-cam's ``get_cam_image`` on the activations and gradients *its own hooks* captured,
  both min-max normalised per target (the multi-object rule normalises each target's map, so only
  the shape of the map matters; this also checks our gradients against theirs).
* At the input resolution, one target per image: our final map against theirs. Theirs is
  ReLU -> min-max at 3×3 -> cv2 bilinear resize -> min-max; ours is ReLU -> torch bilinear resize
  -> min-max (per target, then per image). Bilinear resizing is linear and keeps constants, so it
  commutes with the first min-max, and min-max ignores any positive affine map: the two agree up
  to their ``1e-7`` in the last division and float rounding.

Grad-CAM++ and XGrad-CAM are run with pytorch-grad-cam's epsilons (``eps=``); our defaults have
none (see hagxai.explainers.cam).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import (
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from hagxai import explainers
from hagxai.config import ModelConfig
from hagxai.evidence import Evidence, extract_evidence
from hagxai.explainers.cam import layer_maps, minmax
from hagxai.models import TargetSpec, build_adapter

SIZE = 96
THEIRS = {
    "gradcam": (GradCAM, 0.0),
    "gradcam++": (GradCAMPlusPlus, 1e-6),
    "xgradcam": (XGradCAM, 1e-7),
    "hirescam": (HiResCAM, 0.0),
    "layercam": (LayerCAM, 0.0),
    "eigencam": (EigenCAM, 0.0),
}


class _Normalised(torch.nn.Module):
    """The classifier with the adapter's normalisation in front, for pytorch-grad-cam."""

    def __init__(self, adapter) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = copy.deepcopy(adapter.model).requires_grad_(True)

    def forward(self, x):
        mean, std = self.adapter._mean.to(x), self.adapter._std.to(x)
        return self.model((x - mean) / std)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=10, input_size=(SIZE, SIZE)))
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return adapter, images, _Normalised(adapter)


def _theirs(setup, name, classes):
    _, images, wrapped = setup
    cls, _ = THEIRS[name]
    layer = wrapped.model.layer4
    with cls(model=wrapped, target_layers=[layer]) as cam:
        targets = [ClassifierOutputTarget(c) for c in classes]
        final = cam(input_tensor=images.clone(), targets=targets)
        acts = cam.activations_and_grads.activations[0].cpu().numpy()
        stored = cam.activations_and_grads.gradients
        grads = stored[0].cpu().numpy() if stored else None
        raw = cam.get_cam_image(images, layer, targets, acts, grads, eigen_smooth=False)
    return torch.from_numpy(np.maximum(raw, 0)).float(), torch.from_numpy(final)


@pytest.mark.parametrize("name", list(THEIRS))
def test_maps_match_pytorch_grad_cam(setup, name):
    adapter, images, _ = setup
    _, eps = THEIRS[name]
    rounds = [[1, 7], [4, 0]]
    extraction = extract_evidence(
        adapter, images, TargetSpec(labels=[[a, b] for a, b in zip(*rounds)]), ["layer4"]
    )
    evidence = extraction.evidence
    ours = minmax(layer_maps(evidence, name, eps)["layer4"])
    assert ours.shape == (4, 3, 3)
    finals = []
    for r, classes in enumerate(rounds):
        raw, final = _theirs(setup, name, classes)
        torch.testing.assert_close(ours[r::2], minmax(raw), atol=1e-5, rtol=0)
        finals.append(final)
    first = Evidence(
        layers=["layer4"],
        acts=evidence.acts,
        grads={"layer4": evidence.grads["layer4"][0::2]},
        image_index=evidence.image_index[0::2],
        input_size=evidence.input_size,
    )
    mine = explainers.get(name, **({"eps": eps} if eps else {}))(first, (SIZE, SIZE))
    assert mine.shape == (2, SIZE, SIZE)
    torch.testing.assert_close(mine, finals[0], atol=1e-5, rtol=0)
