"""The demo models: cache semantics on tiny variants, quality on the shipped demo configs."""

from pathlib import Path

import pytest
import torch

from hagxai.config import load_config
from hagxai.data.demo import demo_dataset
from hagxai.models import demo

pytestmark = pytest.mark.slow


def _tiny(tmp_path: Path, task: str, *overrides: str):
    cfg = load_config(
        None,
        [
            f"cache_dir={tmp_path}",
            f"data.task={task}",
            "device=cpu",
            "data.demo.num_train=32",
            "data.demo.num_val=16",
            "model.demo.epochs=1",
            "model.demo.batch_size=16",
            *overrides,
        ],
    )
    return cfg, demo_dataset(cfg, progress=False)


def test_classifier_is_cached_by_spec(tmp_path: Path) -> None:
    cfg, root = _tiny(tmp_path, "classification", "model.demo.width=8")
    trained = demo.train_classifier(cfg, root, progress=False)
    again = demo.train_classifier(cfg, root, progress=False)
    assert again.path == trained.path
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    other = demo.train_classifier(cfg.model_copy(update={"seed": 1}), root, progress=False)
    assert other.path != trained.path
    assert sorted(p.name for p in trained.path.iterdir()) == ["card.json", "model.safetensors"]


def test_detector_reloads_from_safetensors_without_pickle(tmp_path: Path) -> None:
    cfg, root = _tiny(tmp_path, "detection")
    trained = demo.train_detector(cfg, root, progress=False)
    assert 0.0 <= trained.card["val_map50"] <= 1.0
    assert sorted(p.name for p in trained.path.iterdir()) == ["card.json", "model.safetensors"]
    reloaded = demo.load_detector(trained.path)
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(trained.model(x)[0], reloaded.model(x)[0])
    assert all(p.requires_grad for p in reloaded.model.parameters())


def test_demo_classifier_clears_its_bar(demo_classifier) -> None:
    _, _, model = demo_classifier
    assert model.card["val_accuracy"] >= 0.90


def test_demo_detector_clears_its_bar(demo_detector) -> None:
    _, _, model = demo_detector
    assert model.card["val_map50"] >= 0.80
