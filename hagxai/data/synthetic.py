"""Seeded synthetic scenes for the demo sets: the class is decided by a small diagnostic part.

A scene is a textured, cluttered background with distractors and one (classification) or 1-4
(detection) *objects*. An object is a coloured body (ellipse or rounded rectangle) carrying a
small dark *diagnostic part* whose shape decides the class (circle, square, triangle, cross) and
whose white centre dot (the *mark*) sets it apart from distractor shapes. Distractors are bodies
without a part and loose shapes without a mark, in other colours. Everything is drawn with PIL from
one ``numpy.random.Generator``, so a seed gives identical pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "cross")
_PART_COLOUR = (20, 20, 28)
_MARK_COLOUR = (250, 250, 250)


@dataclass
class SceneObject:
    """One explained object: its box, its diagnostic part's box (pixels, xyxy) and its class."""

    box: tuple[float, float, float, float]
    part_box: tuple[float, float, float, float]
    label: int


@dataclass
class Scene:
    """A drawn image (``H×W×3`` uint8) with the objects and distractor boxes that are in it."""

    image: np.ndarray
    objects: list[SceneObject]
    distractors: list[tuple[float, float, float, float]] = field(default_factory=list)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency coloured noise plus fine grain: a background with structure at two scales."""
    coarse = rng.uniform(0, 1, size=(6, 6, 3)).astype(np.float32)
    up = np.asarray(
        Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
        dtype=np.float32,
    )
    base = rng.uniform(70, 180, size=3).astype(np.float32)
    grain = rng.normal(0, 10, size=(size, size, 1)).astype(np.float32)
    image = base + 0.35 * (up - 128) + grain
    return np.clip(image, 0, 255).astype(np.uint8)


def _random_colour(rng: np.random.Generator, low: int = 60, high: int = 235) -> tuple[int, ...]:
    return tuple(int(c) for c in rng.integers(low, high, size=3))


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: int, box: tuple[float, float, float, float], fill
) -> None:
    x1, y1, x2, y2 = box
    if shape == 0:
        draw.ellipse(box, fill=fill)
    elif shape == 1:
        draw.rectangle(box, fill=fill)
    elif shape == 2:
        draw.polygon([((x1 + x2) / 2, y1), (x2, y2), (x1, y2)], fill=fill)
    else:
        w, h = (x2 - x1) / 3, (y2 - y1) / 3
        draw.rectangle((x1 + w, y1, x2 - w, y2), fill=fill)
        draw.rectangle((x1, y1 + h, x2, y2 - h), fill=fill)


def _draw_body(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box, colour) -> None:
    if rng.random() < 0.5:
        draw.ellipse(box, fill=colour, outline=(0, 0, 0), width=1)
    else:
        radius = int(min(box[2] - box[0], box[3] - box[1]) * 0.2)
        draw.rounded_rectangle(box, radius=radius, fill=colour, outline=(0, 0, 0), width=1)


def _place(
    rng: np.random.Generator,
    size: int,
    side: float,
    taken: list[tuple[float, ...]],
    tries: int = 50,
) -> tuple[float, float, float, float] | None:
    """A box of about ``side`` pixels overlapping no box in ``taken`` by more than 10%."""
    for _ in range(tries):
        w = side * rng.uniform(0.85, 1.15)
        h = side * rng.uniform(0.85, 1.15)
        x1 = rng.uniform(1, size - w - 1)
        y1 = rng.uniform(1, size - h - 1)
        box = (x1, y1, x1 + w, y1 + h)
        if all(_overlap(box, other) < 0.1 for other in taken):
            return box
    return None


def _overlap(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def _draw_object(draw, rng, box, label: int) -> SceneObject:
    _draw_body(draw, rng, box, _random_colour(rng, 90, 235))
    bw, bh = box[2] - box[0], box[3] - box[1]
    side = min(bw, bh) * rng.uniform(0.34, 0.42)
    # The part sits anywhere inside the body's inner region, so its position is not a cue.
    cx = rng.uniform(box[0] + 0.3 * bw, box[2] - 0.3 * bw)
    cy = rng.uniform(box[1] + 0.3 * bh, box[3] - 0.3 * bh)
    part = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    _draw_shape(draw, label, part, _PART_COLOUR)
    dot = max(1.0, side * 0.12)
    draw.ellipse((cx - dot, cy - dot, cx + dot, cy + dot), fill=_MARK_COLOUR)
    return SceneObject(box=box, part_box=part, label=label)


def _draw_distractors(draw, rng, size: int, count: int, taken: list) -> list[tuple[float, ...]]:
    boxes = []
    for i in range(count):
        if i % 2 == 0:
            box = _place(rng, size, size * rng.uniform(0.15, 0.3), taken)
            if box is not None:
                _draw_body(draw, rng, box, _random_colour(rng))
        else:
            box = _place(rng, size, size * rng.uniform(0.07, 0.12), taken)
            if box is not None:
                # Loose shapes look like parts but are coloured and carry no mark.
                _draw_shape(draw, int(rng.integers(0, 4)), box, _random_colour(rng, 40, 200))
        if box is not None:
            taken.append(box)
            boxes.append(box)
    for _ in range(int(rng.integers(3, 7))):
        pts = rng.uniform(0, size, size=4)
        draw.line([tuple(pts[:2]), tuple(pts[2:])], fill=_random_colour(rng, 30, 220), width=1)
    return boxes


def classification_scene(
    rng: np.random.Generator, size: int, num_classes: int, distractors: int
) -> Scene:
    """One main object of a random class (the part's shape) with ``distractors`` distractors."""
    image = Image.fromarray(_texture(rng, size))
    draw = ImageDraw.Draw(image)
    label = int(rng.integers(0, num_classes))
    box = _place(rng, size, size * rng.uniform(0.4, 0.55), [])
    assert box is not None  # an empty image always has room
    obj = _draw_object(draw, rng, box, label)
    boxes = _draw_distractors(draw, rng, size, distractors, [box])
    return Scene(image=np.asarray(image), objects=[obj], distractors=boxes)


def detection_scene(
    rng: np.random.Generator, size: int, num_classes: int, distractors: int, max_objects: int = 4
) -> Scene:
    """1..``max_objects`` objects of random classes, each with a box, plus distractors."""
    image = Image.fromarray(_texture(rng, size))
    draw = ImageDraw.Draw(image)
    taken: list = []
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        box = _place(rng, size, size * rng.uniform(0.2, 0.34), taken)
        if box is None:
            continue
        taken.append(box)
        objects.append(_draw_object(draw, rng, box, int(rng.integers(0, num_classes))))
    boxes = _draw_distractors(draw, rng, size, distractors, taken)
    return Scene(image=np.asarray(image), objects=objects, distractors=boxes)
