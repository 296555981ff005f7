"""The model digest: fixed format, blind to device and requires_grad, changed by any weight bit."""

from __future__ import annotations

import torch
from torch import nn

from hagxai.models import model_digest


def test_model_digest() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    digest = model_digest(model)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    assert model_digest(model) == digest
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1e-6
    assert model_digest(model) != digest
    assert model_digest(model.double()) != model_digest(model.float())
