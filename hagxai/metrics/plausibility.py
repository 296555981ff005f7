"""Plausibility: how well saliency maps agree with human attention (saliency-benchmark metrics).

Every function takes maps ``B×H×W`` and human data for the same images, and returns one value per
image (``B``), computed batched on the maps' device. The definitions are those of the MIT /
Tübingen saliency benchmark as implemented by ``pysaliency`` (tests compare on random inputs):

- ``cc``: Pearson correlation of the map with the human map.
- ``nss``: mean of the standardised map (population std) at the fixations.
- ``auc_judd``: ROC AUC, fixated values against all pixels, thresholds at the fixated values.
- ``shuffled_auc``: ROC AUC, fixated values against the values at other images' fixations, ties
  counted one half.
- ``kld``: KL divergence of the map's density from the human map's density with the benchmark's
  regularisation ``Σ q·log(ε + q / (p + ε))``, ``ε = 2.2204e-16``, natural log.
- ``sim``: histogram intersection ``Σ min(p, q)`` of the two densities.
- ``information_gain``: bits per fixation of the map's density over a baseline's (the MIT
  benchmark's ``InfoGain``), e.g. against :func:`centre_bias`.

Fixations are a list of ``B`` tensors ``N_i×2`` holding ``(x, y)`` pixel coordinates in the map's
frame: pixel ``(x, y)`` covers ``[x, x+1) × [y, y+1)``, so float coordinates are floored
(``pysaliency`` truncates, the same for coordinates inside the map). A fixation repeated counts
as often as it is listed. Datasets with only continuous maps get fixations from
:func:`fixations_from_map`.

Bad input, by rule:

- NaN or inf in a map or in fixation coordinates: ``ValueError`` naming the argument.
- Maps that are not ``B×H×W``, or two map arguments of different shapes: ``ValueError`` giving
  both shapes. A fixation list whose length is not ``B``: ``ValueError``.
- Fixations outside the map: dropped, with one :class:`~hagxai.metrics.MetricWarning` saying how
  many.
- An image left without fixations: NaN for that image, with a warning counting such images.
- CC with a constant map or human map, NSS with a constant map: NaN for that image, with a
  warning counting them (``pysaliency`` returns 0 for a constant saliency map; we do not, because
  0 would read as a measured "no correlation").
- KLD and SIM read a map as a density the way ``pysaliency`` does: shifted by its minimum only if
  that is negative, then divided by its sum; a map summing to zero is the uniform density.
  Information gain reads a map as ``(m − min m) / Σ(m − min m)`` (the MIT code), a constant map
  as the uniform density.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from hagxai.metrics.base import Metric, MetricWarning

# The MIT benchmark's KLD regularisation, written as pysaliency writes it (MATLAB's eps, rounded).
KLD_EPS = 2.2204e-16
# MATLAB's eps, as the MIT InfoGain code adds it inside both logarithms.
_INFO_GAIN_EPS = 2.0**-52

Fixations = Sequence[Tensor]


def _check_maps(maps: Tensor, name: str) -> Tensor:
    """Return ``maps`` as a floating ``B×H×W`` tensor (at least float32) after checking it."""
    if not isinstance(maps, Tensor) or maps.dim() != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"{name} must be a B×H×W tensor, got {shape}")
    if not maps.is_floating_point() or maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.float()
    if not torch.isfinite(maps).all():
        raise ValueError(f"{name} holds NaN or inf")
    return maps


def _check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}"
        )


def _warn_nan(value: Tensor, bad: Tensor, metric: str, reason: str) -> Tensor:
    """Set ``value`` to NaN where ``bad`` (``B`` bool) holds, warning once with the count."""
    count = int(bad.sum())
    if count:
        warnings.warn(
            f"{metric}: {count} of {bad.numel()} images {reason}; their value is NaN",
            MetricWarning,
            stacklevel=3,
        )
        value = value.masked_fill(bad, math.nan)
    return value


def _is_constant(maps: Tensor) -> Tensor:
    """``B`` bool: the map is exactly constant (a tolerance would misjudge tiny-valued maps)."""
    flat = maps.flatten(1)
    return flat.amax(1) == flat.amin(1)


def _fixation_index(fixations: Fixations, shape: torch.Size, device: torch.device, name: str):
    """Pad a ragged fixation list into flat pixel indices.

    Returns:
        ``(index, mask)``: ``B×N`` long indices into the flattened ``H·W`` map (0 where masked)
        and ``B×N`` bool, true for the fixations that exist and fall inside the map.
    """
    b, h, w = shape
    if len(fixations) != b:
        raise ValueError(f"{name} has {len(fixations)} entries but there are {b} maps")
    rows = []
    # Per image only because the lists are ragged; the work inside is vectorised.
    for i, points in enumerate(fixations):
        points = torch.as_tensor(points, device=device)
        if points.numel() == 0:
            points = points.reshape(0, 2)
        if points.dim() != 2 or points.shape[1] != 2:
            raise ValueError(f"{name}[{i}] must be N×2 (x, y), got shape {tuple(points.shape)}")
        if points.is_floating_point():
            if not torch.isfinite(points).all():
                raise ValueError(f"{name}[{i}] holds NaN or inf coordinates")
            points = points.floor()
        rows.append(points.long())
    padded = pad_sequence(rows, batch_first=True) if rows else torch.zeros(0, 0, 2)
    padded = padded.to(device=device, dtype=torch.long)
    counts = torch.tensor([len(r) for r in rows], device=device, dtype=torch.long)
    mask = torch.arange(padded.shape[1], device=device) < counts[:, None]
    x, y = padded[..., 0], padded[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    outside = int((mask & ~inside).sum())
    if outside:
        warnings.warn(
            f"{name}: {outside} fixations outside the {h}×{w} maps were dropped",
            MetricWarning,
            stacklevel=3,
        )
    mask = mask & inside
    index = torch.where(mask, y * w + x, 0)
    return index, mask


def _masked_mean(values: Tensor, mask: Tensor, metric: str) -> Tensor:
    """Mean over the last axis where ``mask``; NaN (with a warning) for rows without any."""
    count = mask.sum(1)
    mean = torch.where(mask, values, 0).sum(1) / count.clamp(min=1)
    return _warn_nan(mean, count == 0, metric, "have no fixations inside the map")


def density(maps: Tensor) -> Tensor:
    """pysaliency's ``convert_saliency_map_to_density(minimum_value=0)``, batched."""
    flat = maps.flatten(1)
    low = flat.amin(1, keepdim=True)
    flat = torch.where(low < 0, flat - low, flat)
    total = flat.sum(1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total != 0, flat / torch.where(total != 0, total, 1), uniform)


