"""Ultralytics detectors (YOLOv5u, YOLOv8, YOLO11) from a model yaml or a local ``.pt``.

A target's score is its class probability in the raw head output (``B×(4+nc)×N``, sigmoid
scores, before NMS) at the anchor that produced the detection; NMS with ``return_idxs`` says
which anchor that is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.models.base import ModelAdapter, Prepared, as_image_list
from hagxai.models.geometry import letterbox
from hagxai.models.targets import Targets, TargetSpec, detector_targets, drise_similarity
from hagxai.models.ultralytics_env import import_ultralytics


class YoloAdapter(ModelAdapter):
    """An ultralytics ``DetectionModel`` behind the adapter protocol.

    Layers are the model's module names (``model.4``, ``model.15.cv2`` …). The default set is the
    backbone stages that feed the neck (``model.4, model.6, model.9`` for YOLOv8), where a
    detection's score has gradient over the whole image; ``layers: [head]`` hooks the Detect
    head's inputs (the reference's choice, gradient at the anchor's cell only).

    Args:
        model: the ``DetectionModel`` (put in eval mode and frozen).
        family: a name for messages.
        input_size: ``(H, W)`` of the letterboxed input, multiples of the model's largest stride.
        nms_iou: IoU threshold of the NMS that picks detections.
        default_layers: layer names or aliases; ``None``: :meth:`backbone_layers`.
    """

    task = "detection"

    def __init__(
        self,
        model: nn.Module,
        family: str,
        input_size: tuple[int, int] = (640, 640),
        nms_iou: float = 0.45,
        default_layers: Sequence[str] | None = None,
    ) -> None:
        self.model = model.float()
        self.family = family
        stride = int(max(model.stride.tolist())) if hasattr(model, "stride") else 32
        if any(side % stride for side in input_size):
            raise UserError(f"input size {tuple(input_size)} must be a multiple of {stride}")
        self.input_size = tuple(input_size)
        self.nms_iou = nms_iou
        self.freeze()
        super().__init__(default_layers)

    @property
    def class_names(self) -> dict[int, str]:
        """Class id -> name."""
        names = getattr(self.model, "names", None) or {}
        return dict(names) if isinstance(names, dict) else dict(enumerate(names))

    def preprocess(self, images: Sequence[Tensor] | Tensor) -> Prepared:
        """Letterbox each image to the input size (aspect kept, grey padding)."""
        padded, frames = zip(*(letterbox(im, self.input_size) for im in as_image_list(images)))
        return Prepared(x=torch.stack(padded).to(self.device), frames=list(frames))

    def forward(self, x: Tensor) -> Any:
        """``(pred, raw)``: ``pred`` is ``B×(4+nc)×N`` (xywh input pixels, class probabilities)."""
        return self.model(x)

    @staticmethod
    def _pred(output: Any) -> Tensor:
        return output[0] if isinstance(output, (tuple, list)) else output

    def _nms(self, pred: Tensor, conf: float, classes: Sequence[int] | None = None) -> list[dict]:
        from ultralytics.utils.nms import non_max_suppression

        pred = pred.detach()
        kept, anchors = non_max_suppression(
            pred,
            conf_thres=conf,
            iou_thres=self.nms_iou,
            classes=list(classes) if classes is not None else None,
            return_idxs=True,
        )
        return [
            {
                "boxes": det[:, :4],
                "scores": det[:, 4],
                "labels": det[:, 5].long(),
                "anchors": idx.reshape(-1).long(),
            }
            for det, idx in zip(kept, anchors)
        ]

    def detections(self, output: Any, conf: float = 0.25) -> list[dict[str, Tensor]]:
        """Per image: boxes (``K×4`` xyxy input pixels), scores, labels and anchors, after NMS."""
        return self._nms(self._pred(output), conf)

    def select_targets(self, output: Any, prepared: Prepared, spec: TargetSpec) -> Targets:
        detections = self._nms(self._pred(output), spec.conf_threshold, spec.classes)
        return detector_targets(detections, prepared.frames, spec)

    def score(self, output: Any, targets: Targets) -> Tensor:
        """``T`` class probabilities at the anchors that produced the detections (before NMS)."""
        pred = self._pred(output)
        return pred[targets.image_index, 4 + targets.classes, targets.anchors]

    @torch.no_grad()
    def rescore(self, x: Tensor, targets: Targets) -> Tensor:
        """``N×T`` D-RISE similarity, best over all anchors of each input (before NMS)."""
        from ultralytics.utils.ops import xywh2xyxy

        pred = self._pred(self.forward(x))
        boxes = xywh2xyxy(pred[:, :4].transpose(1, 2))
        probs = pred[:, 4:].transpose(1, 2)
        return torch.stack(
            [
                drise_similarity(targets.boxes, targets.classes, boxes[n], probs[n])
                for n in range(pred.shape[0])
            ]
        )

    def hookable_layers(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def head_layers(self) -> list[str]:
        """The Detect head's inputs (one per level: P3, P4, P5)."""
        return [f"model.{i}" for i in self.model.model[-1].f]

    def family_layers(self) -> list[str]:
        """:meth:`backbone_layers`."""
        return self.backbone_layers()

    def backbone_layers(self) -> list[str]:
        """Backbone stages feeding the neck: those the head reads, plus the last backbone layer."""
        layers = self.model.model
        yaml = getattr(self.model, "yaml", None) or {}
        num_backbone = len(yaml.get("backbone", [])) or len(layers) // 2
        feeding = {num_backbone - 1}
        for layer in list(layers)[num_backbone:]:
            sources = [layer.f] if isinstance(layer.f, int) else list(layer.f)
            feeding |= {s for s in sources if 0 <= s < num_backbone}
        return [f"model.{i}" for i in sorted(feeding)]

    def layer_aliases(self) -> dict[str, list[str]]:
        return {"head": self.head_layers(), "backbone": self.backbone_layers()}


