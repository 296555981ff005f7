"""``hagxai explain`` edges: random-weights warning, the model from a combiner's card, per-target
maps, --classes / --max-det, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from hagxai.cli import main
from hagxai.combiner import HAGCombiner
from hagxai.config import ModelConfig
from hagxai.export import save_combiner
from hagxai.models import model_digest
from hagxai.models.registry import card_fields


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_model_without_weights_warns_clearly(image, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["explain", "--model", "resnet18", str(image), "--input-size", "64", "64"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "warning: model 'resnet18' has random weights" in captured.err
    assert "--weights" in captured.err and "--pretrained" in captured.err
    assert np.load(out / "img.gradcam.npy").shape == (40, 56)


@pytest.fixture
def bound_combiner(tmp_path):
    """A combiner folder whose card names resnet18 (3 classes) and a local weights file."""
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=3)
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    cfg = ModelConfig(name="resnet18", weights=weights, num_classes=3)
    return save_combiner(
        HAGCombiner(["layer4"]),
        tmp_path / "combiner",
        model_name="resnet18",
        model_digest=model_digest(model),
        model_build=card_fields(cfg),
        input_size=(64, 64),
    ), weights


def test_combiner_without_model_rebuilds_it_from_the_card(
    bound_combiner, image, tmp_path, capsys, monkeypatch
) -> None:
    folder, weights = bound_combiner
    monkeypatch.chdir(tmp_path.parent)  # the card's weights path is absolute
    out = tmp_path / "out"
    argv = ["explain", "--combiner", str(folder), str(image), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "random weights" not in captured.err
    saliency = np.load(out / "img.learned.npy")
    assert saliency.shape == (40, 56) and saliency.max() > 0.5
    # other weights in the same file: the digest check refuses the card, in one line
    torch.manual_seed(4)
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "digest" in err and len(err.splitlines()) == 1


def test_explain_needs_a_model_or_a_card(image, capsys) -> None:
    assert main(["explain", str(image)]) == 1
    assert "give --model NAME, or --combiner DIR" in capsys.readouterr().err


def test_per_target_and_classes_on_a_classifier(image, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["explain", "--model", "resnet18", "--num-classes", "5", str(image), "--out", str(out)]
    argv += ["--input-size", "64", "64", "--classes", "1", "3", "--per-target", "--no-progress"]
    argv += ["--method", "fullgradcam++"]
    assert main(argv) == 0
    first, second = (
        np.load(out / "img.fullgradcam++.t0.npy"),
        np.load(out / "img.fullgradcam++.t1.npy"),
    )
    assert first.shape == second.shape == (40, 56)
    assert not np.allclose(first, second)
    assert (out / "img.fullgradcam++.t1.png").exists()


def test_classes_by_unknown_name_is_one_short_line(image, tmp_path, capsys) -> None:
    argv = ["explain", "--model", "yolov8n.yaml", "--input-size", "64", "64", str(image)]
    argv += ["--classes", "zebra", "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "zebra" in err and "80 classes" in err and "more" in err and len(err) < 300


def test_max_det_keeps_the_most_confident_detections(tmp_path, capsys) -> None:
    from hagxai.commands.explain import _target_spec

    class Args:
        classes, label, conf, max_det = ["2"], None, 0.1, 2

    class Adapter:
        task = "detection"

    spec = _target_spec(Args, Adapter, 3)
    assert spec.classes == [2] and spec.max_per_image == 2 and spec.conf_threshold == 0.1


@pytest.mark.slow
def test_demo_run_card_rebuilds_the_demo_model(demo_classifier, image, tmp_path, capsys) -> None:
    """A card as `hagxai train` writes it for the demo classifier: name and build fields only."""
    cfg, _, trained = demo_classifier
    folder = save_combiner(
        HAGCombiner(),
        tmp_path / "best",
        model_name="demo-classifier",
        model_digest=model_digest(trained.model),
        model_build=card_fields(cfg.model),
        input_size=tuple(trained.card["input_size"]),
    )
    out = tmp_path / "out"
    argv = ["explain", "--combiner", str(folder), str(image), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert "random weights" not in capsys.readouterr().err
    assert np.load(out / "img.learned.npy").shape == (40, 56)
