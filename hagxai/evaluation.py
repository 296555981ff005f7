"""Faithfulness of saliency maps through a model adapter: the glue between adapters and metrics.

:mod:`hagxai.metrics.faithfulness` is pure tensor code over a scorer callable; this module makes
that scorer from an adapter and the explained targets, so any map — an explainer's, the learned
head's or a human map — is scored the same way, on the model input frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hagxai.metrics.faithfulness import (
    FaithfulnessResult,
    Scorer,
    box_area_fraction,
    deletion,
    insertion,
)
from hagxai.models import ModelAdapter, Targets


def target_scorer(adapter: ModelAdapter, targets: Targets) -> Scorer:
    """A faithfulness scorer: image ``n``'s score is the mean over *its* targets of
    :meth:`ModelAdapter.rescore` (classifier: class probability; detector: best IoU × class score).
    An image without targets scores 0.

    The perturbed images go to the model in channels-last memory order: the same values, and
    convolutions on the CPU run them faster (measured on 2 cores, a batch of 64: the demo
    classifier 1.5×, the demo YOLOv8n 1.1×).
    """
    owner = targets.image_index

    @torch.no_grad()
    def scorer(images: Tensor, image_ids: Tensor) -> Tensor:
        images = images.to(adapter.device).contiguous(memory_format=torch.channels_last)
        scores = adapter.rescore(images, targets).float()
        mine = (image_ids.to(owner.device)[:, None] == owner[None, :]).to(scores)
        return (scores * mine).sum(1) / mine.sum(1).clamp_min(1)

    return scorer


@dataclass
class Faithfulness:
    """Deletion and insertion results of one set of maps (``auc`` per image, curves for plots)."""

    deletion: FaithfulnessResult
    insertion: FaithfulnessResult


def faithfulness(
    adapter: ModelAdapter,
    x: Tensor,
    targets: Targets,
    maps: Tensor,
    *,
    steps: int = 100,
    baseline: str | Tensor = "noise",
    insertion_baseline: str = "zero",
    batch_size: int = 64,
    seed: int = 0,
    blur_sigma: float = 5.0,
    shared: dict[str, Tensor] | None = None,
) -> Faithfulness:
    """Deletion and insertion of ``maps`` (``B×H×W`` on the model input ``x``, ``B×3×H×W``).

    ``baseline`` is what deletion puts in place of removed pixels (uniform noise by default, drawn
    from ``seed``; or a ``B×3×H×W`` tensor, e.g. this batch's rows of noise drawn for a larger set);
    ``insertion_baseline`` the canvas insertion starts from (black by default, as the reference).
    ``blur_sigma`` is the std in pixels of a ``"blur"`` baseline. ``shared`` (a dict, empty at
    first, kept per ``x`` and ``targets``) carries the scores of the steps every map shares — the
    image itself, a non-random canvas alone — from one call to the next, so that many maps of one
    batch re-score them once (:mod:`hagxai.metrics.faithfulness`).

    For a detector the steps run up to the total area of each image's target boxes (the
    reference's rule); for a classifier over the whole image.
    """
    scorer = target_scorer(adapter, targets)
    max_fraction = None
    if adapter.task == "detection" and targets.boxes is not None:
        per_image = [targets.boxes[targets.image_index == b].cpu() for b in range(x.shape[0])]
        max_fraction = box_area_fraction(per_image, tuple(x.shape[-2:]))
    maps = maps.to(x.device, torch.float32)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    common = {
        "steps": steps,
        "max_fraction": max_fraction,
        "batch_size": batch_size,
        "blur_sigma": blur_sigma,
        "shared": shared,
    }
    return Faithfulness(
        deletion=deletion(x, maps, scorer, baseline=baseline, generator=generator, **common),
        insertion=insertion(x, maps, scorer, baseline=insertion_baseline, **common),
    )
