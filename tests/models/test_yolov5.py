"""Original YOLOv5 checkpoints (the yolov5 package) through the adapter and the explainers."""

import importlib
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("yolov5")

from hagxai import explainers
from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.evidence import extract_evidence
from hagxai.models import TargetSpec
from hagxai.models.registry import build_adapter
from hagxai.models.yolov5 import _yaml_path, import_yolov5

SIZE = (128, 128)


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    """yolov5n's architecture at half its width, so the tests stay fast on a CPU."""
    spec = yaml.safe_load(_yaml_path("yolov5n.yaml").read_text())
    spec["width_multiple"] = 0.125
    path = tmp_path_factory.mktemp("yaml") / "yolov5-tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_yaml) -> tuple[Path, torch.nn.Module]:
    """A 5-class model with random weights, saved as YOLOv5's train.py saves it.

    The model is built from the original repository's module path (``models.yolo``), so the
    pickle names the classes as an original checkpoint does.
    """
    import_yolov5()
    torch.manual_seed(0)
    original = importlib.import_module("models.yolo")
    model = original.DetectionModel(str(tiny_yaml), nc=5)
    model.names = ["person", "rider", "car", "bus", "truck"]
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"epoch": -1, "model": model, "ema": None}, path)
    return path, model


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def test_untrusted_checkpoint_is_refused(checkpoint) -> None:
    path, _ = checkpoint
    with pytest.raises(UserError, match=r"pickle: loading it runs code.*trust_checkpoint: true"):
        build_adapter(ModelConfig(name=f"yolov5:{path}"))


def test_trusted_checkpoint_gives_evidence_and_fullgradcam(checkpoint) -> None:
    path, model = checkpoint
    cfg = ModelConfig(name=f"yolov5:{path}", trust_checkpoint=True, input_size=SIZE)
    adapter = build_adapter(cfg)
    loaded = adapter.model.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded[key], value)
    assert adapter.class_names[2] == "car"
    backbone, head = ["model.4", "model.6", "model.9"], ["model.17", "model.20", "model.23"]
    assert adapter.default_layers() == backbone and adapter.resolve_layers(["head"]) == head
    spec = TargetSpec(conf_threshold=0.01, max_per_image=2)
    result = extract_evidence(adapter, _images(), spec, layers=["backbone", "head"])
    evidence = result.evidence
    assert len(result.targets) == 4 and evidence.image_index.tolist() == [0, 0, 1, 1]
    # A detection's score reaches every backbone stage but only its own level of the head.
    assert all(evidence.grads[name].abs().sum() > 0 for name in backbone)
    assert any(evidence.grads[name].abs().sum() > 0 for name in head)
    maps = explainers.get("fullgradcam++")(evidence, (96, 128))
    assert maps.shape == (2, 96, 128) and torch.isfinite(maps).all()
    assert maps.min() >= 0 and maps.amax(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0])


def test_objectness_option_multiplies_the_class_score(checkpoint) -> None:
    path, _ = checkpoint
    plain = build_adapter(ModelConfig(name=f"yolov5:{path}", trust_checkpoint=True))
    raw = torch.rand(1, 6, 10)
    pred = plain._pred((raw, None))
    plain.objectness = True
    with_obj = plain._pred((raw, None))
    torch.testing.assert_close(pred[:, 4:], raw[..., 5:].transpose(1, 2))
    torch.testing.assert_close(with_obj[:, 4:], (raw[..., 5:] * raw[..., 4:5]).transpose(1, 2))


def test_yaml_with_state_dict_weights_needs_no_trust(checkpoint, tiny_yaml, tmp_path) -> None:
    _, model = checkpoint
    torch.save(model.state_dict(), tmp_path / "w.pt")
    cfg = ModelConfig(name=f"yolov5:{tiny_yaml}", num_classes=5, weights=tmp_path / "w.pt")
    adapter = build_adapter(cfg)
    torch.testing.assert_close(
        adapter.model.state_dict()["model.0.conv.weight"], model.model[0].conv.weight
    )
    with pytest.raises(UserError, match="not found"):
        build_adapter(ModelConfig(name="yolov5:yolov5q.yaml"))
