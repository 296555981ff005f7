"""The model adapter protocol: one interface in front of every model family (DESIGN.md, models/).

An adapter owns a frozen model and knows, for its family:

* preprocessing: original images -> a model input ``x`` (``B×3×H×W`` in [0, 1], at
  :attr:`ModelAdapter.input_size`), with a :class:`Frame` per image that maps boxes and maps back
  to the original pixels (plain resize for classifiers, letterbox for detectors);
* the forward pass (normalisation happens inside :meth:`ModelAdapter.forward`, so perturbation
  methods and faithfulness metrics work on ``x`` in [0, 1]);
* which targets to explain (:meth:`ModelAdapter.select_targets`) and a differentiable score per
  target (:meth:`ModelAdapter.score`);
* the named layers that can be hooked, and a sensible default set per family.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hagxai.errors import UserError

Task = Literal["classification", "detection"]


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


@dataclass
class Prepared:
    """Model input for a batch of images, with the way back to each original image.

    Attributes:
        x: ``B×3×H×W`` float in [0, 1] at the adapter's input size, on the adapter's device.
        frames: one :class:`Frame` per image.
    """

    x: Tensor
    frames: list[Frame]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return int(self.x.shape[-2]), int(self.x.shape[-1])


@dataclass
class TargetSpec:
    """What to explain in a batch of images.

    Attributes:
        labels: per image, the class ids to explain (classifier; several per image allowed) or the
            labels of the ground-truth boxes (detector, ``N_i`` long).
        boxes: per image, ``N_i×4`` xyxy ground-truth boxes in original pixels (detector).
        classes: detector: only detections (and boxes) of these classes; ``None`` = all.
        predicted: classifier: explain the predicted class instead of ``labels``.
        iou_threshold: detector: IoU a detection needs with a ground-truth box to match it.
        conf_threshold: detector: the least confidence of a detection that may become a target.
        max_per_image: detector without boxes: keep only this many most confident detections.
    """

    labels: Sequence[Tensor | Sequence[int] | int] | None = None
    boxes: Sequence[Tensor] | None = None
    classes: Sequence[int] | None = None
    predicted: bool = False
    iou_threshold: float = 0.5
    conf_threshold: float = 0.25
    max_per_image: int | None = None


@dataclass
class Targets:
    """The targets chosen in a batch, ``T`` in all, ordered by image.

    Attributes:
        image_index: ``T`` long: the image each target belongs to.
        classes: ``T`` long: the explained class.
        confidences: ``T`` float: the target's score when it was chosen (detached).
        boxes: ``T×4`` xyxy in model-input pixels (detectors), else ``None``.
        anchors: ``T`` long: where the score is read in the raw output (YOLO: the anchor before
            NMS; torchvision detectors: the detection's row), else ``None``.
        gt_index: ``T`` long: the matched ground-truth box within its image, ``-1`` when none.
        unmatched_gt: per image, the indices of ground-truth boxes no detection matched.
    """

    image_index: Tensor
    classes: Tensor
    confidences: Tensor
    boxes: Tensor | None = None
    anchors: Tensor | None = None
    gt_index: Tensor | None = None
    unmatched_gt: list[Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.image_index.numel())

    def select(self, index: Tensor) -> Targets:
        """The targets at ``index`` (a ``K`` long tensor or a ``T`` bool mask)."""

        def pick(value: Tensor | None) -> Tensor | None:
            return None if value is None else value[index.to(value.device)]

        return Targets(
            image_index=self.image_index[index],
            classes=self.classes[index],
            confidences=self.confidences[index],
            boxes=pick(self.boxes),
            anchors=pick(self.anchors),
            gt_index=pick(self.gt_index),
            unmatched_gt=self.unmatched_gt,
        )


class ModelAdapter(ABC):
    """A frozen model of one family behind the protocol in the module docstring.

    Subclasses set :attr:`task`, :attr:`family`, :attr:`model` (in eval mode) and
    :attr:`input_size`, and implement the abstract methods.
    """

    task: Task
    family: str
    model: nn.Module
    input_size: tuple[int, int]

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    def freeze(self) -> None:
        """Eval mode and no parameter gradients.

        Evidence never needs gradients of parameters: the hooks make the captured activations
        require grad (see :mod:`hagxai.evidence`), so the graph starts at the first hooked layer.
        That also makes models loaded with ``requires_grad`` off (ultralytics ``.pt``) work.
        """
        self.model.eval().requires_grad_(False)

    @abstractmethod
    def preprocess(self, images: Sequence[Tensor] | Tensor) -> Prepared:
        """Original images (each ``3×H_i×W_i``, float in [0, 1] or uint8) -> :class:`Prepared`."""

    @abstractmethod
    def forward(self, x: Tensor) -> Any:
        """Run the model on ``x`` (``B×3×H×W`` in [0, 1]); the raw output, family-specific."""

    @abstractmethod
    def select_targets(self, output: Any, prepared: Prepared, spec: TargetSpec) -> Targets:
        """Choose the targets to explain from a forward output (no gradients involved)."""

    @abstractmethod
    def score(self, output: Any, targets: Targets) -> Tensor:
        """``T`` differentiable scores, one per target, read from the same forward output."""

    @abstractmethod
    def rescore(self, x: Tensor, targets: Targets) -> Tensor:
        """Scores of every target on perturbed inputs, without gradients.

        Args:
            x: ``N×3×H×W`` inputs in [0, 1] (e.g. masked copies of one image).
            targets: ``T`` targets.

        Returns:
            ``N×T``: classifier: the class probability; detector: the D-RISE similarity, the best
            IoU(target box, detection box) × the detection's probability of the target class.
        """

    def detections(self, output: Any) -> list[dict[str, Tensor]] | None:
        """Detectors: per image ``{"boxes": K×4 (input pixels), "scores": K, "labels": K}``."""
        return None

    @abstractmethod
    def hookable_layers(self) -> list[str]:
        """Names of the modules whose output can be hooked, in forward order."""

    @abstractmethod
    def default_layers(self) -> list[str]:
        """The family's default layer set."""

    def layer_aliases(self) -> dict[str, list[str]]:
        """Named layer sets accepted in ``layers`` (e.g. ``head`` for detectors)."""
        return {}

    def resolve_layers(self, names: Sequence[str] | None) -> list[str]:
        """Layer names from config -> module names; ``None`` -> :meth:`default_layers`.

        Raises:
            UserError: an unknown name, with the closest known names.
        """
        if not names:
            return self.default_layers()
        aliases = self.layer_aliases()
        known = self.hookable_layers()
        resolved: list[str] = []
        for name in names:
            if name in aliases:
                resolved.extend(aliases[name])
                continue
            if name not in known:
                close = difflib.get_close_matches(name, known + list(aliases), n=5, cutoff=0.5)
                hint = f"; close names: {', '.join(close)}" if close else ""
                raise UserError(
                    f"model {self.family!r} has no layer {name!r}{hint} "
                    "(hagxai layers --model ... lists them)"
                )
            resolved.append(name)
        return list(dict.fromkeys(resolved))

    def to_grid(self, layer: str, output: Tensor) -> Tensor:
        """A hooked layer's output as ``B×C×h×w``; transformers override (token -> grid)."""
        return output

    def from_grid(self, layer: str, grid: Tensor, output: Tensor) -> Tensor:
        """Inverse of :meth:`to_grid`: rebuild the layer's output from a (differentiable) grid."""
        return grid


@contextmanager
def capture_layers(
    adapter: ModelAdapter, layers: Sequence[str], make_leaf: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Forward hooks on ``layers`` for as long as the ``with`` lasts; they are always removed.

    Yields a dict that fills with each layer's output as ``B×C×h×w`` (via
    :meth:`ModelAdapter.to_grid`) during the forward passes run inside the block.

    Args:
        adapter: the model's adapter.
        layers: module names (already resolved).
        make_leaf: make the captured grid require grad when nothing upstream does, so gradients
            can be taken with respect to it. The grid is fed back into the model, so it lies on
            the path from the input to every score.
    """
    captured: dict[str, Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if not isinstance(output, Tensor):
                raise UserError(f"layer {name!r} does not output one tensor; pick another layer")
            grid = adapter.to_grid(name, output)
            if grid.dim() != 4:
                raise UserError(
                    f"layer {name!r} outputs shape {tuple(output.shape)}, not B×C×h×w; "
                    "pick a convolutional layer"
                )
            if make_leaf and not grid.requires_grad:
                grid = grid.detach().requires_grad_()
            captured[name] = grid
            # The model goes on with a copy: an in-place op downstream (``out += identity``)
            # must change neither the captured values nor what their gradient means.
            return adapter.from_grid(name, grid.clone(), output)

        return hook

    modules = dict(adapter.model.named_modules())
    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def trace_layer_shapes(adapter: ModelAdapter, x: Tensor) -> list[tuple[str, str, tuple[int, ...]]]:
    """Run ``x`` once and record every module's output: ``(name, type, shape)`` in forward order.

    Only modules that return one tensor are listed; a transformer's token outputs are reported
    as the grid :meth:`ModelAdapter.to_grid` makes of them.
    """
    records: list[tuple[str, str, tuple[int, ...]]] = []
    handles = []

    def hook_for(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                try:
                    shape = tuple(adapter.to_grid(name, output).shape)
                except (RuntimeError, ValueError):
                    shape = tuple(output.shape)
                records.append((name, type(module).__name__, shape))

        return hook

    try:
        for name, module in adapter.model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name, module)))
        with torch.no_grad():
            adapter.forward(x)
    finally:
        for handle in handles:
            handle.remove()
    seen: dict[str, tuple[str, str, tuple[int, ...]]] = {}
    for record in records:
        seen.setdefault(record[0], record)
    return list(seen.values())


def as_image_list(images: Sequence[Tensor] | Tensor) -> list[Tensor]:
    """``B×3×H×W`` or a list of ``3×H_i×W_i`` (float in [0, 1] or uint8) -> list of float."""
    items = list(images.unbind(0)) if isinstance(images, Tensor) and images.dim() == 4 else images
    out = []
    for i, image in enumerate(items):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise UserError(f"image {i}: expected a 3×H×W tensor, got {shape}")
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        out.append(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
    return out


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
