"""Image geometry between original images and the model input: frames, resize, letterbox."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Frame:
    """How one original image maps into the model input: ``x_in = x_orig * scale + pad``.

    Attributes:
        orig_size: ``(H, W)`` of the original image, pixels.
        scale: ``(sy, sx)`` input pixels per original pixel.
        pad: ``(top, left)`` padding added in the input, pixels.
        input_size: ``(H, W)`` of the model input.
    """

    orig_size: tuple[int, int]
    scale: tuple[float, float]
    pad: tuple[float, float]
    input_size: tuple[int, int]

    def boxes_to_input(self, boxes: Tensor) -> Tensor:
        """``N×4`` xyxy boxes in original pixels -> model-input pixels."""
        sy, sx = self.scale
        top, left = self.pad
        factor = boxes.new_tensor([sx, sy, sx, sy])
        return boxes * factor + boxes.new_tensor([left, top, left, top])

    def boxes_to_original(self, boxes: Tensor) -> Tensor:
        """``N×4`` xyxy boxes in model-input pixels -> original pixels, clipped to the image."""
        sy, sx = self.scale
        top, left = self.pad
        out = (boxes - boxes.new_tensor([left, top, left, top])) / boxes.new_tensor(
            [sx, sy, sx, sy]
        )
        height, width = self.orig_size
        return torch.stack(
            [
                out[:, 0].clamp(0, width),
                out[:, 1].clamp(0, height),
                out[:, 2].clamp(0, width),
                out[:, 3].clamp(0, height),
            ],
            dim=1,
        )

    def map_to_original(self, saliency: Tensor) -> Tensor:
        """A ``H×W`` map on the model input -> ``H0×W0`` on the original image (padding cut off).

        The map is resized bilinearly to the input size first when it is at another size, so maps
        at any resolution of the input frame are accepted.
        """
        if tuple(saliency.shape[-2:]) != self.input_size:
            saliency = _resize(saliency, self.input_size)
        sy, sx = self.scale
        top, left = self.pad
        height, width = self.orig_size
        y0, x0 = round(top), round(left)
        y1 = min(self.input_size[0], y0 + max(1, round(height * sy)))
        x1 = min(self.input_size[1], x0 + max(1, round(width * sx)))
        return _resize(saliency[..., y0:y1, x0:x1], self.orig_size)


def _resize(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (half-pixel centres) resize of a ``...×h×w`` map."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def resize_frame(orig_size: tuple[int, int], input_size: tuple[int, int]) -> Frame:
    """The frame of a plain (aspect-changing) resize."""
    (h0, w0), (h, w) = orig_size, input_size
    return Frame(orig_size=orig_size, scale=(h / h0, w / w0), pad=(0.0, 0.0), input_size=input_size)


def letterbox(
    image: Tensor, input_size: tuple[int, int], fill: float = 114 / 255
) -> tuple[Tensor, Frame]:
    """Resize keeping the aspect ratio and pad to ``input_size`` (ultralytics' letterbox).

    Args:
        image: ``3×H0×W0`` float in [0, 1].
        input_size: ``(H, W)``.
        fill: padding value (ultralytics pads with grey 114).

    Returns:
        ``3×H×W`` padded image and its :class:`Frame`.
    """
    h0, w0 = int(image.shape[-2]), int(image.shape[-1])
    height, width = input_size
    ratio = min(height / h0, width / w0)
    new_h, new_w = max(1, round(h0 * ratio)), max(1, round(w0 * ratio))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    resized = image
    if (new_h, new_w) != (h0, w0):
        resized = F.interpolate(
            image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )[0]
    out = image.new_full((3, height, width), fill)
    out[:, top : top + new_h, left : left + new_w] = resized
    frame = Frame(
        orig_size=(h0, w0),
        scale=(new_h / h0, new_w / w0),
        pad=(float(top), float(left)),
        input_size=input_size,
    )
    return out, frame
