"""torchvision detectors: Faster R-CNN (ResNet-50 FPN, MobileNet v3 FPN) and RetinaNet.

Images are letterboxed to a square input and the model's own transform is told not to resize
(``min_size = max_size =`` the input side), so boxes and hooked layers live in one frame. A
target's score is the post-processed detection score (the proposal's class probability for Faster
R-CNN, the anchor's sigmoid class score for RetinaNet), which carries gradient back to the
backbone and the FPN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.models.base import ModelAdapter, Prepared, as_image_list
from hagxai.models.classifier import load_state_dict_file, torchvision_model
from hagxai.models.geometry import letterbox
from hagxai.models.targets import Targets, TargetSpec, detector_targets, drise_similarity

# name -> (default input side, keyword of the score threshold)
DETECTORS = {
    "fasterrcnn_resnet50_fpn": (640, "box_score_thresh"),
    "fasterrcnn_resnet50_fpn_v2": (640, "box_score_thresh"),
    "fasterrcnn_mobilenet_v3_large_fpn": (640, "box_score_thresh"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (320, "box_score_thresh"),
    "retinanet_resnet50_fpn": (640, "score_thresh"),
    "retinanet_resnet50_fpn_v2": (640, "score_thresh"),
}


class TorchvisionDetectorAdapter(ModelAdapter):
    """A torchvision ``GeneralizedRCNN`` / ``RetinaNet`` behind the adapter protocol.

    Default layers are the backbone stages that feed the FPN (``backbone.body.*``); ``head`` hooks
    the FPN's output convolutions (``backbone.fpn.layer_blocks.*``).

    Args:
        model: the detector (put in eval mode and frozen); its transform must not resize.
        family: a name for messages.
        input_size: ``(H, W)`` of the letterboxed input (multiples of 32).
        num_classes: number of classes of the model's head, background included.
        label_offset: the model's label of dataset class 0 (torchvision reserves label 0 for the
            background, hence 1): detections report ``model label - label_offset``, so targets,
            matching and D-RISE speak the dataset's class numbers.
        default_layers: layer names or aliases; ``None``: the backbone stages feeding the FPN.
    """

    task = "detection"

    def __init__(
        self,
        model: nn.Module,
        family: str,
        input_size: tuple[int, int],
        num_classes: int,
        label_offset: int = 1,
        default_layers: Sequence[str] | None = None,
    ) -> None:
        self.model = model
        self.family = family
        self.input_size = tuple(input_size)
        self.num_classes = num_classes
        self.label_offset = label_offset
        self.freeze()
        super().__init__(default_layers)

    def preprocess(self, images: Sequence[Tensor] | Tensor) -> Prepared:
        """Letterbox each image to the input size (aspect kept, black padding)."""
        items = as_image_list(images)
        padded, frames = zip(*(letterbox(im, self.input_size, fill=0.0) for im in items))
        return Prepared(x=torch.stack(padded).to(self.device), frames=list(frames))

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes": K×4 xyxy input pixels, "scores": K, "labels": K}``."""
        return self.model(list(x))

    def detections(self, output: Any, conf: float = 0.0) -> list[dict[str, Tensor]]:
        """Per image: boxes, scores, labels and ``anchors`` (the row in the output)."""
        out = []
        for det in output:
            keep = torch.nonzero(det["scores"] >= conf).flatten()
            out.append(
                {
                    "boxes": det["boxes"][keep].detach(),
                    "scores": det["scores"][keep].detach(),
                    "labels": det["labels"][keep] - self.label_offset,
                    "anchors": keep,
                }
            )
        return out

    def select_targets(self, output: Any, prepared: Prepared, spec: TargetSpec) -> Targets:
        return detector_targets(self.detections(output), prepared.frames, spec)

    def score(self, output: Any, targets: Targets) -> Tensor:
        """``T`` post-processed detection scores."""
        sizes = torch.tensor([len(det["scores"]) for det in output], device=targets.anchors.device)
        offsets = torch.cumsum(sizes, 0) - sizes
        flat = torch.cat([det["scores"] for det in output])
        return flat[offsets[targets.image_index] + targets.anchors]

    @torch.no_grad()
    def rescore(self, x: Tensor, targets: Targets) -> Tensor:
        """``N×T`` D-RISE similarity over each input's detections."""
        rows = []
        for det in self.forward(x):
            probs = det["scores"].new_zeros(len(det["scores"]), self.num_classes)
            labels = det["labels"] - self.label_offset
            probs[torch.arange(len(det["scores"])), labels] = det["scores"]
            rows.append(drise_similarity(targets.boxes, targets.classes, det["boxes"], probs))
        return torch.stack(rows)

    def hookable_layers(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def family_layers(self) -> list[str]:
        """The backbone stages feeding the FPN."""
        return [f"backbone.body.{name}" for name in self.model.backbone.body.return_layers]

    def layer_aliases(self) -> dict[str, list[str]]:
        blocks = self.model.backbone.fpn.layer_blocks
        return {"head": [f"backbone.fpn.layer_blocks.{i}" for i in range(len(blocks))]}


def build_tv_detector(cfg: ModelConfig, device: torch.device) -> TorchvisionDetectorAdapter:
    """A :class:`TorchvisionDetectorAdapter` for ``cfg.name`` (one of :data:`DETECTORS`)."""
    side, thresh_key = DETECTORS[cfg.name]
    input_size = tuple(cfg.input_size or (side, side))
    if any(s % 32 for s in input_size):
        raise UserError(f"input size {input_size} must be a multiple of 32")
    num_classes = cfg.num_classes or 91
    model = torchvision_model(
        cfg,
        weights_backbone=None,
        min_size=min(input_size),
        max_size=max(input_size),
        **{thresh_key: 0.0},
    )
    if cfg.weights is not None:
        load_state_dict_file(model, cfg.weights)
    offset = 1 if cfg.label_offset is None else cfg.label_offset
    return TorchvisionDetectorAdapter(
        model.to(device),
        cfg.name,
        input_size,
        num_classes,
        label_offset=offset,
        default_layers=cfg.layers,
    )
