"""RISE's per-image callback (the progress bar of ``hagxai explain``)."""

from __future__ import annotations

import torch
from torch import nn

from hagxai.explainers.perturbation import perturbation_maps
from hagxai.models.classifier import ClassifierAdapter
from hagxai.models.targets import TargetSpec


def test_on_image_is_called_once_per_image_and_changes_nothing() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    adapter = ClassifierAdapter(model, "tiny", (16, 16))
    x = torch.rand(3, 3, 16, 16)
    targets = adapter.select_targets(adapter.forward(x), adapter.preprocess(x), TargetSpec())
    calls = []
    counted = perturbation_maps(adapter, x, targets, num_masks=16, on_image=lambda: calls.append(1))
    plain = perturbation_maps(adapter, x, targets, num_masks=16)
    assert len(calls) == 3
    torch.testing.assert_close(counted, plain)
