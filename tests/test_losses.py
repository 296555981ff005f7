"""The training losses against their definitions, and their agreement with the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hagxai.losses import hag_loss, kl_loss, nss_loss, pcc
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