def _shifted_density(maps: Tensor) -> Tensor:
    """The MIT InfoGain reading of a map: ``(m − min) / Σ(m − min)``, uniform if constant."""
    flat = maps.flatten(1)
    flat = flat - flat.amin(1, keepdim=True)
    total = flat.sum(1, keepdim=True)
    uniform = torch.full_like(flat, 1.0 / flat.shape[1])
    return torch.where(total > 0, flat / torch.where(total > 0, total, 1), uniform)


def cc(maps: Tensor, human_maps: Tensor) -> Tensor:
    """Pearson correlation coefficient between each map and its human map.

    Args:
        maps: ``B×H×W`` saliency maps.
        human_maps: ``B×H×W`` human attention maps.

    Returns:
        ``B`` values in [-1, 1]; NaN (with a warning) where either map is constant.
    """
    maps = _check_maps(maps, "maps")
    human_maps = _check_maps(human_maps, "human_maps")
    _check_same_shape(maps, human_maps, "maps", "human_maps")
    a = maps.flatten(1)
    b = human_maps.flatten(1)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    value = (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1))
    constant = _is_constant(maps) | _is_constant(human_maps)
    return _warn_nan(value, constant, "cc", "have a constant map or human map")


def nss(maps: Tensor, fixations: Fixations) -> Tensor:
    """Normalised scanpath saliency: the standardised map averaged over the fixations.

    Args:
        maps: ``B×H×W`` saliency maps.
        fixations: ``B`` tensors ``N_i×2`` of ``(x, y)`` pixel coordinates.

    Returns:
        ``B`` values; NaN (with a warning) for a constant map or an image without fixations.
    """
    maps = _check_maps(maps, "maps")
    index, mask = _fixation_index(fixations, maps.shape, maps.device, "fixations")
    flat = maps.flatten(1)
    mean = flat.mean(1, keepdim=True)
    std = flat.std(1, keepdim=True, correction=0)
    constant = _is_constant(maps)
    standard = (flat - mean) / torch.where(constant[:, None], 1, std)
    value = _masked_mean(standard.gather(1, index), mask, "nss")
    return _warn_nan(value, constant, "nss", "have a constant map")


