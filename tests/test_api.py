"""hagxai.explain: a plain nn.Module, a detector through the README's guide, names and folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import hagxai
from hagxai.combiner import HAGCombiner
from hagxai.errors import UserError
from hagxai.export import save_combiner
from hagxai.models import model_digest

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(heading: str) -> str:
    """The first ```python block under the README heading ``heading``."""
    text = README.read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class Quadrants(nn.Module):
    """Class 0 reads the top-left quadrant of its features, class 1 the bottom-right one."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.features.weight.fill_(1.0)
            self.features.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)[:, 0]
        h, w = f.shape[-2:]
        top_left = f[:, : h // 2, : w // 2].mean((1, 2))
        bottom_right = f[:, h // 2 :, w // 2 :].mean((1, 2))
        return torch.stack([top_left, bottom_right], dim=1)


def _quadrant_mass(saliency: torch.Tensor) -> tuple[float, float]:
    h, w = saliency.shape
    return float(saliency[: h // 2, : w // 2].sum()), float(saliency[h // 2 :, w // 2 :].sum())


def test_plain_module_maps_point_at_what_each_class_reads() -> None:
    model = Quadrants().train()
    images = [torch.rand(3, 60, 80), torch.rand(3, 60, 80)]
    maps = hagxai.explain(model, images, "fullgradcam++", layers=[model.features], targets=[0, 1])
    # the caller's module keeps its mode and parameter flags
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert isinstance(maps, torch.Tensor) and maps.shape == (2, 60, 80)
    assert maps.dtype == torch.float32 and maps.min() >= 0 and 0.9 < maps.max() <= 1
    top_left, bottom_right = _quadrant_mass(maps[0])
    assert top_left > 20 * bottom_right
    top_left, bottom_right = _quadrant_mass(maps[1])
    assert bottom_right > 20 * top_left
    # layers by name give the same maps as by module
    by_name = hagxai.explain(model, images, "fullgradcam++", layers=["features"], targets=[0, 1])
    torch.testing.assert_close(by_name, maps)


def test_per_target_maps_and_mixed_inputs(tmp_path) -> None:
    model = Quadrants()
    path = tmp_path / "image.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(
        path
    )
    pil = Image.open(path)
    images = [str(path), pil, torch.rand(3, 30, 30)]
    maps = hagxai.explain(
        model, images, "hirescam", layers=["features"], targets=[[0, 1], 0, 1], per_target=True
    )
    assert [tuple(m.shape) for m in maps] == [(2, 40, 50), (1, 40, 50), (1, 30, 30)]
    first, second = maps[0]
    assert _quadrant_mass(first)[0] > 20 * _quadrant_mass(first)[1]
    assert _quadrant_mass(second)[1] > 20 * _quadrant_mass(second)[0]
    mixed = hagxai.explain(model, images, "gradcam", layers=["features"], targets=0)
    assert isinstance(mixed, list)
    assert [tuple(m.shape) for m in mixed] == [(40, 50), (40, 50), (30, 30)]


def test_readme_one_call_example_runs(capsys) -> None:
    exec(readme_block("One call for any model"), {})
    assert capsys.readouterr().out.strip() == "[(60, 80), (32, 32)]"


def test_detector_through_the_readme_guide(capsys) -> None:
    namespace: dict = {}
    exec(readme_block("Your own detector"), namespace)
    assert capsys.readouterr().out.strip() == "[(3, 48, 80), (3, 64, 64)]"
    adapter, images = namespace["adapter"], namespace["images"]
    maps = hagxai.explain(adapter, images, "gradcam", targets=namespace["spec"])
    assert isinstance(maps, list) and [tuple(m.shape) for m in maps] == [(48, 80), (64, 64)]
    assert all(0.9 < m.max() <= 1 for m in maps)
    # D-RISE goes through the adapter's rescore; the learned head through the same evidence
    drise = hagxai.explain(adapter, images[:1], "drise", targets=namespace["spec"], num_masks=64)
    assert drise.shape == (1, 48, 80) and 0.9 < drise.max() <= 1
    learned = hagxai.explain(adapter, images, combiner=HAGCombiner(), targets=namespace["spec"])
    assert [tuple(m.shape) for m in learned] == [(48, 80), (64, 64)]


def test_combiner_folder_for_a_plain_module(tmp_path) -> None:
    model = Quadrants()
    folder = save_combiner(
        HAGCombiner(["features"]), tmp_path / "head", model_digest=model_digest(model)
    )
    images = torch.rand(2, 3, 48, 48)
    maps = hagxai.explain(model, images, combiner=folder, targets=[0, 1], input_size=(48, 48))
    assert maps.shape == (2, 48, 48)
    assert _quadrant_mass(maps[0])[0] > _quadrant_mass(maps[0])[1]
    with pytest.raises(UserError, match=r"no layer .features\.weight."):
        hagxai.explain(model, images, combiner=folder, layers=["features.weight"])


def test_model_name_without_weights_warns_and_bad_input_is_one_line() -> None:
    with pytest.warns(UserWarning, match="random weights"):
        maps = hagxai.explain("resnet18", torch.rand(1, 3, 64, 64), input_size=(64, 64))
    assert maps.shape == (1, 64, 64)
    with pytest.raises(UserError, match="unknown method"):
        hagxai.explain(Quadrants(), torch.rand(1, 3, 8, 8), "nope", layers=["features"])
    with pytest.raises(UserError, match="2 targets for 1 images"):
        hagxai.explain(Quadrants(), torch.rand(1, 3, 8, 8), layers=["features"], targets=[0, 1])


def test_model_from_a_combiner_card(tmp_path) -> None:
    from hagxai.config import ModelConfig
    from hagxai.models.registry import build_adapter, card_fields

    torch.manual_seed(2)
    source = build_adapter(ModelConfig(name="resnet18", num_classes=3, input_size=(64, 64)))
    weights = tmp_path / "w.pt"
    torch.save(source.model.state_dict(), weights)
    folder = save_combiner(
        HAGCombiner(["layer4"]),
        tmp_path / "head",
        model_name="resnet18",
        model_digest=model_digest(source.model),
        model_build=card_fields(ModelConfig(name="resnet18", weights=weights, num_classes=3)),
        input_size=(64, 64),
    )
    images = torch.rand(2, 3, 50, 70)
    from_card = hagxai.explain(None, images, combiner=folder, targets=[0, 2])
    given = hagxai.explain(source, images, combiner=folder, targets=[0, 2])
    assert from_card.shape == (2, 50, 70)
    torch.testing.assert_close(from_card, given)
    with pytest.raises(UserError, match="model=None needs combiner="):
        hagxai.explain(None, images)
