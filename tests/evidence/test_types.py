"""The Evidence type: counts, validation messages, moving between devices and dtypes."""

from __future__ import annotations

import pytest
import torch

from hagxai import Evidence


def _evidence(num_targets: int = 3) -> Evidence:
    return Evidence(
        layers=["a"],
        acts={"a": torch.rand(2, 4, 5, 6)},
        grads={"a": torch.rand(num_targets, 4, 5, 6)},
        image_index=torch.tensor([0, 1, 1][:num_targets]),
        input_size=(40, 48),
    )


def test_counts_and_move():
    evidence = _evidence().validate()
    assert evidence.num_images == 2 and evidence.num_targets == 3
    moved = evidence.to("cpu", torch.float64)
    assert moved.acts["a"].dtype == torch.float64 and moved.grads["a"].dtype == torch.float64
    assert moved.image_index.dtype == torch.long and moved.input_size == (40, 48)
    torch.testing.assert_close(moved.grads["a"].float(), evidence.grads["a"])


def test_validate_names_the_problem():
    evidence = _evidence()
    evidence.grads["a"] = torch.rand(2, 4, 5, 6)
    with pytest.raises(ValueError, match=r"layer 'a': gradients \(2, 4, 5, 6\) do not fit"):
        evidence.validate()
    evidence = _evidence()
    evidence.acts["a"][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="layer 'a': activations hold NaN or inf"):
        evidence.validate()
    evidence = _evidence()
    evidence.image_index = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="points at image 2 but only 2 images"):
        evidence.validate()
    evidence = _evidence()
    evidence.layers = ["a", "b"]
    with pytest.raises(ValueError, match=r"lacks activations or gradients for layers \['b'\]"):
        evidence.validate()