def auc_judd(maps: Tensor, fixations: Fixations) -> Tensor:
    """AUC-Judd: fixated map values against all pixels, one threshold per fixated value.

    The ROC curve runs through ``(0, 0)``, then for each fixated value ``t`` (descending) the
    point ``(#pixels ≥ t / H·W, #fixated values ≥ t / N)``, then ``(1, 1)``; the AUC is its
    trapezoid integral (``pysaliency.roc.general_roc(..., judd=1)``).

    Args:
        maps: ``B×H×W`` saliency maps.
        fixations: ``B`` tensors ``N_i×2`` of ``(x, y)`` pixel coordinates.

    Returns:
        ``B`` values in [0, 1]; NaN (with a warning) for an image without fixations.
    """
    maps = _check_maps(maps, "maps")
    index, mask = _fixation_index(fixations, maps.shape, maps.device, "fixations")
    flat = maps.flatten(1)
    count = mask.sum(1, keepdim=True)
    # Absent fixations become -inf so that they sort last and never count as >= a real value.
    positives = torch.where(mask, flat.gather(1, index), -math.inf)
    descending = positives.sort(1, descending=True).values
    ascending = descending.flip(1)
    pixels = flat.sort(1).values
    hits = positives.shape[1] - torch.searchsorted(ascending, descending, side="left")
    false = flat.shape[1] - torch.searchsorted(pixels, descending, side="left")
    real = torch.arange(positives.shape[1], device=maps.device) < count
    tpr = torch.where(real, hits / count.clamp(min=1), 1.0)
    fpr = torch.where(real, false / flat.shape[1], 1.0)
    zero = torch.zeros_like(tpr[:, :1])
    tpr = torch.cat([zero, tpr, zero + 1], 1)
    fpr = torch.cat([zero, fpr, zero + 1], 1)
    value = ((fpr[:, 1:] - fpr[:, :-1]) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(1)
    return _warn_nan(value, count[:, 0] == 0, "auc_judd", "have no fixations inside the map")


def shuffled_auc(maps: Tensor, fixations: Fixations, other_fixations: Fixations) -> Tensor:
    """Shuffled AUC: fixated map values against the map's values at other images' fixations.

    Per fixated value ``p`` the score is ``(#negatives < p + ½·#negatives = p) / #negatives``;
    the image's value is the mean over its fixations (equal to the trapezoid ROC AUC with all
    thresholds, pysaliency's ``general_roc(..., judd=0)``). Negatives discount the centre bias
    that fixations share across images.

    Args:
        maps: ``B×H×W`` saliency maps.
        fixations: ``B`` tensors ``N_i×2`` of ``(x, y)`` pixel coordinates (positives).
        other_fixations: ``B`` tensors ``M_i×2``: for image ``i``, fixations recorded on other
            images, in image ``i``'s map frame (negatives).

    Returns:
        ``B`` values in [0, 1]; NaN (with a warning) for an image without positives or negatives.
    """
    maps = _check_maps(maps, "maps")
    index, mask = _fixation_index(fixations, maps.shape, maps.device, "fixations")
    other, other_mask = _fixation_index(other_fixations, maps.shape, maps.device, "other_fixations")
    flat = maps.flatten(1)
    # Absent negatives become +inf so that they sort last and are never < or <= a real value.
    negatives = torch.where(other_mask, flat.gather(1, other), math.inf).sort(1).values
    positives = flat.gather(1, index).contiguous()
    below = torch.searchsorted(negatives, positives, side="left")
    up_to = torch.searchsorted(negatives, positives, side="right")
    negative_count = other_mask.sum(1, keepdim=True)
    per_fixation = (below + up_to) / 2 / negative_count.clamp(min=1)
    value = _masked_mean(per_fixation, mask, "shuffled_auc")
    return _warn_nan(value, negative_count[:, 0] == 0, "shuffled_auc", "have no other fixations")


def kld(maps: Tensor, human_maps: Tensor) -> Tensor:
    """KL divergence of the map from the human map (MIT benchmark regularisation, nats).

    ``Σ q·log(ε + q / (p + ε))`` with ``p``, ``q`` the densities of ``maps`` and ``human_maps``
    (module docstring) and ``ε = 2.2204e-16``, as ``pysaliency.metrics.MIT_KLDiv``.

    Args:
        maps: ``B×H×W`` saliency maps.
        human_maps: ``B×H×W`` human attention maps.

    Returns:
        ``B`` values ≥ 0 (up to the regularisation); lower is better.
    """
    maps = _check_maps(maps, "maps")
    human_maps = _check_maps(human_maps, "human_maps")
    _check_same_shape(maps, human_maps, "maps", "human_maps")
    p = density(maps)
    q = density(human_maps)
    return (q * torch.log(KLD_EPS + q / (p + KLD_EPS))).sum(1)


def sim(maps: Tensor, human_maps: Tensor) -> Tensor:
    """Similarity (histogram intersection) ``Σ min(p, q)`` of the two densities.

    Args:
        maps: ``B×H×W`` saliency maps.
        human_maps: ``B×H×W`` human attention maps.

    Returns:
        ``B`` values in [0, 1].
    """
    maps = _check_maps(maps, "maps")
    human_maps = _check_maps(human_maps, "human_maps")
    _check_same_shape(maps, human_maps, "maps", "human_maps")
    return torch.minimum(density(maps), density(human_maps)).sum(1)


def information_gain(maps: Tensor, fixations: Fixations, baseline_maps: Tensor) -> Tensor:
    """Information gain over a baseline, in bits per fixation (the MIT benchmark's InfoGain).

    ``mean over fixations of log2(ε + p(x)) − log2(ε + b(x))`` where ``p`` and ``b`` are the
    map's and the baseline's densities ``(m − min m) / Σ(m − min m)`` and ``ε = 2^-52``.

    Args:
        maps: ``B×H×W`` saliency maps.
        fixations: ``B`` tensors ``N_i×2`` of ``(x, y)`` pixel coordinates.
        baseline_maps: ``B×H×W`` baseline maps, or one ``H×W`` map for all images (e.g.
            ``centre_bias(H, W)``).

    Returns:
        ``B`` values; NaN (with a warning) for an image without fixations.
    """
    maps = _check_maps(maps, "maps")
    if isinstance(baseline_maps, Tensor) and baseline_maps.dim() == 2:
        baseline_maps = baseline_maps.expand(maps.shape[0], -1, -1)
    baseline_maps = _check_maps(baseline_maps, "baseline_maps").to(maps.device)
    _check_same_shape(maps, baseline_maps, "maps", "baseline_maps")
    index, mask = _fixation_index(fixations, maps.shape, maps.device, "fixations")
    p = _shifted_density(maps).gather(1, index)
    b = _shifted_density(baseline_maps).gather(1, index)
    gain = torch.log2(_INFO_GAIN_EPS + p) - torch.log2(_INFO_GAIN_EPS + b)
    return _masked_mean(gain, mask, "information_gain")


def centre_bias(
    h: int,
    w: int,
    *,
    sigma: float = 0.25,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A centre-bias map: a Gaussian at the image centre, peak 1.

    Args:
        h: map height in pixels.
        w: map width in pixels.
        sigma: standard deviation as a fraction of each side (``sigma·h`` along y, ``sigma·w``
            along x).
        device: where to build it.
        dtype: its floating dtype.

    Returns:
        ``H×W`` map.
    """
    if h < 1 or w < 1 or sigma <= 0:
        raise ValueError(f"centre_bias needs h, w >= 1 and sigma > 0, got {h}, {w}, {sigma}")
    y = (torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2) / (sigma * h)
    x = (torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2) / (sigma * w)
    return torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / 2)


def fixations_from_map(human_maps: Tensor, top_fraction: float = 0.05) -> list[Tensor]:
    """Fixations for datasets that record only continuous maps: the top of each map.

    Rule: with ``k = max(1, round(top_fraction·H·W))``, the fixations of an image are all pixels
    whose value is at least the map's ``k``-th largest value (ties included, so there may be
    more than ``k``) and strictly above the map's minimum (so a constant map gives none, and the
    metrics then return NaN with a warning).

    Args:
        human_maps: ``B×H×W`` human attention maps.
        top_fraction: the fraction of pixels to take, in (0, 1].

    Returns:
        ``B`` long tensors ``N_i×2`` of ``(x, y)`` pixel coordinates, in raster order.
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    human_maps = _check_maps(human_maps, "human_maps")
    _, _, w = human_maps.shape
    flat = human_maps.flatten(1)
    k = max(1, round(top_fraction * flat.shape[1]))
    threshold = flat.topk(k, dim=1).values[:, -1:]
    keep = (flat >= threshold) & (flat > flat.amin(1, keepdim=True))
    pixel = keep.nonzero()[:, 1]
    points = torch.stack([pixel % w, pixel // w], 1)
    return list(points.split(keep.sum(1).tolist()))


PLAUSIBILITY: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("cc", cc, higher_is_better=True, inputs=("human_maps",)),
        Metric("nss", nss, higher_is_better=True, inputs=("fixations",)),
        Metric("auc_judd", auc_judd, higher_is_better=True, inputs=("fixations",)),
        Metric(
            "shuffled_auc",
            shuffled_auc,
            higher_is_better=True,
            inputs=("fixations", "other_fixations"),
        ),
        Metric("kld", kld, higher_is_better=False, inputs=("human_maps",)),
        Metric("sim", sim, higher_is_better=True, inputs=("human_maps",)),
        Metric(
            "information_gain",
            information_gain,
            higher_is_better=True,
            inputs=("fixations", "baseline_maps"),
        ),
    )
}
"""The plausibility metrics by name, in the order tables show them: call
``m.fn(maps=..., **{k: data[k] for k in m.inputs})``."""
