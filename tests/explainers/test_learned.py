"""The learned explainer: a saved combiner re-applied from Python and from ``hagxai explain``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from hagxai.combiner import HAGCombiner
from hagxai.commands import explain
from hagxai.config import ModelConfig
from hagxai.evidence import extract_evidence
from hagxai.explainers.learned import LearnedExplainer
from hagxai.export import CombinerMismatchError, save_combiner
from hagxai.models import TargetSpec, build_adapter, model_digest

LAYERS = ["layer3", "layer4"]


@pytest.fixture
def setup(tmp_path):
    """A random-init classifier saved to a weights file, and a combiner bound to it."""
    cfg = ModelConfig(name="resnet18", num_classes=3, input_size=(64, 64))
    adapter = build_adapter(cfg)
    weights = tmp_path / "weights.pt"
    torch.save(adapter.model.state_dict(), weights)
    combiner = HAGCombiner(LAYERS, layer_weights=True)
    with torch.no_grad():
        combiner.layer_weight.copy_(torch.tensor([0.3, 1.7]))
        combiner.grad_neg.fill_(0.2)
    folder = save_combiner(
        combiner,
        tmp_path / "combiner",
        model_name="resnet18",
        model_digest=model_digest(adapter.model),
        input_size=(64, 64),
    )
    return adapter, weights, folder, combiner


def _run(argv):
    parser = argparse.ArgumentParser()
    explain.add_parser(parser.add_subparsers())
    return explain.run(parser.parse_args(argv))


def test_from_folder_maps_equal_the_combiner_on_extracted_evidence(setup):
    adapter, _, folder, combiner = setup
    explainer = LearnedExplainer.from_folder(folder, adapter)
    assert explainer.layers == LAYERS
    images = [torch.rand(3, 40, 56), torch.rand(3, 64, 48)]
    spec = TargetSpec(labels=[[0], [2]])
    maps = explainer(images, spec)
    assert [tuple(m.shape) for m in maps] == [(40, 56), (64, 48)]
    extraction = extract_evidence(adapter, images, spec, LAYERS)
    with torch.no_grad():
        direct = combiner(extraction.evidence, (64, 64))
    torch.testing.assert_close(explainer.explain_evidence(extraction.evidence, (64, 64)), direct)
    expected = extraction.prepared.frames[1].map_to_original(direct[1]).clamp(0, 1)
    torch.testing.assert_close(maps[1], expected)


def test_a_card_for_another_model_is_refused(setup):
    _, _, folder, _ = setup
    other = build_adapter(ModelConfig(name="resnet18", num_classes=3, input_size=(64, 64)))
    with pytest.raises(CombinerMismatchError, match="trained for model digest"):
        LearnedExplainer.from_folder(folder, other)
    resized = build_adapter(ModelConfig(name="resnet18", num_classes=3, input_size=(96, 96)))
    with pytest.raises(CombinerMismatchError, match="input size 64×64"):
        LearnedExplainer.from_folder(folder, resized)


def test_explain_command_writes_learned_maps_beside_baselines(setup, tmp_path):
    _, weights, folder, _ = setup
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "im0.png")
    out = tmp_path / "out"
    model = ["--model", "resnet18", "--num-classes", "3", "--input-size", "64", "64"]
    argv = ["explain", str(tmp_path / "im0.png"), *model, "--weights", str(weights)]
    assert _run([*argv, "--combiner", str(folder), "--method", "gradcam", "--out", str(out)]) == 0
    learned = np.load(out / "im0.learned.npy")
    assert learned.shape == (40, 56) and learned.dtype == np.float32
    assert learned.min() >= 0 and learned.max() <= 1 and learned.max() > 0.5
    assert Image.open(out / "im0.learned.png").size == (56, 40)
    assert (out / "im0.gradcam.npy").exists()

    only = tmp_path / "only"
    assert _run([*argv, "--combiner", str(folder), "--out", str(only)]) == 0
    assert sorted(p.name for p in only.iterdir()) == ["im0.learned.npy", "im0.learned.png"]
    np.testing.assert_allclose(np.load(only / "im0.learned.npy"), learned, atol=1e-6)

    wrong = [*model, "--combiner", str(folder), "--out", str(tmp_path / "wrong")]
    with pytest.raises(CombinerMismatchError, match=r"combiner\.json: card was trained for model"):
        _run(["explain", str(tmp_path / "im0.png"), *wrong])
