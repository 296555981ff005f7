"""Training losses of the combiner: the reference loss and the extension losses.

Each loss takes maps ``B×H×W`` and human data for the same images and returns a 0-D batch mean,
differentiable in the maps. Their conventions are the metrics' (:mod:`hagxai.metrics.plausibility`):
KL over the same densities with the same ε, NSS with the population standard deviation at the
fixated pixels, float coordinates floored. Two differences are on purpose, because a loss must
give a gradient for every input: an exactly constant map gives PCC and NSS 0 (the metrics say NaN,
which would poison a batch), and bad fixations raise instead of being dropped with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hagxai.metrics.plausibility import kld


def _check_pair(maps: Tensor, human_maps: Tensor) -> None:
    if maps.dim() != 3 or maps.shape != human_maps.shape:
        raise ValueError(
            f"maps {tuple(maps.shape)} and human maps {tuple(human_maps.shape)} must both be B×H×W"
        )


def _float(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _safe_sqrt(x: Tensor) -> tuple[Tensor, Tensor]:
    """``sqrt(x)`` where ``x > 0`` (1 elsewhere, so a zero never puts inf into the gradient)."""
    positive = x > 0
    return torch.sqrt(torch.where(positive, x, torch.ones_like(x))), positive


def pcc(maps: Tensor, human_maps: Tensor) -> Tensor:
    """Pearson correlation of each map with its human map.

    Args:
        maps, human_maps: ``B×H×W``.

    Returns:
        ``B``; 0 where either map is exactly constant (the correlation is undefined there).
    """
    _check_pair(maps, human_maps)
    s = _float(maps).flatten(1)
    h = _float(human_maps).flatten(1)
    s = s - s.mean(1, keepdim=True)
    h = h - h.mean(1, keepdim=True)
    norm, defined = _safe_sqrt((s * s).sum(1) * (h * h).sum(1))
    return torch.where(defined, (s * h).sum(1) / norm, torch.zeros_like(norm))


def hag_losses(maps: Tensor, human_maps: Tensor) -> Tensor:
    """The reference loss ``(1 − PCC(S, H)) + MSE(S, H)`` of each image (:func:`hag_loss` is
    their mean).

    Args:
        maps, human_maps: ``B×H×W``, as for :func:`hag_loss`.

    Returns:
        ``B`` losses; each depends only on its own image's maps.
    """
    _check_pair(maps, human_maps)
    mse = (_float(maps) - _float(human_maps)).pow(2).flatten(1).mean(1)
    return 1 - pcc(maps, human_maps) + mse


def hag_loss(maps: Tensor, human_maps: Tensor) -> Tensor:
    """The reference loss ``(1 − PCC(S, H)) + MSE(S, H)`` per image, averaged over the batch.

    Args:
        maps: ``B×H×W`` combiner maps ``S`` in ``[0, 1]``.
        human_maps: ``B×H×W`` human attention maps ``H`` (the reference scales them to ``[0, 1]``).

    Returns:
        0-D loss (float32, or float64 for float64 inputs).
    """
    return hag_losses(maps, human_maps).mean()


def kl_loss(maps: Tensor, human_maps: Tensor) -> Tensor:
    """Extension loss: the saliency benchmark's KL divergence ``KL(H ‖ S)``, batch mean.

    Exactly the metric :func:`hagxai.metrics.plausibility.kld`: both maps read as densities
    (shifted by their minimum if negative, divided by their sum; an all-zero map is uniform), then
    ``Σ H·log(ε + H / (S + ε))`` with the benchmark's ``ε = 2.2204e-16``.

    Args:
        maps, human_maps: ``B×H×W``.

    Returns:
        0-D loss.
    """
    _check_pair(maps, human_maps)
    return kld(_float(maps), _float(human_maps)).mean()


def nss_loss(maps: Tensor, fixations: Sequence[Tensor]) -> Tensor:
    """Extension loss: ``−NSS``, batch mean. NSS is the mean of the standardised map
    ``(S − mean S) / std S`` (population std) at the fixated pixels.

    Args:
        maps: ``B×H×W``.
        fixations: ``B`` tensors ``N_i×2`` of ``(x, y)`` pixel coordinates in the map's frame
            (floored to the pixel that holds them, as the NSS metric does).

    Returns:
        0-D loss; an exactly constant map contributes NSS 0.

    Raises:
        ValueError: a count of fixation tensors other than ``B``, an image without fixations or
            a fixation outside the map.
    """
    if maps.dim() != 3 or len(fixations) != maps.shape[0]:
        raise ValueError(f"maps {tuple(maps.shape)} need B×H×W and one fixation tensor per map")
    height, width = maps.shape[-2:]
    flat = _float(maps).flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    std, varies = _safe_sqrt(centred.pow(2).mean(1, keepdim=True))
    standard = torch.where(varies, centred / std, torch.zeros_like(centred))
    scores = []
    # Per image only because the fixation lists are ragged; the work inside is vectorised.
    for i, points in enumerate(fixations):
        if points.dim() != 2 or points.shape[1] != 2 or points.shape[0] == 0:
            raise ValueError(f"image {i}: fixations must be N×2 (x, y) with N ≥ 1")
        xy = (points.floor() if points.is_floating_point() else points).long().to(maps.device)
        x, y = xy[:, 0], xy[:, 1]
        if bool(((x < 0) | (x >= width) | (y < 0) | (y >= height)).any()):
            raise ValueError(f"image {i}: a fixation lies outside the {height}×{width} map")
        scores.append(standard[i, y * width + x].mean())
    return -torch.stack(scores).mean()
