"""The combiner against hand-written reference maths (DESIGN.md, "The combiner — exact maths")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from hagxai.combiner import REFERENCE_KEYS, HAGCombiner, separable_smooth
from hagxai.evidence import Evidence
from hagxai.losses import hag_loss


def make_evidence(
    shapes: dict[str, tuple[int, int, int]],
    image_index: list[int],
    num_images: int,
    dtype: torch.dtype = torch.float32,
    grad_scale: float = 1.0,
) -> Evidence:
    """Random evidence: ``shapes`` maps layer -> (C, h, w)."""
    generator = torch.Generator().manual_seed(1)
    index = torch.tensor(image_index, dtype=torch.long)
    acts, grads = {}, {}
    for name, (c, h, w) in shapes.items():
        acts[name] = torch.randn(num_images, c, h, w, generator=generator, dtype=dtype)
        grads[name] = grad_scale * torch.randn(
            len(index), c, h, w, generator=generator, dtype=dtype
        )
    return Evidence(list(shapes), acts, grads, index, (64, 80))


def dense_kernel(amp: float, s: float, radius: int = 10, dtype=torch.float32) -> torch.Tensor:
    """The reference's 2-D kernel, written straight from its formula."""
    u = torch.arange(-radius, radius + 1, dtype=dtype)
    squared = u[:, None] ** 2 + u[None, :] ** 2
    return amp * torch.exp(-squared / (2 * abs(s) + 1e-5))


