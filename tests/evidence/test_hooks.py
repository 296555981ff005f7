"""Layer hooks: captured grids, hooks always removed, the shape trace."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hagxai.errors import UserError
from hagxai.evidence import capture_layers, trace_layer_shapes
from hagxai.models.classifier import ClassifierAdapter


def _adapter() -> ClassifierAdapter:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(5 * 8 * 8, 3),
    )
    return ClassifierAdapter(model, "tiny", (16, 16))


def _hooks(adapter: ClassifierAdapter) -> int:
    return sum(len(module._forward_hooks) for module in adapter.model.modules())


def test_capture_gives_grids_and_removes_its_hooks():
    adapter = _adapter()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        reference = adapter.forward(x)
        with capture_layers(adapter, ["0", "2"]) as captured:
            hooked = adapter.forward(x)
    assert torch.equal(hooked, reference)
    assert captured["0"].shape == (2, 4, 16, 16) and captured["2"].shape == (2, 5, 8, 8)
    assert _hooks(adapter) == 0
    with pytest.raises(UserError, match="layer '4' outputs shape"), capture_layers(adapter, ["4"]):
        adapter.forward(x)
    assert _hooks(adapter) == 0


def test_make_leaf_gives_gradients_with_frozen_parameters():
    adapter = _adapter()
    with torch.enable_grad(), capture_layers(adapter, ["2"], make_leaf=True) as captured:
        logits = adapter.forward(torch.rand(1, 3, 16, 16))
    (grad,) = torch.autograd.grad(logits[0, 1], [captured["2"]])
    assert grad.shape == (1, 5, 8, 8) and grad.abs().sum() > 0


def test_trace_lists_every_module_in_forward_order():
    adapter = _adapter()
    trace = trace_layer_shapes(adapter, torch.rand(1, 3, 16, 16))
    assert trace == [
        ("0", "Conv2d", (1, 4, 16, 16)),
        ("1", "ReLU", (1, 4, 16, 16)),
        ("2", "Conv2d", (1, 5, 8, 8)),
        ("3", "Flatten", (1, 320)),
        ("4", "Linear", (1, 3)),
    ]
    assert adapter.default_layers() == ["2"] and _hooks(adapter) == 0
