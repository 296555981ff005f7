"""Joint augmentation: the image, its attention map, fixations and boxes move together.

Built on albumentations: the map is a ``mask`` (resampled bilinearly, since it is continuous),
fixations are ``keypoints`` (``xy`` pixels) and boxes are ``bboxes`` (``pascal_voc``: xyxy
pixels). Fixations that leave the image are dropped with their viewer and duration; boxes keep
their labels and are dropped when less than ``min_visibility`` of them stays in view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from hagxai.data.sample import Sample


@dataclass
class Augmented:
    """One augmented sample.

    Attributes:
        image: ``H×W×3`` uint8.
        attention: ``H×W`` float32.
        boxes: ``N×4`` float32 xyxy pixels; ``box_labels`` ``N`` int64.
        fixations: ``M×2`` float32 (x, y) pixels; ``viewers`` ``M`` int32; ``durations`` ``M``.
    """

    image: np.ndarray
    attention: np.ndarray
    boxes: np.ndarray
    box_labels: np.ndarray
    fixations: np.ndarray
    viewers: np.ndarray
    durations: np.ndarray


def joint_transform(
    transforms: Sequence[A.BasicTransform], seed: int | None = None, min_visibility: float = 0.3
) -> A.Compose:
    """An albumentations pipeline set up for :func:`augment` (map, keypoints and boxes).

    Args:
        transforms: albumentations transforms (geometric ones move every target alike).
        seed: seeds the pipeline's random state, so a run is repeatable.
        min_visibility: a box keeping less than this fraction of its area is dropped.
    """
    return A.Compose(
        list(transforms),
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["box_labels"], min_visibility=min_visibility
        ),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["fixation_index"]),
        mask_interpolation=cv2.INTER_LINEAR,
        seed=seed,
    )


def default_transform(seed: int | None = None) -> A.Compose:
    """Flips and mild scale / shift / brightness changes that keep what people looked at."""
    return joint_transform(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), p=0.5),
            A.RandomBrightnessContrast(p=0.3),
        ],
        seed=seed,
    )


def augment(
    transform: A.Compose,
    image: np.ndarray,
    attention: np.ndarray,
    boxes: np.ndarray | None = None,
    box_labels: np.ndarray | None = None,
    fixations: np.ndarray | None = None,
    viewers: np.ndarray | None = None,
    durations: np.ndarray | None = None,
) -> Augmented:
    """Apply ``transform`` (from :func:`joint_transform`) to one sample's data at once.

    Args:
        image: ``H×W×3`` uint8; ``attention`` ``H×W`` float (same size).
        boxes: ``N×4`` xyxy pixels with ``box_labels`` ``N``.
        fixations: ``M×2`` (x, y) pixels with ``viewers`` and ``durations`` ``M``.
    """
    boxes = np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    box_labels = np.zeros(0, np.int64) if box_labels is None else np.asarray(box_labels)
    fixations = (
        np.zeros((0, 2), np.float32) if fixations is None else np.asarray(fixations, np.float32)
    )
    viewers = np.zeros(len(fixations), np.int32) if viewers is None else np.asarray(viewers)
    durations = np.zeros(len(fixations), np.float32) if durations is None else np.asarray(durations)
    out = transform(
        image=image,
        mask=np.asarray(attention, np.float32),
        bboxes=boxes.reshape(-1, 4),
        box_labels=box_labels,
        keypoints=fixations.reshape(-1, 2),
        fixation_index=np.arange(len(fixations)),
    )
    kept = np.asarray(out["fixation_index"], np.int64)
    return Augmented(
        image=out["image"],
        attention=np.asarray(out["mask"], np.float32),
        boxes=np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
        box_labels=np.asarray(out["box_labels"], np.int64),
        fixations=np.asarray(out["keypoints"], np.float32).reshape(-1, 2)[:, :2],
        viewers=viewers[kept].astype(np.int32),
        durations=durations[kept].astype(np.float32),
    )


def augment_sample(transform: A.Compose, sample: Sample) -> Augmented:
    """:func:`augment` of a dataset sample (its image and map are read from disk)."""
    return augment(
        transform,
        sample.load_image(),
        sample.load_map(),
        sample.boxes,
        sample.box_labels,
        sample.fixations,
        sample.viewers,
        sample.durations,
    )
