"""Plausibility metrics: equal to pysaliency on random inputs, hand-worked cases, bad input."""

from __future__ import annotations

import math

import numpy as np
import pysaliency.metrics as pysaliency_metrics
import pysaliency.roc as pysaliency_roc
import pytest
import torch

from hagxai.metrics import MetricWarning
from hagxai.metrics.plausibility import (
    PLAUSIBILITY,
    auc_judd,
    cc,
    centre_bias,
    fixations_from_map,
    information_gain,
    kld,
    nss,
    shuffled_auc,
    sim,
)

# pysaliency's AUC code calls np.trapz, which NumPy 2.4 removed.
if not hasattr(np, "trapz"):
    np.trapz = np.trapezoid  # noqa: NPY201 - restores the name pysaliency calls


def _random_fixations(n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    return torch.stack(
        [torch.randint(0, w, (n,), generator=g), torch.randint(0, h, (n,), generator=g)], 1
    )


def _case(h: int, w: int, seed: int, b: int = 8):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, h, w, generator=g)
    # Every other map has only six levels, so that AUC tie handling is exercised.
    maps[::2] = (maps[::2] * 6).floor()
    human = torch.rand(b, h, w, generator=g) ** 3
    sizes = torch.randint(1, 60, (b,), generator=g).tolist()
    fixations = [_random_fixations(n, h, w, g) for n in sizes]
    other = [
        _random_fixations(n, h, w, g) for n in torch.randint(1, 60, (b,), generator=g).tolist()
    ]
    return maps, human, fixations, other


@pytest.mark.parametrize(("h", "w", "seed"), [(16, 16, 1), (24, 32, 2), (48, 40, 3)])
def test_equal_to_pysaliency(h: int, w: int, seed: int) -> None:
    maps, human, fixations, other = _case(h, w, seed)
    ours = {
        "cc": cc(maps, human),
        "kld": kld(maps, human),
        "sim": sim(maps, human),
        "nss": nss(maps, fixations),
        "auc_judd": auc_judd(maps, fixations),
        "shuffled_auc": shuffled_auc(maps, fixations, other),
    }
    general_roc = pysaliency_roc.general_roc
    for i in range(maps.shape[0]):
        # The same float32 values, widened, so that both sides see the same ties.
        m, hm = maps[i].double().numpy(), human[i].double().numpy()
        xs, ys = fixations[i][:, 0].numpy(), fixations[i][:, 1].numpy()
        ox, oy = other[i][:, 0].numpy(), other[i][:, 1].numpy()
        with np.errstate(divide="ignore"):  # pysaliency takes log(0) on maps with zeros
            theirs = {
                "cc": pysaliency_metrics.CC(m, hm),
                "kld": pysaliency_metrics.MIT_KLDiv(m, hm),
                "sim": pysaliency_metrics.SIM(m, hm),
                "nss": pysaliency_metrics.NSS(m, xs, ys).mean(),
                "auc_judd": general_roc(m[ys, xs], m.ravel(), judd=1)[0],
                "shuffled_auc": general_roc(m[ys, xs], m[oy, ox])[0],
            }
        for name, value in theirs.items():
            tol = 1e-4 if "auc" in name else 1e-5
            assert float(ours[name][i]) == pytest.approx(value, abs=tol), (name, i)


def test_float_coordinates_are_floored() -> None:
    maps, _, fixations, _ = _case(20, 20, 4, b=3)
    shifted = [f.float() + 0.75 for f in fixations]
    torch.testing.assert_close(nss(maps, shifted), nss(maps, fixations))
    torch.testing.assert_close(auc_judd(maps, shifted), auc_judd(maps, fixations))


def test_shuffled_auc_by_hand() -> None:
    maps = torch.tensor([[[0.1, 0.4], [0.3, 0.2]]])
    # Positives 0.4 (x=1, y=0) and 0.3 (x=0, y=1); negatives 0.1 (x=0, y=0) and 0.4 (x=1, y=0).
    # 0.4 beats 0.1 and ties 0.4: (1 + ½)/2 = 0.75; 0.3 beats 0.1 only: 1/2. Mean 0.625.
    fixations = [torch.tensor([[1, 0], [0, 1]])]
    other = [torch.tensor([[0, 0], [1, 0]])]
    assert shuffled_auc(maps, fixations, other).item() == pytest.approx(0.625)


def test_information_gain_by_hand() -> None:
    maps = torch.tensor([[[0.0, 1.0], [1.0, 2.0]]])
    baseline = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    # Densities (m − min)/Σ: map [[0, ¼], [¼, ½]], baseline [[0, ½], [½, 0]].
    # At (x=1, y=0): log2 ¼ − log2 ½ = −1. At (x=1, y=1): log2 ½ − log2(2^-52) = −1 + 52 = 51.
    # Mean over the two fixations: 25 bits.
    fixations = [torch.tensor([[1, 0], [1, 1]])]
    assert information_gain(maps, fixations, baseline).item() == pytest.approx(25.0, abs=1e-5)
    batched = information_gain(maps, fixations, baseline[None])
    assert batched.item() == pytest.approx(25.0, abs=1e-5)


def test_centre_bias() -> None:
    bias = centre_bias(5, 7)
    assert bias.shape == (5, 7)
    assert bias[2, 3].item() == pytest.approx(1.0)
    assert int(bias.argmax()) == 2 * 7 + 3
    torch.testing.assert_close(bias, bias.flip(0).flip(1))
    # A map that is the baseline itself gains nothing.
    fixations = [torch.tensor([[0, 0], [3, 2], [6, 4]])]
    assert information_gain(bias[None], fixations, bias).item() == pytest.approx(0.0, abs=1e-6)


