"""Adapters: registry errors, transformers, torchvision detectors, perturbation maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.evidence import extract_evidence
from hagxai.explainers.perturbation import perturbation_maps
from hagxai.models import TargetSpec, build_adapter, register_adapter
from hagxai.models.classifier import ClassifierAdapter


def test_unknown_model_lists_close_names():
    with pytest.raises(UserError, match=r"close names: .*resnet18"):
        build_adapter("resnet181")


def test_unknown_layer_lists_close_names():
    with pytest.raises(UserError, match="close names: layer4"):
        build_adapter(ModelConfig(name="resnet18", layers=["layer44"]))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"nothing\.pt does not exist"):
        build_adapter(ModelConfig(name="resnet18", weights=tmp_path / "nothing.pt"))
    with pytest.raises(UserError, match="does not exist"):
        build_adapter(str(tmp_path / "yolo.pt"))


def test_local_weights_file_is_loaded(tmp_path):
    source = build_adapter(ModelConfig(name="resnet18", num_classes=3))
    torch.save({"state_dict": source.model.state_dict()}, tmp_path / "w.pt")
    loaded = build_adapter(ModelConfig(name="resnet18", num_classes=3, weights=tmp_path / "w.pt"))
    torch.testing.assert_close(loaded.model.fc.weight, source.model.fc.weight)


def test_config_layers_become_the_default_layers():
    plain = build_adapter(ModelConfig(name="resnet18", num_classes=2, input_size=(64, 64)))
    assert plain.default_layers() == plain.family_layers() == ["layer4"]
    chosen = build_adapter(
        ModelConfig(
            name="resnet18", num_classes=2, input_size=(64, 64), layers=["layer3", "layer4"]
        )
    )
    assert chosen.default_layers() == ["layer3", "layer4"]
    yolo = build_adapter(ModelConfig(name="yolov8n.yaml", input_size=(96, 96), layers=["head"]))
    assert yolo.default_layers() == yolo.head_layers() != yolo.family_layers()


def test_registered_builder_is_used():
    built = build_adapter(ModelConfig(name="resnet18", num_classes=2))
    register_adapter("my-model", lambda cfg, device: built)
    assert build_adapter("my-model") is built


def test_image_without_target_gives_zero_map_and_counted_warning():
    adapter = build_adapter(ModelConfig(name="yolov8n.yaml", input_size=(96, 96)))
    with pytest.warns(UserWarning, match="2 of 2 images have no target"):
        extraction = extract_evidence(adapter, torch.rand(2, 3, 96, 96), TargetSpec())
    from hagxai import explainers

    maps = explainers.get("gradcam")(extraction.evidence, (96, 96))
    assert torch.equal(maps, torch.zeros(2, 96, 96))


class _CornerScores(nn.Module):
    """Logits of three classes: class 0 is constant, class 1 reads only the top-right 8×8
    corner of a 32×32 input, class 2 only the bottom-left one."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor([0.0, 8.0, 8.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top_right = x[:, :, :8, 24:].mean(dim=(1, 2, 3))
        bottom_left = x[:, :, 24:, :8].mean(dim=(1, 2, 3))
        return self.gain * torch.stack([torch.zeros_like(top_right), top_right, bottom_left], 1)


def test_rise_on_a_classifier():
    adapter = ClassifierAdapter(_CornerScores(), "corners", (32, 32), mean=(0, 0, 0), std=(1, 1, 1))
    prepared = adapter.preprocess(torch.ones(2, 3, 40, 40))
    targets = adapter.select_targets(
        adapter.forward(prepared.x), prepared, TargetSpec(labels=[1, 2])
    )

    def rise(seed: int) -> torch.Tensor:
        return perturbation_maps(
            adapter, prepared.x, targets, num_masks=256, batch_size=64, cells=4, seed=seed
        )

    maps = rise(0)
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() == 1
    # Image 0 explains the top-right class, image 1 the bottom-left one: each map peaks in its
    # class's corner, is high all over it and low in the corner the class never reads.
    corners = {
        "top_right": (slice(0, 8), slice(24, 32)),
        "bottom_left": (slice(24, 32), slice(0, 8)),
    }
    for image, (own, other) in enumerate(
        [("top_right", "bottom_left"), ("bottom_left", "top_right")]
    ):
        y, x = divmod(int(maps[image].argmax()), 32)
        rows, cols = corners[own]
        assert rows.start <= y < rows.stop and cols.start <= x < cols.stop, (image, y, x)
        assert maps[image][corners[own]].mean() > 0.8
        assert maps[image][corners[other]].mean() < 0.2
    assert torch.equal(rise(0), maps)
    assert (rise(1) - maps).abs().max() > 0.05
