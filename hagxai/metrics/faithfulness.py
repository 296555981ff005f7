"""Faithfulness: deletion and insertion curves, scored through any model by a scorer callable.

Pixels are ordered by the saliency map (descending; ties in raster order, as a stable sort leaves
them). At step ``k`` of ``K`` the first ``n_k = floor(k/K · f · H·W + ½)`` pixels in that order
are perturbed, ``f`` being the image's ``max_fraction`` (1 for a classifier; for a detector the
total area of the target boxes over the image area, see :func:`box_area_fraction`):

- deletion replaces them with a baseline (uniform noise by default); step 0 is the image itself;
- insertion shows only them on a baseline (black by default); step 0 is the baseline alone.

The scorer re-scores every perturbed image; the curve is plotted over the normalised x-axis
``k/K`` in [0, 1] and its trapezoid AUC is the metric (deletion: lower is better, insertion:
higher is better). Any ``B×H×W`` map can be scored this way — an explainer's, a human attention
map, a sanity map such as the centre bias — once it is at the image's size.

All ``B·(K+1)`` perturbed images are built on the images' device from one rank map per image
(``rank < n_k``) and go through the scorer in chunks of ``batch_size``. The steps that show the
image itself (``n_k = 0`` in deletion, ``n_k = H·W`` in insertion) or the baseline alone (the
other way round) do not depend on the map: given a ``shared`` dict, their scores are read from it
when an earlier call on the same images and scorer left them there, and left there otherwise, so
scoring many maps of one batch (the methods of an evaluation; deletion and insertion on one
canvas) re-scores those images once. A random (``noise``) or tensor baseline is never shared.

Bad input, by rule: NaN or inf in ``images`` or ``maps``, images that are not floating, a map
whose size is not the image's, a ``max_fraction`` outside (0, 1], or a scorer answer of the wrong
shape: ``ValueError``. A constant map has no order: its pixels go in raster order, with a
:class:`~hagxai.metrics.MetricWarning`. A scorer that returns NaN or inf yields NaN AUCs, with a
warning counting the images.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from hagxai.metrics.base import Metric, MetricWarning

Scorer = Callable[[Tensor, Tensor], Tensor]
"""``scorer(images N×C×H×W, image_ids N long) -> N`` scores: the score of image
``image_ids[n]``'s target(s) on perturbed image ``n`` (a classifier: the target's softmax
probability; a detector: best IoU(target box, detection) × class score over detections of the
target's classes, averaged over the image's targets)."""

Baseline = Literal["noise", "blur", "mean", "zero"]


@dataclass
class FaithfulnessResult:
    """Deletion or insertion outcome.

    Attributes:
        auc: ``B`` trapezoid areas under the curves over ``x``.
        curves: ``B×(K+1)`` scores at steps ``0..K``.
        x: ``K+1`` normalised x-axis ``k/K`` (fraction of each image's ``max_fraction``).
    """

    auc: Tensor
    curves: Tensor
    x: Tensor


def box_area_fraction(boxes: Sequence[Tensor], size: tuple[int, int]) -> Tensor:
    """The detector's ``max_fraction``: total area of each image's target boxes over its area.

    Boxes are clipped to the image; overlapping boxes count their overlap twice (areas are
    summed), and the result is capped at 1. An image without boxes gets 1 (the whole image).

    Args:
        boxes: ``B`` tensors ``M_i×4`` of ``(x1, y1, x2, y2)`` pixel corners.
        size: ``(H, W)`` of the image.

    Returns:
        ``B`` fractions in (0, 1].
    """
    h, w = size
    fractions = []
    # Ragged box lists; each image's boxes are handled in one vectorised step.
    for i, box in enumerate(boxes):
        box = torch.as_tensor(box, dtype=torch.float32).reshape(-1, 4)
        if not torch.isfinite(box).all():
            raise ValueError(f"boxes[{i}] holds NaN or inf")
        width = (box[:, 2].clamp(0, w) - box[:, 0].clamp(0, w)).clamp(min=0)
        height = (box[:, 3].clamp(0, h) - box[:, 1].clamp(0, h)).clamp(min=0)
        area = float((width * height).sum()) / (h * w)
        fractions.append(min(area, 1.0) if area > 0 else 1.0)
    return torch.tensor(fractions)


def _check_inputs(images: Tensor, maps: Tensor) -> tuple[Tensor, Tensor]:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating B×C×H×W tensor, got {images.dtype} {tuple(images.shape)}"
        )
    if maps.dim() != 3 or maps.shape[0] != images.shape[0] or maps.shape[1:] != images.shape[2:]:
        raise ValueError(
            f"maps must be B×H×W matching images {tuple(images.shape)}, got {tuple(maps.shape)}"
        )
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or inf")
    if not torch.isfinite(maps).all():
        raise ValueError("maps hold NaN or inf")
    return images, maps.to(images.device)


def _blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with std ``sigma`` pixels, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    channels = images.shape[1]
    row = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), row, groups=channels)
    col = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), col, groups=channels)


def _baseline(
    images: Tensor, baseline: Baseline | Tensor, generator: torch.Generator | None, sigma: float
) -> Tensor:
    """The ``B×C×H×W`` image that perturbed pixels take their values from."""
    if isinstance(baseline, Tensor):
        if baseline.shape not in (images.shape, images.shape[1:]):
            raise ValueError(
                f"baseline tensor has shape {tuple(baseline.shape)}, images {tuple(images.shape)}"
            )
        return baseline.to(images).expand_as(images)
    if baseline == "noise":
        # Drawn once per image, so every step of a curve sees the same noise.
        device = generator.device if generator is not None else images.device
        noise = torch.rand(images.shape, generator=generator, device=device)
        return noise.to(images)
    if baseline == "blur":
        return _blur(images, sigma)
    if baseline == "mean":
        return images.mean((2, 3), keepdim=True).expand_as(images)
    if baseline == "zero":
        return torch.zeros_like(images)
    raise ValueError(f"baseline must be noise, blur, mean, zero or a tensor, got {baseline!r}")


def _fill_key(baseline: Baseline | Tensor, sigma: float) -> str | None:
    """The ``shared`` key of a baseline that is a function of the images alone, else None."""
    if isinstance(baseline, Tensor) or baseline == "noise":
        return None
    return f"blur:{sigma}" if baseline == "blur" else str(baseline)


def _ranks(maps: Tensor) -> Tensor:
    """``B×H·W`` long: each pixel's place in its map's descending, stable order."""
    flat = maps.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    places = torch.arange(flat.shape[1], device=maps.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, places)


def _curves(
    images: Tensor,
    maps: Tensor,
    scorer: Scorer,
    *,
    insert: bool,
    steps: int,
    baseline: Baseline | Tensor,
    max_fraction: Tensor | float | None,
    batch_size: int,
    generator: torch.Generator | None,
    blur_sigma: float,
    shared: dict[str, Tensor] | None = None,
) -> FaithfulnessResult:
    images, maps = _check_inputs(images, maps)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    b, _, h, w = images.shape
    device = images.device
    fraction = torch.as_tensor(1.0 if max_fraction is None else max_fraction)
    # On the CPU in float64 (some devices lack it) so that whole pixel counts k·f·H·W/K do not
    # round down by a hair.
    fraction = fraction.detach().to(device="cpu", dtype=torch.float64).flatten()
    if fraction.numel() not in (1, b):
        raise ValueError(f"max_fraction has {fraction.numel()} values for {b} images")
    if not ((fraction > 0) & (fraction <= 1)).all():
        raise ValueError(f"max_fraction must be in (0, 1], got {fraction.tolist()}")
    fraction = fraction.expand(b)
    flat = maps.flatten(1)
    constant = int((flat.amax(1) == flat.amin(1)).sum())
    if constant:
        warnings.warn(
            f"{constant} of {b} maps are constant: their pixels are perturbed in raster order",
            MetricWarning,
            stacklevel=3,
        )

    rank = _ranks(maps)
    fill = _baseline(images, baseline, generator, blur_sigma)
    step = torch.arange(steps + 1, dtype=torch.float64)
    counts = torch.floor(step[None] * fraction[:, None] * (h * w) / steps + 0.5).long().to(device)

    total = b * (steps + 1)
    scores = torch.empty(total, device=device, dtype=torch.float32)
    # The steps whose image is the image itself or the baseline alone, and their shared scores.
    endpoints = {
        "image": counts == (h * w if insert else 0),
        _fill_key(baseline, blur_sigma): counts == (0 if insert else h * w),
    }
    endpoints.pop(None, None)
    todo = torch.ones(b, steps + 1, dtype=torch.bool, device=device)
    for key, where in endpoints.items():
        if shared is not None and key in shared:
            known = shared[key].to(device=device, dtype=torch.float32)
            scores.view(b, steps + 1)[where] = known[:, None].expand(b, steps + 1)[where]
            todo &= ~where
    pending = todo.flatten().nonzero().squeeze(1)
    with torch.no_grad():
        for start in range(0, len(pending), batch_size):
            flat_id = pending[start : start + batch_size]
            image_id = flat_id // (steps + 1)
            chosen = rank[image_id] < counts[image_id, flat_id % (steps + 1), None]
            chosen = chosen.view(-1, 1, h, w)
            if insert:
                perturbed = torch.where(chosen, images[image_id], fill[image_id])
            else:
                perturbed = torch.where(chosen, fill[image_id], images[image_id])
            out = scorer(perturbed, image_id)
            if not isinstance(out, Tensor) or out.shape != (len(flat_id),):
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(f"scorer returned {shape} for {len(flat_id)} images")
            scores[flat_id] = out.to(device=device, dtype=torch.float32)

    curves = scores.view(b, steps + 1)
    if shared is not None:
        for key, where in endpoints.items():
            # kept only when every image has the step (a detector's deletion may stop short of
            # the whole image)
            if key not in shared and bool(where.any(1).all()):
                shared[key] = curves[torch.arange(b, device=device), where.int().argmax(1)]
    x = torch.linspace(0, 1, steps + 1, device=device)
    bad = int((~torch.isfinite(curves)).any(1).sum())
    if bad:
        warnings.warn(
            f"scorer returned NaN or inf on {bad} of {b} images; their AUC is NaN",
            MetricWarning,
            stacklevel=3,
        )
    return FaithfulnessResult(auc=torch.trapezoid(curves, x, dim=1), curves=curves, x=x)


def deletion(
    images: Tensor,
    maps: Tensor,
    scorer: Scorer,
    *,
    steps: int = 100,
    baseline: Baseline | Tensor = "noise",
    max_fraction: Tensor | float | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    blur_sigma: float = 5.0,
    shared: dict[str, Tensor] | None = None,
) -> FaithfulnessResult:
    """Deletion curve: replace the most salient pixels first and watch the score fall.

    Args:
        images: ``B×C×H×W`` images as the scorer takes them (pixel values in [0, 1] for the
            ``noise`` baseline to be on the same scale).
        maps: ``B×H×W`` saliency maps at the images' size.
        scorer: ``scorer(images N×C×H×W, image_ids N) -> N`` scores (see :data:`Scorer`).
        steps: number of steps ``K``; the curve has ``K+1`` points.
        baseline: what deleted pixels become: ``"noise"`` (uniform in [0, 1), drawn once per
            image), ``"blur"`` (Gaussian blur of the image, std ``blur_sigma`` pixels),
            ``"mean"`` (the image's per-channel mean), ``"zero"``, or a ``B×C×H×W`` /
            ``C×H×W`` tensor.
        max_fraction: ``B`` (or one number) in (0, 1]: the fraction of pixels deleted at step
            ``K``; None for the whole image.
        batch_size: perturbed images per scorer call.
        generator: random generator for the noise baseline (its device is used to draw).
        blur_sigma: std in pixels of the ``blur`` baseline.
        shared: scores of the steps that do not depend on the map (the images themselves, a
            non-random baseline alone), read and filled in across calls on the same ``images``
            and ``scorer`` (see the module's docstring); None re-scores them.

    Returns:
        :class:`FaithfulnessResult`; lower AUC is better.
    """
    return _curves(
        images,
        maps,
        scorer,
        insert=False,
        steps=steps,
        baseline=baseline,
        max_fraction=max_fraction,
        batch_size=batch_size,
        generator=generator,
        blur_sigma=blur_sigma,
        shared=shared,
    )


def insertion(
    images: Tensor,
    maps: Tensor,
    scorer: Scorer,
    *,
    steps: int = 100,
    baseline: Baseline | Tensor = "zero",
    max_fraction: Tensor | float | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    blur_sigma: float = 5.0,
    shared: dict[str, Tensor] | None = None,
) -> FaithfulnessResult:
    """Insertion curve: reveal the most salient pixels first on a black image.

    Arguments as :func:`deletion`; ``baseline`` is the image the pixels are revealed on
    (``"zero"``, black, by default).

    Returns:
        :class:`FaithfulnessResult`; higher AUC is better.
    """
    return _curves(
        images,
        maps,
        scorer,
        insert=True,
        steps=steps,
        baseline=baseline,
        max_fraction=max_fraction,
        batch_size=batch_size,
        generator=generator,
        blur_sigma=blur_sigma,
        shared=shared,
    )


FAITHFULNESS: dict[str, Metric] = {
    "deletion": Metric("deletion", deletion, higher_is_better=False, inputs=("images", "scorer")),
    "insertion": Metric("insertion", insertion, higher_is_better=True, inputs=("images", "scorer")),
}
"""The faithfulness metrics by name; ``fn`` returns a :class:`FaithfulnessResult` whose ``auc``
is the value that ``higher_is_better`` describes."""
