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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


def upsampling_matrix(n_in: int, n_out: int, *, dtype: torch.dtype, device) -> Tensor:
    """``n_out×n_in``: one axis of ``F.interpolate(mode="bilinear", align_corners=False)``.

    Made by interpolating the identity's rows with PyTorch itself (1-D ``linear``, the same
    source-index rule and weights as each axis of the 2-D ``bilinear``), so it is PyTorch's
    resize, not a copy of its formula.
    """
    eye = torch.eye(n_in, dtype=dtype, device=device)[:, None, :]
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0, :].T


@dataclass(frozen=True)
class HumanMoments:
    """What the reference loss needs of human maps ``B×H×W`` when the maps it is compared with
    are bilinear resizes of ``h×w`` grids (:func:`human_moments`); a batch's rows are cut and
    joined with :meth:`take` and :meth:`cat`, so a trainer reduces each human map once."""

    projected: Tensor  # B×h×w, the human maps' dtype: U_hᵀ H U_w
    total: Tensor  # B float64: ΣH
    variance: Tensor  # B float64: Σ(H − mean H)²
    varies: Tensor  # B bool: H is not exactly constant
    size: tuple[int, int]  # (H, W)

    def take(self, row: int) -> HumanMoments:
        """Row ``row`` alone (keeping a batch axis of one)."""
        index = slice(row, row + 1)
        return HumanMoments(
            self.projected[index], self.total[index], self.variance[index], self.varies[index],
            self.size,
        )  # fmt: skip

    @staticmethod
    def cat(parts: Sequence[HumanMoments]) -> HumanMoments:
        """Rows of several moments (of one size) in order."""
        sizes = {p.size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"human maps of different sizes {sorted(sizes)} in one batch")
        return HumanMoments(
            torch.cat([p.projected for p in parts]),
            torch.cat([p.total for p in parts]),
            torch.cat([p.variance for p in parts]),
            torch.cat([p.varies for p in parts]),
            parts[0].size,
        )


@torch.no_grad()
def human_moments(human_maps: Tensor, grid: tuple[int, int]) -> HumanMoments:
    """Reduce human maps ``B×H×W`` for :func:`hag_losses_on_grid` with maps on ``grid``.

    The projection ``U_hᵀ H U_w`` is computed in the maps' precision (float32: a sum of ~100
    products per entry), the sums in float64.
    """
    if human_maps.dim() != 3:
        raise ValueError(f"human maps {tuple(human_maps.shape)} must be B×H×W")
    human = _float(human_maps)
    (h, w), (H, W) = grid, human.shape[-2:]
    rows = upsampling_matrix(h, H, dtype=human.dtype, device=human.device)
    cols = upsampling_matrix(w, W, dtype=human.dtype, device=human.device)
    projected = rows.T @ (human.reshape(-1, W) @ cols).view(len(human), H, w)
    total = human.sum((1, 2), dtype=torch.float64)
    centred = human - (total / (H * W)).to(human.dtype)[:, None, None]
    variance = (centred * centred).sum((1, 2), dtype=torch.float64)
    low, high = torch.aminmax(human.flatten(1), dim=1)
    return HumanMoments(projected, total, variance, high > low, (int(H), int(W)))


def hag_losses_on_grid(grid_maps: Tensor, human: HumanMoments) -> Tensor:
    """:func:`hag_losses` of ``grid_maps`` bilinearly resized to the human maps' size, from the
    human maps' :func:`human_moments`, without making the resized maps.

    Why: on a coarse grid (60×80) and human maps of 600×800, the resize, the loss and their
    backward touch 100× more numbers than the combiner's output, every step, for human maps
    that never change. A bilinear resize is linear, ``S↑ = U_h S U_wᵀ``, and both halves of
    the loss need only four sums of ``S↑``: ``ΣS↑ = u_hᵀ S u_w`` (``u = Uᵀ1``), ``Σ S↑·H =
    ⟨S, U_hᵀ H U_w⟩``, ``Σ S↑² = ⟨S, (U_hᵀU_h) S (U_wᵀU_w)⟩``, and the human maps' own sums.
    The map side is a few ``h×w`` products in float64, so the differences of large sums lose
    nothing (in float32 the full-size path rounds as much). Equal to ``hag_losses(
    F.interpolate(grid_maps[:, None], (H, W), mode="bilinear")[:, 0], human_maps)`` up to
    rounding, with :func:`pcc`'s rule that an exactly constant map has PCC 0.

    Args:
        grid_maps: ``B×h×w`` maps (:meth:`hagxai.combiner.HAGCombiner.grid_maps`).
        human: the ``B`` human maps' moments on the same grid.

    Returns:
        ``B`` losses in ``grid_maps``' dtype.
    """
    if grid_maps.dim() != 3 or tuple(human.projected.shape) != tuple(grid_maps.shape):
        raise ValueError(
            f"grid maps {tuple(grid_maps.shape)} and human moments "
            f"{tuple(human.projected.shape)} must both be B×h×w"
        )
    f64 = torch.float64
    (h, w), (H, W) = grid_maps.shape[-2:], human.size
    rows = upsampling_matrix(h, H, dtype=f64, device=grid_maps.device)
    cols = upsampling_matrix(w, W, dtype=f64, device=grid_maps.device)
    count = H * W
    s = grid_maps.to(f64)
    map_sum = torch.einsum("bij,i,j->b", s, rows.sum(0), cols.sum(0))
    map_sq = ((rows.T @ rows) @ s @ (cols.T @ cols) * s).sum((1, 2))
    cross = (s * human.projected.to(f64)).sum((1, 2))
    human_sq = human.variance + human.total * human.total / count  # ΣH²
    map_var = map_sq - map_sum * map_sum / count
    covariance = cross - map_sum * human.total / count
    product = map_var * human.variance
    # exactly constant maps (their resize is constant too) by their values, not by a variance
    # that rounding leaves at ±1e-17: PCC 0 there, as in pcc()
    flat = grid_maps.detach().flatten(1)
    defined = (flat.amax(1) > flat.amin(1)) & human.varies & (product > 0)
    correlation = torch.where(
        defined, covariance / torch.sqrt(torch.where(defined, product, 1.0)), 0.0
    )
    mse = (map_sq - 2 * cross + human_sq) / count
    return (1 - correlation + mse).to(grid_maps.dtype)


def hag_losses_upsampled(grid_maps: Tensor, human_maps: Tensor) -> Tensor:
    """:func:`hag_losses_on_grid` with the human maps' moments computed here.

    Args:
        grid_maps: ``B×h×w``.
        human_maps: ``B×H×W``.

    Returns:
        ``B`` losses.
    """
    if grid_maps.dim() != 3 or human_maps.dim() != 3 or len(grid_maps) != len(human_maps):
        raise ValueError(
            f"grid maps {tuple(grid_maps.shape)} and human maps {tuple(human_maps.shape)} must be "
            "B×h×w and B×H×W"
        )
    return hag_losses_on_grid(grid_maps, human_moments(human_maps, tuple(grid_maps.shape[-2:])))


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
