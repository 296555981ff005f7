"""Sanity maps that explain nothing about the model, for every comparison (DESIGN.md).

A method that does not beat them explains nothing. They follow the explainers' signature, and
like them give an all-zero map to an image without targets, so every row is averaged over the
same images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hagxai.evidence import Evidence
from hagxai.explainers.cam import combine_targets, minmax


def _has_targets(evidence: Evidence) -> Tensor:
    counts = torch.bincount(evidence.image_index.cpu(), minlength=evidence.num_images)
    return (counts > 0).view(-1, 1, 1)


def centre_bias(evidence: Evidence, out_size: tuple[int, int], sigma: float = 0.25) -> Tensor:
    """A Gaussian at the image centre, std ``sigma`` × each side: ``B×H×W`` in [0, 1]."""
    height, width = out_size
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5
    gauss = torch.exp(-(ys.view(-1, 1) ** 2 + xs.view(1, -1) ** 2) / (2 * sigma**2))
    maps = minmax(gauss[None]).expand(evidence.num_images, -1, -1)
    return (maps * _has_targets(evidence)).to(evidence.acts[evidence.layers[0]].device)


def uniform_random(evidence: Evidence, out_size: tuple[int, int], seed: int = 0) -> Tensor:
    """Uniform noise, seeded (the same ``seed`` gives the same maps): ``B×H×W`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    maps = minmax(torch.rand(evidence.num_images, *out_size, generator=generator))
    return (maps * _has_targets(evidence)).to(evidence.acts[evidence.layers[0]].device)


def human(evidence: Evidence, out_size: tuple[int, int], human_maps: Tensor) -> Tensor:
    """The human attention maps themselves, as a method (the ceiling of plausibility).

    Args:
        evidence: only its image count is used.
        out_size: ``(H, W)``.
        human_maps: ``B×h×w`` human maps, resized bilinearly and min-max normalised.
    """
    if human_maps.shape[0] != evidence.num_images:
        raise ValueError(f"{human_maps.shape[0]} human maps for {evidence.num_images} images")
    maps = human_maps.float().unsqueeze(1)
    if tuple(maps.shape[-2:]) != tuple(out_size):
        maps = F.interpolate(maps, size=out_size, mode="bilinear", align_corners=False)
    return minmax(maps[:, 0])


def box_prior(
    evidence: Evidence, out_size: tuple[int, int], boxes: Tensor, sigma: float = 0.25
) -> Tensor:
    """A Gaussian inside each explained box: the map that knows where the objects are and
    nothing of the model (a detector's sanity row).

    Per target, a Gaussian at its box's centre with std ``sigma`` × the box's width and height,
    zero outside the box; the targets' maps are combined by the multi-object rule (per target
    min-max, mean over the image's targets, min-max), like every explainer's.

    Args:
        evidence: the evidence of ``B`` images and ``T`` targets (image count, ``image_index``,
            ``input_size``).
        out_size: ``(H, W)`` of the maps.
        boxes: ``T×4`` xyxy boxes of the targets in model-input pixels (``Targets.boxes``).
        sigma: the Gaussian's std as a fraction of the box's sides.

    Returns:
        ``B×H×W`` in [0, 1]; an image without targets gets zeros.
    """
    if boxes.shape != (evidence.num_targets, 4):
        raise ValueError(
            f"box_prior needs {evidence.num_targets}×4 target boxes, got {tuple(boxes.shape)}"
        )
    height, width = out_size
    in_h, in_w = evidence.input_size
    scale = boxes.new_tensor([width / in_w, height / in_h, width / in_w, height / in_h])
    box = boxes.float().cpu() * scale.cpu()
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    cx, cy = (box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2
    sx = (sigma * (box[:, 2] - box[:, 0])).clamp_min(1e-3)
    sy = (sigma * (box[:, 3] - box[:, 1])).clamp_min(1e-3)
    gx = torch.exp(-((xs[None] - cx[:, None]) ** 2) / (2 * sx[:, None] ** 2))
    gy = torch.exp(-((ys[None] - cy[:, None]) ** 2) / (2 * sy[:, None] ** 2))
    inside_x = (xs[None] >= box[:, :1]) & (xs[None] <= box[:, 2:3])
    inside_y = (ys[None] >= box[:, 1:2]) & (ys[None] <= box[:, 3:4])
    per_target = (gy * inside_y)[:, :, None] * (gx * inside_x)[:, None, :]
    device = evidence.acts[evidence.layers[0]].device
    maps = combine_targets(per_target, evidence.image_index.cpu(), evidence.num_images)
    return maps.to(device)
