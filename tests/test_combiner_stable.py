"""The combiner's stable parameterisation and the extensions' gradients (float64 gradcheck)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from hagxai.combiner import HAGCombiner
from hagxai.export import load_combiner, save_combiner
from hagxai.losses import hag_loss, kl_loss
from tests.test_combiner import make_evidence

SHAPES = {"a": (2, 4, 5), "b": (2, 2, 3)}


def _gradcheck(combiner: HAGCombiner, loss_fn=hag_loss) -> bool:
    evidence = make_evidence(SHAPES, [0, 0, 1], num_images=2, dtype=torch.float64)
    names = [name for name, _ in combiner.named_parameters()]
    human = torch.rand(2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss(*params: torch.Tensor) -> torch.Tensor:
        maps = functional_call(combiner, dict(zip(names, params)), (evidence, (6, 7)))
        return loss_fn(maps, human)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in combiner.parameters())
    return torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {"layer_weights": True},
        {"channels": {"a": 2, "b": 2}},
        {"learn_radius": True},
        {"parameterisation": "stable"},
        {
            "parameterisation": "stable",
            "layer_weights": True,
            "channels": {"a": 2, "b": 2},
            "learn_radius": True,
        },
    ],
)
def test_gradcheck_each_extension(options) -> None:
    combiner = HAGCombiner(["a", "b"], radius=2, **options).double()
    with torch.no_grad():
        combiner.grad_neg.fill_(0.2)
        combiner.act_neg.fill_(0.6)
        if combiner.learn_radius:
            combiner.grad_radius.fill_(1.7)
            combiner.map_radius.fill_(1.2)
        if combiner.use_layer_weights:
            combiner.set_value("layer_weight", 0.8)
    assert _gradcheck(combiner)


def test_gradcheck_stable_with_kl_loss() -> None:
    combiner = HAGCombiner(["a", "b"], radius=2, parameterisation="stable").double()
    assert _gradcheck(combiner, kl_loss)


def test_stable_learns_no_amplitude_and_keeps_positive_slopes() -> None:
    combiner = HAGCombiner(["a"], parameterisation="stable", layer_weights=True)
    learned = {name for name, _ in combiner.named_parameters()}
    assert {"grad_amp", "map_amp", "obj_w"}.isdisjoint(learned)
    assert {"act_pos_log", "grad_pos_log", "layer_weight_log"} <= learned
    assert {"grad_amp", "map_amp", "obj_w"} <= set(combiner.state_dict())
    with torch.no_grad():
        combiner.act_pos_log.fill_(-50.0)  # as far as any number of steps can walk it
    assert float(combiner.value("act_pos").detach()) > 0
    with pytest.raises(ValueError, match="positive"):
        combiner.set_value("grad_pos", -1.0)


def test_stable_starts_at_the_reference_and_ignores_common_scales() -> None:
    evidence = make_evidence({"a": (3, 8, 10), "b": (2, 4, 5)}, [0, 1, 1], num_images=2)
    reference = HAGCombiner(["a", "b"])(evidence, (16, 20))
    stable = HAGCombiner(["a", "b"], parameterisation="stable", layer_weights=True)
    maps = stable(evidence, (16, 20))
    torch.testing.assert_close(maps, reference, rtol=0, atol=1e-4)
    # scale-free: the slopes' and layer weights' common scale change nothing
    stable.set_value("act_pos", 1e-3)
    with torch.no_grad():
        stable.act_neg.fill_(1e-3)
    stable.set_value("layer_weight", 1e-4)
    torch.testing.assert_close(stable(evidence, (16, 20)), maps, rtol=1e-5, atol=1e-6)
    # while the reference's map moves with them through its +1e-5 terms
    small = HAGCombiner(["a", "b"])
    with torch.no_grad():
        small.act_pos.fill_(1e-6)
        small.act_neg.fill_(1e-6)
        small.map_amp.fill_(1e-3)
    assert (small(evidence, (16, 20)) - reference).abs().max() > 1e-2


def test_stable_gives_zeros_for_images_without_targets() -> None:
    evidence = make_evidence({"layer": (3, 8, 10)}, [0, 2, 2], num_images=3)
    maps = HAGCombiner(["layer"], parameterisation="stable")(evidence, (16, 20))
    assert torch.isfinite(maps).all()
    assert torch.equal(maps[1], torch.zeros(16, 20))
    assert maps[0].max() > 0.5 and maps[2].max() > 0.5


def test_stable_card_round_trips_and_has_no_reference_values(tmp_path) -> None:
    combiner = HAGCombiner(["a", "b"], parameterisation="stable", channels={"a": 3, "b": 2})
    combiner.set_value("grad_pos", 2.5)
    with pytest.raises(ValueError, match="no reference equivalent"):
        combiner.reference_values()
    save_combiner(combiner, tmp_path)
    loaded = load_combiner(tmp_path)
    assert loaded.options() == combiner.options()
    assert torch.allclose(loaded.value("grad_pos"), torch.full((5,), 2.5))
    evidence = make_evidence({"a": (3, 8, 10), "b": (2, 4, 5)}, [0, 1], num_images=2)
    torch.testing.assert_close(loaded(evidence, (16, 20)), combiner(evidence, (16, 20)))


def test_unknown_parameterisation_is_refused() -> None:
    with pytest.raises(ValueError, match="parameterisation must be one of"):
        HAGCombiner(["a"], parameterisation="positive")