@contextlib.contextmanager
def _safe_load(on: bool) -> Iterator[None]:
    """Ultralytics' restricted loading (``torch.load(weights_only=True)`` and an allow-list of
    its own model classes) while ``on``; its default unpickles, which runs code from the file."""
    from ultralytics.nn import tasks

    saved = tasks.SAFE_LOAD
    tasks.SAFE_LOAD = on or saved
    try:
        yield
    finally:
        tasks.SAFE_LOAD = saved


def _load_yolo_module(path: Path, trust: bool = False) -> nn.Module:
    """The model of an ultralytics ``.pt``: loaded without running code from the file unless
    ``trust`` (``model.trust_checkpoint``) says the user trusts its source."""
    ultralytics = import_ultralytics()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist (offline: nothing is downloaded)")
    try:
        with _safe_load(not trust):
            return ultralytics.YOLO(str(path)).model
    except Exception as err:  # ultralytics raises many types for a bad file
        reason = " ".join(str(err).replace("ERROR ❌️", "").split())
        hint = (
            ""
            if trust
            else "; it was read without running code from it: if it is a checkpoint of other "
            "classes and you trust its source, set model.trust_checkpoint: true"
        )
        raise UserError(f"{path} is not an ultralytics checkpoint ({reason[:300]}){hint}") from None


def build_yolo(cfg: ModelConfig, device: torch.device) -> YoloAdapter:
    """A :class:`YoloAdapter` from ``cfg.name`` (a yaml, or a ``.pt`` file) and ``cfg.weights``."""
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    if cfg.name.endswith(".pt"):
        model = _load_yolo_module(Path(cfg.name), cfg.trust_checkpoint)
    else:
        try:
            model = DetectionModel(cfg.name, nc=cfg.num_classes, verbose=False)
        except (FileNotFoundError, OSError, KeyError) as err:
            raise UserError(f"ultralytics model {cfg.name!r} could not be built: {err}") from None
        if cfg.weights is not None:
            try:
                model.load_state_dict(
                    _load_yolo_module(Path(cfg.weights), cfg.trust_checkpoint).state_dict()
                )
            except RuntimeError as err:
                message = f"weights file {cfg.weights} does not fit {cfg.name}: {err}"
                raise UserError(message.splitlines()[0]) from None
    return YoloAdapter(
        model.to(device),
        cfg.name,
        tuple(cfg.input_size or (640, 640)),
        default_layers=cfg.layers,
    )
