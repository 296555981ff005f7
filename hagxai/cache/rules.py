"""What the evidence explains: the target rule, and which samples it can be computed for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hagxai.data import Sample
from hagxai.errors import DataError, UserError
from hagxai.models import ModelAdapter, TargetSpec
from hagxai.pil import open_image

TARGET_RULES = {"classification": ("label", "predicted"), "detection": ("boxes", "detections")}


@dataclass(frozen=True)
class TargetRule:
    """How targets are chosen: the rule and the thresholds it uses.

    Attributes:
        rule: classifier: ``"label"`` (the ground-truth class) or ``"predicted"``; detector:
            ``"boxes"`` (detections matched to ground-truth boxes, IoU ≥ ``iou_threshold``) or
            ``"detections"`` (confidence ≥ ``conf_threshold``, at most ``max_per_image``).
        iou_threshold, conf_threshold, max_per_image: detector thresholds (see above).
        classes: detector: only detections and boxes of these classes become targets (a
            dataset's class subset); ``None`` = all.
    """

    rule: str = "label"
    iou_threshold: float = 0.5
    conf_threshold: float = 0.25
    max_per_image: int | None = None
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            # A list from a config or a dataset: a tuple keeps the rule hashable and comparable.
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))

    def check(self, adapter: ModelAdapter) -> None:
        """Raise :class:`~hagxai.errors.UserError` unless the rule applies to ``adapter``'s task."""
        allowed = TARGET_RULES[adapter.task]
        if self.rule not in allowed:
            raise UserError(
                f"target_rule {self.rule!r} does not apply to a {adapter.task} model "
                f"(choose one of {', '.join(allowed)})"
            )

    def spec(self, samples: Sequence[Sample]) -> TargetSpec:
        """The :class:`TargetSpec` of a batch of samples under this rule."""
        if self.rule == "label":
            return TargetSpec(labels=[[int(s.label)] for s in samples])
        if self.rule == "predicted":
            return TargetSpec(predicted=True)
        if self.rule == "boxes":
            return TargetSpec(
                boxes=[torch.from_numpy(s.boxes).reshape(-1, 4) for s in samples],
                labels=[torch.from_numpy(s.box_labels) for s in samples],
                iou_threshold=self.iou_threshold,
                conf_threshold=self.conf_threshold,
                classes=self.classes,
            )
        return TargetSpec(
            conf_threshold=self.conf_threshold,
            max_per_image=self.max_per_image,
            classes=self.classes,
        )

    def fields(self) -> dict[str, Any]:
        """The thresholds that matter for this rule (they enter the cache key)."""
        if self.rule in ("label", "predicted"):
            return {"rule": self.rule}
        out: dict[str, Any] = {"rule": self.rule, "conf_threshold": self.conf_threshold}
        if self.rule == "boxes":
            out["iou_threshold"] = self.iou_threshold
        else:
            out["max_per_image"] = self.max_per_image
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return out


DEFAULT_RULE = TargetRule()
"""The ground-truth label (classifiers): the default of the cache and the stream."""


def sample_problem(sample: Sample, rule: TargetRule, require_maps: bool) -> str | None:
    """Why a sample cannot be used, found without the model (``None`` when none is known yet).

    Checks the attention map (when required), the classifier label, and that the image file
    exists and its header reads (the pixels are decoded later).
    """
    if rule.rule == "label" and sample.label is None:
        return "no label for target_rule 'label'"
    if require_maps:
        if sample.map_path is None:
            return "no attention map"
        try:
            sample.load_map()
        except DataError as err:
            return f"bad attention map: {err}"
    try:
        with open_image(sample.image_path) as image:
            image.verify()
    except FileNotFoundError:
        return f"unreadable image: {sample.image_path} does not exist"
    except Exception as err:  # PIL raises many types for a broken file; each is this one sample's
        return f"unreadable image: {sample.image_path}: {err}"
    return None
