"""The training losses against their definitions, and their agreement with the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hagxai.losses import (
    hag_loss,
    hag_losses,
    hag_losses_upsampled,
    kl_loss,
    nss_loss,
    pcc,
    upsampling_matrix,
)
from hagxai.metrics.plausibility import kld, nss


def test_hag_loss_and_pcc() -> None:
    human = torch.rand(3, 10, 12)
    assert float(hag_loss(human, human)) == pytest.approx(0.0, abs=1e-6)
    maps = torch.rand(3, 10, 12)
    s, h = maps[0].flatten().numpy(), human[0].flatten().numpy()
    expected = 1 - np.corrcoef(s, h)[0, 1] + np.mean((s - h) ** 2)
    assert float(hag_loss(maps[:1], human[:1])) == pytest.approx(expected, rel=1e-5)
    constant = torch.full((1, 10, 12), 0.5, requires_grad=True)
    assert float(pcc(constant, human[:1]).detach()) == 0.0
    hag_loss(constant, human[:1]).backward()
    assert torch.isfinite(constant.grad).all()
    with pytest.raises(ValueError, match="must both be B×H×W"):
        hag_loss(maps, human[:, :5])


def test_kl_loss_matches_benchmark_definition() -> None:
    maps, human = torch.rand(2, 6, 7, dtype=torch.float64), torch.rand(2, 6, 7, dtype=torch.float64)
    eps = 2.2204e-16  # the saliency benchmark's (pysaliency's) epsilon, as the KLD metric
    expected = []
    for s, h in zip(maps.numpy(), human.numpy()):
        s, h = s / s.sum(), h / h.sum()
        expected.append(np.sum(h * np.log(eps + h / (s + eps))))
    assert float(kl_loss(maps, human)) == pytest.approx(np.mean(expected), rel=1e-10)
    assert float(kl_loss(human, human)) == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(kl_loss(torch.zeros(1, 6, 7), human[:1].float()))


def test_nss_loss() -> None:
    maps = torch.rand(2, 6, 7, dtype=torch.float64)
    fixations = [torch.tensor([[1.0, 2.0], [6.0, 5.0]]), torch.tensor([[3.2, 0.4]])]
    expected = []
    for m, points in zip(maps.numpy(), fixations):
        z = (m - m.mean()) / m.std()
        xy = points.floor().long().numpy()  # floored, as the NSS metric
        expected.append(z[xy[:, 1], xy[:, 0]].mean())
    assert float(nss_loss(maps, fixations)) == pytest.approx(-np.mean(expected), rel=1e-10)
    with pytest.raises(ValueError, match="image 1: fixations must be N×2"):
        nss_loss(maps, [fixations[0], torch.zeros(0, 2)])
    with pytest.raises(ValueError, match="outside"):
        nss_loss(maps, [fixations[0], torch.tensor([[7.0, 0.0]])])


def test_losses_follow_the_metrics_conventions() -> None:
    maps = torch.rand(3, 9, 11, dtype=torch.float64)
    human = torch.rand(3, 9, 11, dtype=torch.float64)
    # fractional coordinates: floored by both (rounding would pick other pixels for 2.6 and 4.7)
    fixations = [
        torch.tensor([[2.6, 4.7], [8.9, 0.2]]),
        torch.tensor([[0.5, 8.5]]),
        torch.rand(5, 2),
    ]
    assert float(nss_loss(maps, fixations)) == pytest.approx(
        -float(nss(maps, fixations).mean()), rel=1e-12
    )
    assert float(kl_loss(maps, human)) == pytest.approx(float(kld(maps, human).mean()), rel=1e-12)


@pytest.mark.parametrize(
    ("grid", "size"), [((6, 8), (60, 80)), ((7, 9), (13, 50)), ((5, 5), (5, 5)), ((16, 20), (9, 7))]
)
def test_the_grid_loss_is_the_loss_of_the_resized_maps(grid, size) -> None:
    generator = torch.Generator().manual_seed(3)
    f64 = torch.float64
    maps = torch.rand(4, *grid, generator=generator, dtype=f64)
    maps[2] = 0.0  # an image without targets: constant, PCC 0 by pcc()'s rule
    maps.requires_grad_(True)
    human = torch.rand(4, *size, generator=generator, dtype=f64) ** 4
    resized = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    expected = hag_losses(resized, human)
    found = hag_losses_upsampled(maps, human)
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
    (want,) = torch.autograd.grad(expected.sum(), maps)
    (got,) = torch.autograd.grad(found.sum(), maps)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # float32 in, float32 out, within float32 rounding of the float64 value
    single = hag_losses_upsampled(maps.detach().float(), human.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), expected.detach(), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="B×h×w and B×H×W"):
        hag_losses_upsampled(maps[0], human)


def test_the_upsampling_matrix_is_pytorchs_bilinear_resize() -> None:
    x = torch.rand(2, 1, 7, 11, dtype=torch.float64)
    rows = upsampling_matrix(7, 30, dtype=torch.float64, device="cpu")
    cols = upsampling_matrix(11, 4, dtype=torch.float64, device="cpu")
    expected = F.interpolate(x, size=(30, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(rows @ x @ cols.T, expected, rtol=1e-13, atol=1e-13)