def test_fixations_from_map_rule() -> None:
    human = torch.zeros(2, 4, 4)
    human[0, 1, 2] = 3.0  # the top pixel
    human[0, 3, 0] = 2.0  # tied second
    human[0, 0, 3] = 2.0
    human[1] = 5.0  # constant: no fixations
    points = fixations_from_map(human, top_fraction=2 / 16)
    # k = 2: values >= the second largest (2.0), ties included, in raster order.
    assert points[0].tolist() == [[3, 0], [2, 1], [0, 3]]
    assert points[1].shape == (0, 2)
    with pytest.warns(MetricWarning, match="1 of 2 images have no fixations"):
        value = nss(torch.rand(2, 4, 4), points)
    assert not math.isnan(value[0].item()) and math.isnan(value[1].item())
    with pytest.raises(ValueError, match="top_fraction"):
        fixations_from_map(human, top_fraction=0.0)


def test_registry() -> None:
    assert set(PLAUSIBILITY) == {
        "cc",
        "kld",
        "sim",
        "nss",
        "auc_judd",
        "shuffled_auc",
        "information_gain",
    }
    assert not PLAUSIBILITY["kld"].higher_is_better
    assert all(m.higher_is_better for name, m in PLAUSIBILITY.items() if name != "kld")
    maps, human, fixations, other = _case(12, 12, 5, b=2)
    data = {
        "human_maps": human,
        "fixations": fixations,
        "other_fixations": other,
        "baseline_maps": centre_bias(12, 12),
    }
    for metric in PLAUSIBILITY.values():
        value = metric.fn(maps=maps, **{k: data[k] for k in metric.inputs})
        assert value.shape == (2,) and torch.isfinite(value).all(), metric.name


@pytest.mark.parametrize("fn", [cc, kld, sim])
def test_non_finite_maps_are_refused(fn) -> None:
    good = torch.rand(2, 8, 8)
    bad = good.clone()
    bad[1, 2, 3] = math.nan
    with pytest.raises(ValueError, match=r"^maps holds NaN or inf"):
        fn(bad, good)
    bad[1, 2, 3] = math.inf
    with pytest.raises(ValueError, match=r"^human_maps holds NaN or inf"):
        fn(good, bad)


def test_non_finite_fixations_are_refused() -> None:
    with pytest.raises(ValueError, match=r"fixations\[0\] holds NaN"):
        nss(torch.rand(1, 4, 4), [torch.tensor([[math.nan, 1.0]])])


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 8, 9\)"):
        cc(torch.rand(2, 8, 8), torch.rand(2, 8, 9))
    with pytest.raises(ValueError, match="B×H×W"):
        sim(torch.rand(8, 8), torch.rand(8, 8))
    with pytest.raises(ValueError, match="1 entries but there are 2 maps"):
        nss(torch.rand(2, 8, 8), [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="N×2"):
        nss(torch.rand(1, 8, 8), [torch.zeros(3)])


def test_constant_maps_give_nan_with_a_counted_warning() -> None:
    maps = torch.rand(3, 6, 6)
    maps[1] = 0.5
    human = torch.rand(3, 6, 6)
    human[2] = 0.0
    with pytest.warns(MetricWarning, match="cc: 2 of 3 images have a constant map"):
        value = cc(maps, human)
    assert torch.isnan(value).tolist() == [False, True, True]
    fixations = [torch.tensor([[1, 1]])] * 3
    with pytest.warns(MetricWarning, match="nss: 1 of 3 images have a constant map"):
        value = nss(maps, fixations)
    assert torch.isnan(value).tolist() == [False, True, False]


def test_empty_fixations_give_nan_with_a_warning() -> None:
    maps = torch.rand(2, 6, 6)
    fixations = [torch.tensor([[1, 2]]), torch.zeros(0, 2)]
    for fn in (nss, auc_judd):
        with pytest.warns(MetricWarning, match="1 of 2 images have no fixations"):
            value = fn(maps, fixations)
        assert torch.isnan(value).tolist() == [False, True]
    with pytest.warns(MetricWarning, match="1 of 2 images have no other fixations"):
        value = shuffled_auc(maps, [torch.tensor([[1, 2]])] * 2, fixations)
    assert torch.isnan(value).tolist() == [False, True]


def test_fixations_outside_are_dropped_with_a_warning() -> None:
    maps = torch.rand(1, 6, 8)
    inside = torch.tensor([[0, 0], [7, 5], [3, 2]])
    outside = torch.tensor([[8, 0], [-1, 2], [0, 6]])
    with pytest.warns(MetricWarning, match="3 fixations outside the 6×8 maps were dropped"):
        value = auc_judd(maps, [torch.cat([inside, outside])])
    torch.testing.assert_close(value, auc_judd(maps, [inside]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_values_on_the_gpu() -> None:
    maps, human, fixations, other = _case(32, 32, 6)
    data = {
        "human_maps": human,
        "fixations": fixations,
        "other_fixations": other,
        "baseline_maps": centre_bias(32, 32),
    }
    moved = {k: [f.cuda() for f in v] if isinstance(v, list) else v.cuda() for k, v in data.items()}
    for metric in PLAUSIBILITY.values():
        cpu = metric.fn(maps=maps, **{k: data[k] for k in metric.inputs})
        gpu = metric.fn(maps=maps.cuda(), **{k: moved[k] for k in metric.inputs})
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
