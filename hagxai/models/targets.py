"""Targets: the request (:class:`TargetSpec`), the chosen targets (:class:`Targets`), and choosing
detector targets (detections matched to ground-truth boxes, or above a confidence)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision.ops import box_iou

from hagxai.models.geometry import Frame


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


def match_one_to_one(
    det_boxes: Tensor,
    det_labels: Tensor,
    det_scores: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    iou_threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Match detections to ground-truth boxes of the same class, one to one, greedily by IoU.

    Pairs are taken in order of decreasing IoU (ties: the more confident detection first); a pair
    is kept when neither side is taken yet and its IoU is at least ``iou_threshold``.

    Args:
        det_boxes: ``K×4`` xyxy. det_labels: ``K`` long. det_scores: ``K``.
        gt_boxes: ``N×4`` xyxy in the same frame. gt_labels: ``N`` long (-1: any class).
        iou_threshold: least IoU of a match.

    Returns:
        ``(det_index, gt_index)``: ``M`` long each, the matched pairs in ground-truth order.
    """
    empty = torch.zeros(0, dtype=torch.long, device=det_boxes.device)
    if det_boxes.numel() == 0 or gt_boxes.numel() == 0:
        return empty, empty
    iou = box_iou(gt_boxes.float(), det_boxes.float())
    # A ground-truth label of -1 (unknown) matches any class.
    other_class = (gt_labels.view(-1, 1) >= 0) & (gt_labels.view(-1, 1) != det_labels.view(1, -1))
    iou = iou.masked_fill(other_class, -1.0)
    # A tiny confidence term orders equal-IoU pairs without changing any real ordering.
    order_key = iou + det_scores.view(1, -1).float() * 1e-9
    flat = torch.argsort(order_key.flatten(), descending=True)
    num_det = det_boxes.shape[0]
    gt_taken: set[int] = set()
    det_taken: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for index in flat.tolist():
        g, d = divmod(index, num_det)
        if iou[g, d] < iou_threshold:
            break
        if g in gt_taken or d in det_taken:
            continue
        gt_taken.add(g)
        det_taken.add(d)
        pairs.append((g, d))
    if not pairs:
        return empty, empty
    pairs.sort()
    gt_index = torch.tensor([p[0] for p in pairs], dtype=torch.long, device=det_boxes.device)
    det_index = torch.tensor([p[1] for p in pairs], dtype=torch.long, device=det_boxes.device)
    return det_index, gt_index


def detector_targets(
    detections: Sequence[dict[str, Tensor]], frames: Sequence[Frame], spec: TargetSpec
) -> Targets:
    """Targets of a detector batch from its detections (after NMS) and the request.

    With ground-truth boxes, each detection of a chosen class is matched one to one to a box of
    the same class (IoU ≥ ``spec.iou_threshold``); boxes left without a detection are reported in
    ``Targets.unmatched_gt``. Without boxes, every detection of a chosen class with confidence
    ≥ ``spec.conf_threshold`` is a target (at most ``spec.max_per_image``, most confident first).

    Args:
        detections: per image ``{"boxes": K×4 (input pixels), "scores": K, "labels": K,
            "anchors": K}``; ``anchors`` says where the score is read in the raw output.
        frames: per image, the :class:`Frame` that maps original boxes into the input.
        spec: the request; ``spec.boxes`` are in original pixels.
    """
    if spec.boxes is not None and len(spec.boxes) != len(detections):
        raise ValueError(f"{len(spec.boxes)} box sets for {len(detections)} images")
    parts: dict[str, list[Tensor]] = {k: [] for k in ("img", "cls", "conf", "box", "anc", "gt")}
    unmatched: list[Tensor] = []
    for i, det in enumerate(detections):
        keep = det["scores"] >= spec.conf_threshold
        if spec.classes is not None:
            allowed = torch.as_tensor(list(spec.classes), device=det["labels"].device)
            keep &= torch.isin(det["labels"], allowed)
        index = torch.nonzero(keep).flatten()
        if spec.boxes is not None:
            gt_boxes = frames[i].boxes_to_input(spec.boxes[i].to(det["boxes"]).reshape(-1, 4))
            gt_labels = _gt_labels(spec, i, gt_boxes.shape[0], det["labels"].device)
            chosen = torch.ones(gt_boxes.shape[0], dtype=torch.bool, device=gt_boxes.device)
            if spec.classes is not None:
                chosen = torch.isin(gt_labels, torch.as_tensor(list(spec.classes)).to(gt_labels))
            gt_ids = torch.nonzero(chosen).flatten()
            det_pos, gt_pos = match_one_to_one(
                det["boxes"][index],
                det["labels"][index],
                det["scores"][index],
                gt_boxes[gt_ids],
                gt_labels[gt_ids],
                spec.iou_threshold,
            )
            index, gt = index[det_pos], gt_ids[gt_pos]
            unmatched.append(gt_ids[~torch.isin(gt_ids, gt)])
        else:
            index = index[torch.argsort(det["scores"][index], descending=True)]
            if spec.max_per_image is not None:
                index = index[: spec.max_per_image]
            gt = torch.full_like(index, -1)
            unmatched.append(torch.zeros(0, dtype=torch.long, device=index.device))
        parts["img"].append(torch.full_like(index, i))
        parts["cls"].append(det["labels"][index].long())
        parts["conf"].append(det["scores"][index].detach().float())
        parts["box"].append(det["boxes"][index].detach().float())
        parts["anc"].append(det["anchors"][index].long())
        parts["gt"].append(gt)
    return Targets(
        image_index=torch.cat(parts["img"]).long(),
        classes=torch.cat(parts["cls"]),
        confidences=torch.cat(parts["conf"]),
        boxes=torch.cat(parts["box"]).reshape(-1, 4),
        anchors=torch.cat(parts["anc"]),
        gt_index=torch.cat(parts["gt"]).long(),
        unmatched_gt=unmatched,
    )


def _gt_labels(spec: TargetSpec, image: int, count: int, device: torch.device) -> Tensor:
    if spec.labels is None:
        if spec.classes is not None:
            raise ValueError("ground-truth boxes with classes to choose need their labels")
        return torch.full((count,), -1, dtype=torch.long, device=device)
    labels = torch.as_tensor(spec.labels[image], dtype=torch.long, device=device).reshape(-1)
    if labels.numel() != count:
        raise ValueError(f"image {image}: {count} boxes but {labels.numel()} labels")
    return labels


def drise_similarity(
    target_boxes: Tensor,
    target_classes: Tensor,
    boxes: Tensor,
    class_probs: Tensor,
) -> Tensor:
    """D-RISE similarity of targets to the detections of one input, best over detections.

    ``sim(t) = max_d IoU(box_t, box_d) · p_d(class_t)``.

    Args:
        target_boxes: ``T×4`` xyxy. target_classes: ``T`` long.
        boxes: ``K×4`` xyxy detections (or anchors). class_probs: ``K×C`` class probabilities.

    Returns:
        ``T`` similarities (0 when there are no detections).
    """
    if boxes.numel() == 0:
        return target_boxes.new_zeros(target_boxes.shape[0])
    iou = box_iou(target_boxes.float(), boxes.float())
    probs = class_probs.float()[:, target_classes].T
    return (iou * probs).amax(dim=1)
