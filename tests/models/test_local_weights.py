"""Real weights load from a local file for every classifier source (no network needed)."""

import pytest
import torch

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.models.registry import build_adapter


def test_timm_weights_load_from_a_local_file(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_adapter(ModelConfig(name="timm/test_resnet", num_classes=3))
    torch.save(source.model.state_dict(), tmp_path / "w.pth")
    cfg = ModelConfig(name="test_resnet", num_classes=3, weights=tmp_path / "w.pth")
    loaded = build_adapter(cfg)
    for key, value in source.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)


def test_weights_of_another_shape_are_refused(tmp_path) -> None:
    source = build_adapter(ModelConfig(name="test_resnet", num_classes=3))
    torch.save(source.model.state_dict(), tmp_path / "w.pth")
    with pytest.raises(UserError, match=r"w\.pth does not fit the model"):
        build_adapter(ModelConfig(name="test_resnet", num_classes=5, weights=tmp_path / "w.pth"))