def dense_smooth(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise 'same' conv2d with zero padding of an ``N×C×h×w`` tensor."""
    channels, radius = x.shape[1], kernel.shape[-1] // 2
    weight = kernel.expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, padding=radius, groups=channels)


def fullgradcampp_reference(evidence: Evidence, out_size: tuple[int, int]):
    """FullGrad-CAM++ with the two smoothings, by hand: per-target M and final maps."""
    (name,) = evidence.layers
    acts = evidence.acts[name][evidence.image_index]
    kernel = dense_kernel(1.0, 3.0, dtype=acts.dtype)
    per_target = torch.relu((acts * dense_smooth(torch.relu(evidence.grads[name]), kernel)).sum(1))
    normalised = per_target / (per_target.sum((1, 2), keepdim=True) + 1e-5)
    summed = torch.zeros(evidence.num_images, *per_target.shape[1:], dtype=acts.dtype)
    for target, image in enumerate(evidence.image_index.tolist()):
        summed[image] += normalised[target]
    smoothed = dense_smooth(summed[:, None], kernel)[:, 0]
    low = smoothed.amin((1, 2), keepdim=True)
    high = smoothed.amax((1, 2), keepdim=True)
    scaled = (smoothed - low) / (high - low + 1e-5)
    maps = F.interpolate(scaled[:, None], size=out_size, mode="bilinear", align_corners=False)
    return per_target, maps[:, 0]


def test_initial_values_are_smoothed_fullgradcampp() -> None:
    evidence = make_evidence({"layer": (6, 12, 16)}, [0, 0, 1, 2, 2], num_images=3)
    combiner = HAGCombiner(["layer"])
    expected_targets, expected_maps = fullgradcampp_reference(evidence, (40, 50))
    with torch.no_grad():
        got_targets = combiner.target_maps(evidence, normalised=False)
        got_maps = combiner(evidence, (40, 50))
    scale = expected_targets.abs().max()
    assert float((got_targets - expected_targets).abs().max() / scale) < 1e-6
    assert float((got_maps - expected_maps).abs().max()) < 1e-6


@pytest.mark.parametrize(("amp", "s", "size"), [(1.0, 3.0, (24, 30)), (1.7, 12.0, (7, 40))])
def test_separable_smoothing_equals_dense_convolution(amp, s, size) -> None:
    x = torch.rand(2, 3, *size)
    expected = dense_smooth(x, dense_kernel(amp, s))
    got = separable_smooth(x, torch.tensor(amp), torch.tensor(s), radius=10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_several_layers_sum_before_relu_on_the_finest_grid() -> None:
    # A coarse layer is upsampled (nearest) to the finest grid; the layers' channel sums add up
    # before the ReLU, i.e. as one layer with the channels stacked.
    evidence = make_evidence({"fine": (3, 8, 10), "coarse": (2, 4, 5)}, [0, 1, 1], num_images=2)
    combiner = HAGCombiner(["fine", "coarse"])

    def up(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    stacked = Evidence(
        ["all"],
        {"all": torch.cat([evidence.acts["fine"], up(evidence.acts["coarse"])], 1)},
        {"all": torch.cat([evidence.grads["fine"], up(evidence.grads["coarse"])], 1)},
        evidence.image_index,
        evidence.input_size,
    )
    torch.testing.assert_close(
        combiner.target_maps(evidence), HAGCombiner().target_maps(stacked), rtol=1e-6, atol=0
    )


def test_extensions_start_at_the_reference() -> None:
    evidence = make_evidence({"a": (3, 8, 10), "b": (2, 4, 5)}, [0, 1, 1], num_images=2)
    reference = HAGCombiner(["a", "b"])(evidence, (16, 20))
    extended = HAGCombiner(["a", "b"], layer_weights=True, channels={"a": 3, "b": 2})
    torch.testing.assert_close(extended(evidence, (16, 20)), reference, rtol=0, atol=1e-6)
    windowed = HAGCombiner(["a", "b"], learn_radius=True)(evidence, (16, 20))
    torch.testing.assert_close(windowed, reference, rtol=0, atol=1e-4)


def test_gradients_reach_every_parameter() -> None:
    # Small gradients make the +1e-5 terms matter, so amplitudes get a gradient too.
    evidence = make_evidence(
        {"a": (3, 8, 10), "b": (2, 4, 5)}, [0, 1, 1], num_images=2, grad_scale=1e-4
    )
    combiner = HAGCombiner(["a", "b"], layer_weights=True, channels={"a": 3, "b": 2})
    combiner_r = HAGCombiner(["a", "b"], learn_radius=True)
    for module in (combiner, combiner_r):
        with torch.no_grad():  # wide kernels, so the soft window's taps carry weight
            module.grad_s.fill_(40.0)
            module.map_s.fill_(40.0)
            module.grad_neg.fill_(0.3)
        loss = hag_loss(module(evidence, (16, 20)), torch.rand(2, 16, 20))
        loss.backward()
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().max() > 0, name


def test_gradcheck_float64() -> None:
    evidence = make_evidence(
        {"a": (2, 4, 5), "b": (2, 2, 3)}, [0, 0, 1], num_images=2, dtype=torch.float64
    )
    combiner = HAGCombiner(
        ["a", "b"], radius=2, layer_weights=True, channels={"a": 2, "b": 2}, learn_radius=True
    ).double()
    with torch.no_grad():
        combiner.grad_neg.fill_(0.2)
        combiner.grad_radius.fill_(1.7)
        combiner.map_radius.fill_(1.2)
    names = [name for name, _ in combiner.named_parameters()]
    human = torch.rand(2, 6, 7, dtype=torch.float64)

    def loss(*params: torch.Tensor) -> torch.Tensor:
        maps = functional_call(combiner, dict(zip(names, params)), (evidence, (6, 7)))
        return hag_loss(maps, human)

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in combiner.parameters())
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5)


def test_image_without_targets_gets_zeros_and_no_nan() -> None:
    evidence = make_evidence({"layer": (3, 8, 10)}, [0, 2, 2], num_images=3)
    maps = HAGCombiner(["layer"])(evidence, (16, 20))
    assert torch.isfinite(maps).all()
    assert torch.equal(maps[1], torch.zeros(16, 20))
    assert maps[0].max() > 0.5 and maps[2].max() > 0.5

    empty = make_evidence({"layer": (3, 8, 10)}, [], num_images=2)
    assert torch.equal(HAGCombiner(["layer"])(empty, (16, 20)), torch.zeros(2, 16, 20))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("kind", ["acts", "grads"])
def test_nan_or_inf_evidence_is_refused(bad, kind) -> None:
    evidence = make_evidence({"layer": (3, 8, 10)}, [0, 1], num_images=2)
    getattr(evidence, kind)["layer"][1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"'layer'.*NaN or inf"):
        HAGCombiner(["layer"])(evidence, (16, 20))


def test_layer_mismatch_is_refused() -> None:
    evidence = make_evidence({"a": (3, 8, 10)}, [0, 1], num_images=2)
    with pytest.raises(ValueError, match=r"built for layers \['a', 'b'\].*hooks \['a'\]"):
        HAGCombiner(["a", "b"])(evidence, (16, 20))
    with pytest.raises(ValueError, match=r"per-channel slopes for 4 channels.*has 3"):
        HAGCombiner(["a"], channels={"a": 4})(evidence, (16, 20))
    with pytest.raises(ValueError, match="need the combiner's layers"):
        HAGCombiner(layer_weights=True)


def test_from_reference_round_trips_and_checks_keys() -> None:
    values = dict(zip(REFERENCE_KEYS, [1.3, 0.7, 1.1, 0.05, 2.0, 4.5, 0.8, 2.5, 0.9]))
    combiner = HAGCombiner.from_reference(values)
    assert combiner.reference_values() == pytest.approx(values, rel=1e-7)
    assert float(combiner.grad_s.detach()) == pytest.approx(4.5)
    with pytest.raises(ValueError, match=r"missing keys \['ObjW'\].*unknown keys \['Extra'\]"):
        HAGCombiner.from_reference({**{k: values[k] for k in REFERENCE_KEYS[:-1]}, "Extra": 1.0})
    with pytest.raises(ValueError, match=r"G_A_all.*not finite"):
        HAGCombiner.from_reference({**values, "G_A_all": math.nan})
    per_channel = HAGCombiner.from_reference(values, ["a"], channels={"a": 3})
    assert torch.equal(per_channel.act_pos, torch.full((3,), 1.3))


def test_autocast_computes_in_float32() -> None:
    evidence = make_evidence({"layer": (3, 8, 10)}, [0, 1], num_images=2)
    combiner = HAGCombiner(["layer"])
    expected = combiner(evidence, (16, 20))
    half = evidence.to("cpu", torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = combiner(half, (16, 20))
    assert got.dtype == torch.float32
    exact = combiner(half.to("cpu", torch.float32), (16, 20))
    assert torch.equal(got, exact)
    assert (got - expected).abs().max() < 0.05


def test_forward_is_the_grid_maps_resized() -> None:
    evidence = make_evidence({"a": (3, 8, 10), "b": (2, 4, 5)}, [0, 1, 1], num_images=2)
    combiner = HAGCombiner(["a", "b"])
    grid = combiner.grid_maps(evidence)
    assert grid.shape == (2, 8, 10)
    resized = F.interpolate(grid[:, None], size=(17, 23), mode="bilinear", align_corners=False)
    assert torch.equal(combiner(evidence, (17, 23)), resized[:, 0])
