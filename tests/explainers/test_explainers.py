"""The multi-object rule, scale-free normalising, sanity maps and the registry."""

from __future__ import annotations

import pytest
import torch

from hagxai import explainers
from hagxai.evidence import Evidence
from hagxai.explainers.cam import combine_targets, minmax


def _evidence(scale: float = 1.0) -> Evidence:
    acts = torch.rand(3, 4, 5, 5)
    return Evidence(
        layers=["a", "b"],
        acts={"a": acts, "b": torch.rand(3, 2, 3, 3)},
        grads={"a": torch.randn(4, 4, 5, 5) * scale, "b": torch.randn(4, 2, 3, 3) * scale},
        image_index=torch.tensor([0, 0, 2, 2]),
        input_size=(20, 20),
    )


def test_minmax_is_scale_free_and_zeroes_constants():
    maps = torch.stack([torch.rand(4, 4) * 1e-9, torch.full((4, 4), 3.0)])
    out = minmax(maps)
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.equal(out[1], torch.zeros(4, 4))


def test_combine_targets_rule():
    maps = torch.stack([torch.eye(3), torch.eye(3).flip(1) * 5])
    out = combine_targets(maps, torch.tensor([0, 0]), 2)
    expected = minmax(((torch.eye(3) + torch.eye(3).flip(1)) / 2)[None])[0]
    torch.testing.assert_close(out[0], expected)
    assert torch.equal(out[1], torch.zeros(3, 3))


@pytest.mark.parametrize("name", [*explainers.available()])
def test_every_method_gives_unit_maps_and_zero_for_images_without_targets(name):
    evidence = _evidence()
    options = {
        "human": {"human_maps": torch.rand(3, 8, 8)},
        "box_prior": {"boxes": torch.tensor([[2.0, 2, 10, 12]] * 4)},
    }.get(name, {})
    maps = explainers.get(name, **options)(evidence, (12, 10))
    assert maps.shape == (3, 12, 10)
    assert maps.min() >= 0 and maps.max() <= 1
    if name != "human":
        assert torch.equal(maps[1], torch.zeros(12, 10))


@pytest.mark.parametrize("name", ["gradcam", "fullgradcam", "fullgradcam++", "layercam"])
def test_tiny_gradients_keep_their_maps(name):
    torch.manual_seed(3)
    big = explainers.get(name)(_evidence(), (10, 10))
    torch.manual_seed(3)
    tiny = explainers.get(name)(_evidence(1e-7), (10, 10))
    torch.testing.assert_close(big, tiny, atol=1e-5, rtol=0)


def test_unknown_name_lists_close_names():
    with pytest.raises(KeyError, match="gradcam"):
        explainers.get("gradcm")
    with pytest.raises(KeyError, match="perturbation_maps"):
        explainers.get("drise")


def test_uniform_random_is_seeded():
    evidence = _evidence()
    first = explainers.get("uniform_random", seed=4)(evidence, (6, 6))
    assert torch.equal(first, explainers.get("uniform_random", seed=4)(evidence, (6, 6)))
    other = explainers.get("uniform_random", seed=5)(evidence, (6, 6))
    assert not torch.equal(first, other), "another seed must give other maps"
    assert torch.equal(first, explainers.get("uniform_random", seed=4)(evidence, (6, 6)))


def test_box_prior_is_a_gaussian_inside_each_box_and_zero_outside():
    evidence = _evidence()  # targets 0, 1 in image 0; 2, 3 in image 2; input 20×20
    boxes = torch.tensor([[0.0, 0, 10, 10], [10, 10, 20, 20], [4, 6, 12, 10], [4, 6, 12, 10]])
    maps = explainers.get("box_prior", boxes=boxes)(evidence, (40, 40))  # twice the input size
    assert maps.shape == (3, 40, 40)
    # image 2: one box (twice), 8×12..24×20 in map pixels; its peak at the box centre
    inside = torch.zeros(40, 40, dtype=torch.bool)
    inside[12:20, 8:24] = True
    assert maps[2][~inside].max() == 0
    peak = divmod(int(maps[2].argmax()), 40)
    assert peak in {(15, 15), (15, 16), (16, 15), (16, 16)}
    # image 0: two boxes of equal weight, in opposite quarters
    assert maps[0][:20, :20].max() == maps[0][20:, 20:].max() == 1
    assert maps[0][:20, 20:].max() == 0
    with pytest.raises(ValueError, match="4×4 target boxes"):
        explainers.get("box_prior", boxes=boxes[:2])(evidence, (40, 40))
