"""Perturbation explainers that need the model: RISE (classifiers) and D-RISE (detectors).

Both mask the model input with random smooth masks and weigh each mask by how much of the target
survives it (Petsiuk et al. 2018, 2021): the class probability (RISE), or the D-RISE similarity,
the best IoU(target box, detection) × the detection's probability of the target class, both from
:meth:`~hagxai.models.base.ModelAdapter.rescore`. The masked inputs run in batches of
``batch_size``. Per-target maps are combined by the same multi-object rule as the CAM family.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hagxai.explainers.cam import combine_targets, resize_maps
from hagxai.models import ModelAdapter, Targets


def rise_masks(
    num_masks: int,
    size: tuple[int, int],
    cells: int = 8,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """RISE masks: a ``cells×cells`` Bernoulli(``p``) grid, upsampled and randomly shifted.

    Returns:
        ``N×H×W`` float in [0, 1] (on the CPU).
    """
    height, width = size
    cell_h, cell_w = -(-height // cells), -(-width // cells)
    grid = (torch.rand(num_masks, 1, cells, cells, generator=generator) < p).float()
    up = F.interpolate(
        grid,
        size=((cells + 1) * cell_h, (cells + 1) * cell_w),
        mode="bilinear",
        align_corners=False,
    )
    shift_y = torch.randint(0, cell_h, (num_masks,), generator=generator)
    shift_x = torch.randint(0, cell_w, (num_masks,), generator=generator)
    rows = (shift_y.view(-1, 1) + torch.arange(height).view(1, -1)).view(-1, 1, height, 1)
    cols = (shift_x.view(-1, 1) + torch.arange(width).view(1, -1)).view(-1, 1, 1, width)
    out = up.gather(2, rows.expand(-1, 1, height, up.shape[3]))
    return out.gather(3, cols.expand(-1, 1, height, width))[:, 0]


def perturbation_maps(
    adapter: ModelAdapter,
    x: Tensor,
    targets: Targets,
    out_size: tuple[int, int] | None = None,
    num_masks: int = 2000,
    cells: int = 8,
    p: float = 0.5,
    batch_size: int = 32,
    seed: int = 0,
    on_image: Callable[[], None] | None = None,
) -> Tensor:
    """RISE for a classifier, D-RISE for a detector: ``B×H×W`` in [0, 1].

    Args:
        adapter: the model's adapter.
        x: ``B×3×h×w`` model input in [0, 1] (``Prepared.x``).
        targets: the targets to explain (from ``adapter.select_targets``).
        out_size: ``(H, W)`` of the maps (default: the input size).
        num_masks: masks per image.
        cells: mask grid side.
        p: probability that a cell is kept.
        batch_size: masked inputs per forward pass.
        seed: the masks' seed (the same for every image).
        on_image: called after each image's masks (a progress bar: thousands of forward passes
            per image).

    Returns:
        ``B×H×W``; an image without targets gets zeros.
    """
    size = (int(x.shape[-2]), int(x.shape[-1]))
    generator = torch.Generator().manual_seed(seed)
    masks = rise_masks(num_masks, size, cells, p, generator).to(x.device)
    per_target = x.new_zeros(len(targets), *size)
    for image in range(x.shape[0]):
        chosen = torch.nonzero(targets.image_index == image).flatten()
        if chosen.numel() > 0:
            subset = targets.select(chosen)
            total = x.new_zeros(chosen.numel(), size[0] * size[1])
            for start in range(0, num_masks, batch_size):
                batch = masks[start : start + batch_size]
                scores = adapter.rescore(x[image].unsqueeze(0) * batch.unsqueeze(1), subset)
                total += scores.T.to(total) @ batch.flatten(1)
            per_target[chosen.to(x.device)] = (total / (num_masks * p)).view(-1, *size)
        if on_image is not None:
            on_image()
    maps = resize_maps(per_target, tuple(out_size or size))
    return combine_targets(maps, targets.image_index.to(x.device), int(x.shape[0]))


rise = perturbation_maps
drise = perturbation_maps
