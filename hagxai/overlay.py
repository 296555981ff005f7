"""A saliency map drawn over its image (the PNGs of ``hagxai explain`` and of training runs)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw


def overlay(image: torch.Tensor, saliency: np.ndarray, boxes: list[list[float]]) -> Image.Image:
    """The map in the jet colour map at half opacity over the image, with boxes in white.

    Args:
        image: ``3×H×W`` float in [0, 1].
        saliency: ``H×W`` in [0, 1].
        boxes: xyxy boxes in the image's pixels.
    """
    from matplotlib import colormaps

    base = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    heat = (colormaps["jet"](saliency)[..., :3] * 255).astype(np.uint8)
    out = Image.fromarray((0.5 * base + 0.5 * heat).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for box in boxes:
        draw.rectangle(box, outline=(255, 255, 255), width=2)
    return out
