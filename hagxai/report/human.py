"""The human row: each viewer's map scored against the other viewers (leave-one-viewer-out).

Where fixations carry viewer ids, viewer ``v``'s map (its own fixations, by the dataset's map rule
:func:`hagxai.data.fixations.fixation_map`) is the "saliency map", and the map and fixations of
all *other* viewers are the human data it is scored against; an image's value is the mean over
its viewers. This is the ceiling every method is read against. All viewers of an image go through
each metric as one batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from hagxai.data import AttentionDataset, Sample
from hagxai.data.fixations import fixation_map


def viewer_sigma(sample: Sample, dataset: AttentionDataset) -> float | None:
    """The σ (image pixels) the dataset makes its maps with, or ``None`` when unknown."""
    sigma = getattr(sample, "sigma_px", None)
    if sigma is not None:
        return float(sigma)
    observer = dataset.metadata.get("observer") or {}
    value = observer.get("map_sigma_px")
    return float(value) if value is not None else None


def absent_reason(samples: Sequence[Sample], dataset: AttentionDataset) -> str | None:
    """Why the human row cannot be computed on ``samples``, or ``None`` when it can."""
    if not any(len(s.fixations) for s in samples):
        return "the dataset has attention maps only (no fixations), so no viewer can be left out"
    if not any(len(np.unique(s.viewers)) >= 2 for s in samples):
        return "the fixations carry no viewer ids (or one viewer per image)"
    if viewer_sigma(samples[0], dataset) is None:
        return "the fixations carry viewer ids, but the dataset does not record its map σ"
    return None


def leave_one_out(
    sample: Sample,
    map_size: tuple[int, int],
    image_size: tuple[int, int],
    sigma_px: float,
) -> tuple[Tensor, Tensor, list[Tensor]] | None:
    """Per viewer of ``sample``: its own map, the other viewers' map and fixations.

    Args:
        sample: the sample (fixations in image pixels, with viewer ids).
        map_size: ``(H, W)`` of the human map (the metrics' frame).
        image_size: ``(H, W)`` of the image the fixations are in.
        sigma_px: the map rule's σ in image pixels.

    Returns:
        ``(own V×H×W, others V×H×W, others' fixations: V tensors N_v×2 in map pixels)``, or
        ``None`` when the image has fewer than two viewers.
    """
    viewers = np.unique(sample.viewers)
    if len(viewers) < 2:
        return None
    height, width = map_size
    scale = np.array([width / image_size[1], height / image_size[0]], np.float32)
    xy = sample.fixations * scale
    sigma = sigma_px * float(scale.mean())
    own, others, fixations = [], [], []
    for viewer in viewers:
        mine = sample.viewers == viewer
        own.append(fixation_map(xy[mine], height, width, sigma))
        others.append(fixation_map(xy[~mine], height, width, sigma))
        fixations.append(torch.from_numpy(np.ascontiguousarray(xy[~mine])))
    return torch.from_numpy(np.stack(own)), torch.from_numpy(np.stack(others)), fixations
